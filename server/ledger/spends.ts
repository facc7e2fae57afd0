/**
 * Group commit of an account's guarded spends. While a spend's update of an account is on its way, the
 * spends of that account that arrive meanwhile (from this process) wait for it and then go together, as one
 * atomic update of the account (CreditStore.applyEntries): all of them or none. An account spent from by
 * many requests at once (one user's parallel AI calls, an organisation's shared balance) then costs one
 * document write per batch instead of one per request.
 *
 * What each spend gets is exactly what its own update would have given it:
 * - the batch's guard is that every entry's own guard holds in order (balance ≥ the costs before it plus its
 *   own floor), so a batch never spends what separate updates would have refused;
 * - a batch the guard (or a fence) refuses changes nothing and its spends then go alone, side by side, each
 *   with its own guard, so the ones the balance covers still pass;
 * - a batch whose outcome is unknown (a timeout, a lost reply) fails every spend in it with that error: the
 *   batch landed for all or for none, and each spend's give-back fences and looks for its own entry id;
 * - the time limit is each spend's own: `timeoutMs` from the moment it was asked for, as for a spend sent at
 *   once (the request's own limit starts just after). A spend still waiting when its time is up is refused
 *   as never sent (503, nothing charged, nothing to give back), and a batch's update is bounded by the
 *   earliest limit among its spends, so it fails (uncertain: each spend fences and gives back) before any of
 *   their requests is refused. So no request is refused while its charge may still land later.
 * At most MAX_BATCH spends wait for an account; one more is sent alone at once, as without batching.
 * Keyed changes, credits and unguarded spends never wait here: they are one update each, as before.
 */
import { StoreUnavailableError } from '../errors';
import { bounded } from '../store/fail-closed';
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
  /** Date.now() past which the spend must not be sent, and its update must have failed. */
  deadline: number;
  resolve(result: SpendResult | null): void;
  reject(err: unknown): void;
}

/**
 * A spend refused before it was sent: its time ran out while it waited for its account's update. Named as
 * the ledger's never-sent errors are (ledger/changes.ts), so nothing is given back for it.
 */
export class SpendNotSentError extends Error {
  override name = 'SpendNotSentError';
  constructor(ms: number) {
    super(`the spend waited ${ms} ms for its account's update and was not sent`);
  }
}

export class SpendBatcher {
  /** Accounts with an update on its way, and the spends waiting for it. */
  private readonly busy = new Map<string, Waiting[]>();

  constructor(
    private readonly store: CreditStore,
    /** The store's bound on a call (`timeoutMs`), which is also each spend's. */
    private readonly timeoutMs: number,
  ) {}

  /** True when the store can apply several spends in one update. */
  get enabled(): boolean {
    return typeof this.store.applyEntries === 'function';
  }

  /** Applies one guarded spend (amount < 0), alone or with the others waiting for the same account. */
  spend(userId: string, entry: JournalEntry, minBalance: number): Promise<SpendResult | null> {
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { entry, minBalance, deadline: Date.now() + this.timeoutMs, resolve, reject };
      const queue = this.busy.get(userId);
      if (queue && queue.length < MAX_BATCH) {
        queue.push(waiting);
        return;
      }
      if (queue) {
        void this.alone(userId, waiting); // a full queue: this one is sent now, as without batching
        return;
      }
      this.busy.set(userId, []);
      void this.run(userId, [waiting]);
    });
  }

  private async run(userId: string, batch: Waiting[]): Promise<void> {
    try {
      if (batch.length === 1) await this.alone(userId, batch[0]!);
      else if (!(await this.together(userId, batch))) await Promise.all(batch.map((w) => this.alone(userId, w)));
    } finally {
      const queue = this.busy.get(userId)!;
      const now = Date.now();
      // A spend whose time (nearly) ran out while it waited is never sent: its request is being refused, and
      // an update given a moment to land would only leave a charge to fence and give back.
      const next = queue.splice(0).filter((w) => {
        if (w.deadline - now > this.timeoutMs / 10) return true;
        w.reject(new StoreUnavailableError(new SpendNotSentError(this.timeoutMs)));
        return false;
      });
      if (next.length === 0) {
        this.busy.delete(userId);
      } else {
        this.busy.set(userId, []);
        void this.run(userId, next);
      }
    }
  }

  /** The whole batch in one update; false when it was refused (nothing changed), so each goes alone. */
  private async together(userId: string, batch: Waiting[]): Promise<boolean> {
    const entries = batch.map((w) => w.entry);
    const guard = batchGuard(batch);
    // Sums past 2^53 are not exact: such a batch goes one by one (no caller of today comes near it).
    if (!Number.isSafeInteger(guard) || !Number.isSafeInteger(entries.reduce((sum, e) => sum + e.amount, 0))) return false;
    let snapshot: AccountSnapshot | null;
    try {
      snapshot = await this.within('applyEntries', () => this.store.applyEntries!(userId, entries, guard), Math.min(...batch.map((w) => w.deadline)));
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

  /**
   * The store call, failing as a timeout at `deadline`. A spend sent in the millisecond it was asked for (the
   * usual case: its account had no update on its way) needs no timer of its own: the fail-closed store below
   * bounds the call by the same timeoutMs from now.
   */
  private within<T>(name: string, call: () => Promise<T>, deadline: number): Promise<T> {
    const ms = Math.max(0, deadline - Date.now());
    return ms >= this.timeoutMs - 1 ? call() : bounded(name, call, ms);
  }

  private async alone(userId: string, w: Waiting): Promise<void> {
    try {
      if (w.deadline <= Date.now()) throw new StoreUnavailableError(new SpendNotSentError(this.timeoutMs));
      const snapshot = await this.within('applyEntry', () => this.store.applyEntry(userId, w.entry, { minBalance: w.minBalance }), w.deadline);
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
