/**
 * The credit operations behind the public API: charging a request, refunding failed work, settling metered
 * work, the seed's deductCredits, and admin grants. Each is a ledger change (see ledger.ts).
 */
import { ConflictError, InsufficientCreditsError } from './errors';
import { Ledger, type KeyedOutcome } from './ledger';
import type { ResolvedOptions } from './options';
import type { CreditStore } from './store/types';
import { assertAmount, assertId } from './validate';

export interface DeductOptions {
  /** A retried call with the same key deducts at most once (and answers as the first call did). */
  idempotencyKey?: string;
  reason?: string;
}

export interface GrantOptions {
  /** Required: the same grant retried with the same key is applied once. */
  idempotencyKey: string;
  reason?: string;
}

export interface GrantResult {
  /** false when this key had already been applied (nothing changed this time). */
  granted: boolean;
  balance: number;
}

export class CreditsCore {
  readonly ledger: Ledger;
  private readonly background = new Set<Promise<unknown>>();

  constructor(
    readonly options: ResolvedOptions,
    readonly store: CreditStore,
  ) {
    this.ledger = new Ledger(store, options.claimLeaseMs, options.hooks);
  }

  /** Keeps a background task (a refund after the response) so that flush() can wait for it. */
  track(task: Promise<unknown>): void {
    const t = task
      .catch((err: unknown) => console.error('[credit-kit] background credit work failed:', err))
      .finally(() => this.background.delete(t));
    this.background.add(t);
  }

  async flush(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
    await this.ledger.flush();
  }

  /** Charges a guarded request: one guarded update, or a keyed one with an Idempotency-Key. */
  async charge(userId: string, amount: number, key: string | undefined, note: string): Promise<{ entryId: string; balance: number }> {
    const change = { kind: 'usage' as const, amount: -amount, ref: { note } };
    // The request is refused if the database fails mid-charge; a charge that landed anyway is given back.
    const undoIfUncertain = { checkAfterMs: 2 * this.options.timeoutMs };
    if (key === undefined) {
      const applied = await this.ledger.apply(userId, change, { minBalance: amount, undoIfUncertain });
      if (!applied) throw new InsufficientCreditsError(amount, await this.ledger.getBalance(userId));
      return { entryId: applied.entry.id, balance: applied.balance };
    }
    const outcome = await this.ledger.applyOnce(userId, key, change, { minBalance: amount, undoIfUncertain });
    if (outcome.status === 'duplicate') {
      throw new ConflictError('A request with this Idempotency-Key was already received; it is not run or charged again.', {
        idempotencyKey: key.slice('request:'.length),
      });
    }
    if (outcome.status === 'rejected') throw new InsufficientCreditsError(amount, await this.ledger.getBalance(userId));
    return { entryId: outcome.entry.id, balance: outcome.balance };
  }

  /** Gives back what a failed request was charged; once per charge, whoever asks. */
  async refund(userId: string, chargeId: string, amount: number): Promise<void> {
    await this.ledger.applyOnceSettled(
      userId,
      `refund:${chargeId}`,
      { kind: 'refund', amount, ref: { chargeId }, reason: 'The guarded request failed' },
      { create: true },
    );
  }

  async settle(userId: string, chargeId: string, reserved: number, actual: number): Promise<{ charged: number; balance: number }> {
    const diff = actual - reserved;
    const key = `settle:${chargeId}`;
    const ref = { chargeId, requested: actual };
    if (diff === 0) return { charged: reserved, balance: await this.ledger.getBalance(userId) };
    if (diff < 0) {
      const outcome = await this.ledger.applyOnce(userId, key, { kind: 'settle', amount: -diff, ref }, { create: true });
      return { charged: actual, balance: balanceOf(outcome) ?? (await this.ledger.getBalance(userId)) };
    }

    const outcome = await this.ledger.applyOnce(userId, key, { kind: 'settle', amount: -diff, ref }, { minBalance: diff });
    if (outcome.status === 'applied') return { charged: actual, balance: outcome.balance };
    if (outcome.status === 'duplicate') throw new ConflictError('This request was already settled.');

    if (this.options.overage === 'debt') {
      const debt = await this.ledger.applyOnce(userId, key, {
        kind: 'settle',
        amount: -diff,
        ref: { ...ref, note: 'overage charged as debt: the balance may go below zero' },
      });
      return { charged: actual, balance: balanceOf(debt) ?? (await this.ledger.getBalance(userId)) };
    }
    // cap: take what the balance holds; retry if a concurrent spend moved it between the read and the update.
    for (;;) {
      const balance = await this.ledger.getBalance(userId);
      const take = Math.max(0, Math.min(diff, balance));
      const capped = await this.ledger.applyOnce(
        userId,
        key,
        { kind: 'settle', amount: -take, ref: { ...ref, note: `overage capped: ${diff - take} credits not covered by the balance` } },
        take > 0 ? { minBalance: take } : {},
      );
      if (capped.status === 'applied') return { charged: reserved + take, balance: capped.balance };
      if (capped.status === 'duplicate') throw new ConflictError('This request was already settled.');
    }
  }

  async deductCredits(userId: unknown, amount: unknown, options: DeductOptions = {}): Promise<boolean> {
    const user = assertId(userId, 'userId');
    const credits = assertAmount(amount);
    const change = { kind: 'usage' as const, amount: -credits, ...(options.reason ? { reason: options.reason } : {}) };
    if (options.idempotencyKey === undefined) return (await this.ledger.apply(user, change, { minBalance: credits })) !== null;

    const key = `deduct:${assertId(options.idempotencyKey, 'idempotencyKey')}`;
    // A retry of a call that deducted answers as it did: true.
    const outcome = await this.ledger.applyOnceSettled(user, key, change, { minBalance: credits });
    return outcome.status !== 'rejected';
  }

  async grantCredits(userId: unknown, amount: unknown, options: GrantOptions): Promise<GrantResult> {
    const user = assertId(userId, 'userId');
    const credits = assertAmount(amount);
    const key = `grant:${assertId(options?.idempotencyKey, 'idempotencyKey')}`;
    const change = { kind: 'grant' as const, amount: credits, ...(options.reason ? { reason: options.reason } : {}) };
    const outcome = await this.ledger.applyOnceSettled(user, key, change, { create: true });
    if (outcome.status === 'applied') return { granted: true, balance: outcome.balance };
    return { granted: false, balance: await this.ledger.getBalance(user) };
  }
}

function balanceOf(outcome: KeyedOutcome): number | undefined {
  return outcome.status === 'applied' ? outcome.balance : undefined;
}
