/**
 * Group commit of an account's guarded spends. While a spend's update of an account is on its way, the
 * spends of that account that arrive meanwhile (from this process) wait for it and then go together, as one
 * atomic update of the account (CreditStore.applyEntries): all of them or none. An account spent from by
 * many requests at once (one user's parallel AI calls, an organisation's shared balance) then costs one
 * document write per batch instead of one per request, and no request waits for more than the write ahead
 * of it and its own.
 *
 * What each spend gets is exactly what its own update would have given it:
 * - the batch's guard is that every entry's own guard holds in order (balance ≥ the costs before it plus its
 *   own floor), so a batch never spends what separate updates would have refused;
 * - a batch the guard (or a fence) refuses changes nothing and its spends go one by one, each with its own
 *   guard, so the ones the balance covers still pass;
 * - a batch whose outcome is unknown (a timeout, a lost reply) fails every spend in it with that error: the
 *   batch landed for all or for none, and each spend's give-back fences and looks for its own entry id.
 * Keyed changes, credits and unguarded spends never wait here: they are one update each, as before.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, JournalEntry } from '../domain/types';

/** At most this many spends in one update (a bound on the command's size). */
const MAX_BATCH = 64;

export interface SpendResult {
  /** The account after the update that carried this spend (with later spends of its batch, if any). */
  snapshot: AccountSnapshot;
  /** The balance right after this spend. */
  balance: number;
}

interface Waiting {
  entry: JournalEntry;
  minBalance: number;
  resolve(result: SpendResult | null): void;
  reject(err: unknown): void;
}

export class SpendBatcher {
  /** Accounts with an update on its way, and the spends waiting for it. */
  private readonly busy = new Map<string, Waiting[]>();

  constructor(private readonly store: CreditStore) {}

  /** True when the store can apply several spends in one update. */
  get enabled(): boolean {
    return typeof this.store.applyEntries === 'function';
  }

  /** Applies one guarded spend (amount < 0), alone or with the others waiting for the same account. */
  spend(userId: string, entry: JournalEntry, minBalance: number): Promise<SpendResult | null> {
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { entry, minBalance, resolve, reject };
      const queue = this.busy.get(userId);
      if (queue) {
        queue.push(waiting);
        return;
      }
      this.busy.set(userId, []);
      void this.run(userId, [waiting]);
    });
  }

  private async run(userId: string, batch: Waiting[]): Promise<void> {
    try {
      if (batch.length === 1 || !(await this.together(userId, batch))) {
        for (const w of batch) await this.alone(userId, w);
      }
    } finally {
      const queue = this.busy.get(userId)!;
      if (queue.length === 0) {
        this.busy.delete(userId);
      } else {
        const next = queue.splice(0, MAX_BATCH);
        void this.run(userId, next);
      }
    }
  }

  /** The whole batch in one update; false when it was refused (nothing changed), so each goes alone. */
  private async together(userId: string, batch: Waiting[]): Promise<boolean> {
    const entries = batch.map((w) => w.entry);
    let snapshot: AccountSnapshot | null;
    try {
      snapshot = await this.store.applyEntries!(userId, entries, batchGuard(batch));
    } catch (err) {
      for (const w of batch) w.reject(err);
      return true;
    }
    if (!snapshot) return false;
    let balance = snapshot.balance;
    for (let i = batch.length - 1; i >= 0; i--) {
      batch[i]!.resolve({ snapshot, balance });
      balance -= batch[i]!.entry.amount;
    }
    return true;
  }

  private async alone(userId: string, w: Waiting): Promise<void> {
    try {
      const snapshot = await this.store.applyEntry(userId, w.entry, { minBalance: w.minBalance });
      w.resolve(snapshot ? { snapshot, balance: snapshot.balance } : null);
    } catch (err) {
      w.reject(err);
    }
  }
}

/**
 * The least balance before the batch at which every spend's own guard holds in turn: before spend i the
 * balance is the starting one less the costs before it, and it must be at least spend i's floor (its
 * `minBalance`, and never so low that the spend would leave the safe integer range).
 */
export function batchGuard(batch: Array<{ entry: JournalEntry; minBalance: number }>): number {
  let before = 0; // credits the earlier spends of the batch take
  let guard = -Infinity;
  for (const { entry, minBalance } of batch) {
    const floor = Math.max(minBalance, -Number.MAX_SAFE_INTEGER - entry.amount);
    guard = Math.max(guard, before + floor);
    before -= entry.amount;
  }
  return guard;
}
