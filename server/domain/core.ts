/**
 * The credit operations behind the public API: charging a request, giving back failed work, settling
 * metered work, the seed's deductCredits, and admin grants. Each is a ledger change (see ledger/).
 *
 * A request's own entries (its charge, its settlement, its give-back) never give back more than it was
 * charged: the settlement and the give-back are each applied at most once under a key of the charge, and
 * the give-back first forecloses the settlement, so whichever comes second knows what the first did.
 */
import { ConflictError, CreditsError, InsufficientCreditsError, InvalidRequestError } from '../errors';
import { deductKey, giveBackKey, grantKey, REQUEST_KEY_PREFIX, revokeKey, settleKey } from './keys';
import { isForeclosure, Ledger, type RevokeResult, type SettledOutcome, type TransactionPage } from '../ledger';
import { BASE_GRANT } from '../ledger/grants';
import type { ResolvedCost, ResolvedOptions } from '../options';
import type { BalanceDetails, CreditGrant } from '../http/wire';
import { costRef } from './prices';
import type { Claim, GrantSource, KeptReply, RequestFingerprint, StoredReply } from './types';
import { assertAmount, assertExpiryAhead, assertGrantId, assertId, parseGrantTerms } from '../validate';

export interface DeductOptions {
  /** A retried call with the same key deducts at most once (and answers as the first call did). */
  idempotencyKey?: string;
  reason?: string;
}

export interface GrantOptions {
  /** Required: the same grant retried with the same key is applied once (its first terms stand). */
  idempotencyKey: string;
  reason?: string;
  /**
   * Where the credits come from: `admin` (default), `promotion`, `subscription`, `purchase`, or a name of
   * your own (lower-case letters, digits, `-`, `_`, `.`). Shown in the balance breakdown.
   */
  source?: GrantSource;
  /** When the unspent rest leaves the balance (a Date or ISO 8601 string, in the future). Default: never. */
  expiresAt?: Date | string;
  /** 0-100, default 50: lower is spent first; equal priorities spend the soonest expiry, then the oldest first. */
  priority?: number;
  /**
   * At expiry keep up to `max` of the unspent rest, as grant `rollover:<grant id>` (source `rollover`, the
   * same priority) expiring at `expiresAt` (after the grant's; absent: never). Needs `expiresAt` on the grant.
   * A rollover grant does not roll over again.
   */
  rollover?: { max: number; expiresAt?: Date | string };
}

export interface RevokeOptions {
  /** Shown in the history (default: "<n> <source> credits revoked"). */
  reason?: string;
  /** The revocation is applied at most once per key; the ledger key is `revoke:<key>`. Default: the grant's id. */
  key?: string;
}

export interface GrantResult {
  /** false when this key had already been applied (nothing changed this time). */
  granted: boolean;
  balance: number;
}

export interface Settlement {
  /** What the request has been charged in the end. */
  charged: number;
  balance: number;
}

/** A guarded request charged now. */
export interface Charged {
  entryId: string;
  balance: number;
}

/** A guarded request whose Idempotency-Key already holds an answer: that answer, and nothing charged. */
export interface Replayed {
  replay: KeptReply;
}

/**
 * What a request gets when its key was used before (the claim is the first request's): the first answer
 * when it was kept, and otherwise an error, never a second charge or run.
 * - another route or body under the same key: 422 `idempotency_key_reused`;
 * - an answer that was not kept (too large, not JSON): 409 `reply_not_kept`;
 * - no answer yet: 409 `conflict`. The first request is still running, or its answer was never stored (its
 *   process stopped first, or it was refused after its charge landed, which is then given back).
 */
function repeated(claim: Claim, key: string, request: RequestFingerprint | undefined): KeptReply {
  const idempotencyKey = key.slice(REQUEST_KEY_PREFIX.length);
  if (request && claim.request && claim.request.digest !== request.digest) {
    const route = claim.request.route.length > 200 ? `${claim.request.route.slice(0, 200)}…` : claim.request.route;
    const other = claim.request.route !== request.route ? `another route (${route})` : `another body or query on ${route}`;
    throw new CreditsError(
      'idempotency_key_reused',
      `This Idempotency-Key was already used for ${other}; a retry must repeat the same request. Send a new key for a new request.`,
      { idempotencyKey },
    );
  }
  if (claim.reply?.kept) return claim.reply;
  if (claim.reply) {
    const why = claim.reply.reason === 'too_large' ? 'its body was larger than the kit keeps' : 'it was not a JSON body';
    throw new CreditsError(
      'reply_not_kept',
      `The request with this Idempotency-Key answered ${claim.reply.status}, but that answer was not kept (${why}); it is not run or charged again. Send a new key to run it again.`,
      { idempotencyKey, status: claim.reply.status },
    );
  }
  throw new ConflictError(
    'A request with this Idempotency-Key is still running, or its answer was not recorded (its process stopped before storing it, ' +
      'or it was refused after its charge, which is then given back). It is not run or charged again: retry later for its answer, or send a new key.',
    { idempotencyKey },
  );
}

export class CreditsCore {
  constructor(
    private readonly options: Pick<ResolvedOptions, 'overage' | 'idempotencyKeyTtlMs' | 'creditName'>,
    private readonly ledger: Ledger,
  ) {}

  /** Keeps a background task (a give-back after the response) so that flush() can wait for it. */
  track(task: Promise<unknown>): void {
    this.ledger.background.track(task);
  }

  /** Work owed after an answer: queued, retried with backoff while the database refuses, waited for by flush(). */
  later(task: () => Promise<unknown>, what?: string): void {
    this.ledger.background.retry(async () => void (await task()), what);
  }

  getBalance(userId: string): Promise<number> {
    return this.ledger.getBalance(userId);
  }

  /** The balance by grant and by source, and what expires next (the grants' book as of the latest entry). */
  async getBalanceDetails(userId: string): Promise<BalanceDetails> {
    const { balance, book } = await this.ledger.grantBook(userId);
    const grants: CreditGrant[] = book.grants
      .filter((g) => g.remaining > 0)
      .map((g) => ({
        id: g.id,
        source: g.source,
        remaining: g.remaining,
        priority: Math.min(g.priority, 100),
        expiresAt: g.expiresAt ? new Date(g.expiresAt).toISOString() : null,
      }));
    // No prototype: a source named "constructor" or "toString" is a key like any other.
    const bySource: Record<string, number> = Object.create(null) as Record<string, number>;
    for (const g of grants) bySource[g.source] = (bySource[g.source] ?? 0) + g.remaining;
    const soonest = grants.map((g) => g.expiresAt).filter((t): t is string => t !== null).sort()[0];
    const nextExpiry = soonest
      ? { amount: grants.filter((g) => g.expiresAt === soonest).reduce((sum, g) => sum + g.remaining, 0), expiresAt: soonest }
      : null;
    return { balance, creditName: this.options.creditName, bySource, nextExpiry, debt: book.debt, grants };
  }

  listTransactions(userId: string, page: { limit: number; cursor?: number }): Promise<TransactionPage> {
    return this.ledger.listTransactions(userId, page);
  }

  flush(): Promise<void> {
    return this.ledger.flush();
  }

  /**
   * Charges a guarded request: one guarded update, or a keyed one with an Idempotency-Key. A request whose
   * key was used before is not charged again: it gets the first request's answer when that was kept
   * (`replay`), and otherwise an error that says why not (see `repeated`).
   */
  async charge(
    userId: string,
    amount: number,
    key: string | undefined,
    note: string,
    request?: RequestFingerprint,
    named?: ResolvedCost,
    settleBy?: Date,
  ): Promise<Charged | Replayed> {
    // A metered charge carries its settle-by time in its own entry: reconcile() finds it there, no extra write.
    const change = { kind: 'usage' as const, amount: -amount, ref: { note, ...costRef(named), ...(settleBy ? { settleBy } : {}) } };
    // The request is refused if the database fails mid-charge; a charge that landed anyway is given back.
    if (key === undefined) {
      const applied = await this.ledger.apply(userId, change, { minBalance: amount, undoIfUncertain: true });
      if (!applied) throw new InsufficientCreditsError(amount, await this.ledger.getBalance(userId));
      return { entryId: applied.entry.id, balance: applied.balance };
    }
    // The claim on the key carries what the request was and when the key may be forgotten: no extra write.
    const claim = { ...(request ? { request } : {}), expiresAt: new Date(Date.now() + this.options.idempotencyKeyTtlMs) };
    const outcome = await this.ledger.applyOnce(userId, key, change, { minBalance: amount, undoIfUncertain: true, claim });
    if (outcome.status === 'duplicate') return { replay: repeated(outcome.claim, key, request) };
    if (outcome.status === 'rejected') throw new InsufficientCreditsError(amount, await this.ledger.getBalance(userId));
    return { entryId: outcome.entry.id, balance: outcome.balance };
  }

  /** Keeps what a keyed guarded request answered, for its retries. Once; after the answer has gone out. */
  keepReply(userId: string, key: string, entryId: string, reply: StoredReply): Promise<void> {
    return this.ledger.keepReply(userId, key, entryId, reply);
  }

  /**
   * Gives back what a failed request was charged, once per charge whoever asks: the whole reservation, or
   * what a settlement left charged. The settlement is foreclosed first, so a settle() that comes later
   * changes nothing. Resolves with the balance right after it, for the answer's headers.
   */
  async giveBack(userId: string, chargeId: string, reserved: number, why: string): Promise<number> {
    const given = await this.giveBackOnce(userId, chargeId, reserved, why, false);
    // Read when another call gave it back (or there was nothing left to give).
    return given ?? this.ledger.getBalance(userId);
  }

  /**
   * reconcile()'s decision on a metered reservation past its settle-by time: given back whole unless the
   * route settled it, through the same keys as a failure's give-back, so it happens once however many
   * instances decide it, and a settle() after it changes nothing. True when this call gave it back.
   */
  async giveBackUnsettled(userId: string, chargeId: string, reserved: number, why: string): Promise<boolean> {
    return (await this.giveBackOnce(userId, chargeId, reserved, why, true)) !== undefined;
  }

  /** The balance after the give-back when this call applied it; undefined when it gave nothing back. */
  private async giveBackOnce(userId: string, chargeId: string, reserved: number, why: string, unlessSettled: boolean): Promise<number | undefined> {
    const settled = await this.ledger.foreclose(userId, settleKey(chargeId));
    if (settled && unlessSettled) return undefined;
    // A settlement entry's amount is what it gave back (positive) or charged on top (negative).
    const charged = settled ? reserved - settled.amount : reserved;
    if (charged <= 0) return undefined;
    const outcome = await this.ledger.applyOnceSettled(
      userId,
      giveBackKey(chargeId),
      { kind: 'refund', amount: charged, ref: { chargeId }, reason: why },
      { create: true, complete: true },
    );
    return outcome.status === 'applied' ? outcome.balance : undefined;
  }

  /**
   * Metered work: the reservation becomes `actual`. Less gives back the rest, more charges the difference
   * (subject to the overage policy). At most once per charge; after a give-back it changes nothing.
   * `recorded`: the charge is a metered one that reconcile() gives back unless settled, so even a settlement
   * of exactly the reservation is written (an entry of 0) for it to see.
   */
  async settle(userId: string, chargeId: string, reserved: number, actual: number, named?: ResolvedCost, recorded = false): Promise<Settlement> {
    const diff = actual - reserved;
    const key = settleKey(chargeId);
    const ref = { chargeId, requested: actual, ...costRef(named) };
    const before = (claim: Claim): Promise<Settlement> => this.settledBefore(userId, claim);
    const resolveIfUncertain = true;
    if (diff === 0 && !recorded) {
      const closed = await this.ledger.getClaim(userId, key);
      if (closed) return before(closed);
      return { charged: reserved, balance: await this.ledger.getBalance(userId) };
    }
    if (diff <= 0) {
      const outcome = await this.ledger.applyOnce(userId, key, { kind: 'settle', amount: reserved - actual, ref }, { create: true, resolveIfUncertain });
      if (outcome.status === 'duplicate') return before(outcome.claim);
      return { charged: actual, balance: outcome.status === 'applied' ? outcome.balance : await this.ledger.getBalance(userId) };
    }

    const outcome = await this.ledger.applyOnce(userId, key, { kind: 'settle', amount: -diff, ref }, { minBalance: diff, resolveIfUncertain });
    if (outcome.status === 'applied') return { charged: actual, balance: outcome.balance };
    if (outcome.status === 'duplicate') return before(outcome.claim);

    if (this.options.overage === 'debt') {
      const debt = await this.ledger.applyOnce(
        userId,
        key,
        { kind: 'settle', amount: -diff, ref: { ...ref, note: 'overage charged as debt: the balance may go below zero' } },
        { resolveIfUncertain },
      );
      if (debt.status === 'duplicate') return before(debt.claim);
      return { charged: actual, balance: debt.status === 'applied' ? debt.balance : await this.ledger.getBalance(userId) };
    }
    // cap: take what the balance holds; retry if a concurrent spend moved it between the read and the update.
    for (;;) {
      const balance = await this.ledger.getBalance(userId);
      const take = Math.max(0, Math.min(diff, balance));
      const capped = await this.ledger.applyOnce(
        userId,
        key,
        { kind: 'settle', amount: 0 - take, ref: { ...ref, note: `overage capped: ${diff - take} credits not covered by the balance` } },
        take > 0 ? { minBalance: take, resolveIfUncertain } : { resolveIfUncertain },
      );
      if (capped.status === 'applied') return { charged: reserved + take, balance: capped.balance };
      if (capped.status === 'duplicate') return before(capped.claim);
    }
  }

  /** A settle() that finds its key taken: closed by a give-back (nothing more happens), or settled already. */
  private async settledBefore(userId: string, claim: Claim): Promise<Settlement> {
    if (isForeclosure(claim)) return { charged: 0, balance: await this.ledger.getBalance(userId) };
    throw new ConflictError('This request was already settled.');
  }

  async deductCredits(userId: unknown, amount: unknown, options: DeductOptions = {}): Promise<boolean> {
    const user = assertId(userId, 'userId');
    const credits = assertAmount(amount);
    const change = { kind: 'usage' as const, amount: -credits, ...(options.reason ? { reason: options.reason } : {}) };
    // Without a key a failed call is undone if it landed (the caller saw an error and did not do the work);
    // with one, the caller's retry learns what the first call did.
    if (options.idempotencyKey === undefined) {
      return (await this.ledger.apply(user, change, { minBalance: credits, undoIfUncertain: true })) !== null;
    }
    const key = deductKey(assertId(options.idempotencyKey, 'idempotencyKey'));
    const outcome: SettledOutcome = await this.ledger.applyOnceSettled(user, key, change, { minBalance: credits });
    return outcome.status !== 'rejected';
  }

  /**
   * Takes what a grant still holds out of the balance now, once (README "Revoking a grant"): a `revoke`
   * entry, after which the grant is closed (give-backs of spends from it go to `base`). 0 when the grant
   * holds nothing, is unknown, or was revoked under this key before.
   */
  async revokeGrant(userId: unknown, grantId: unknown, options: RevokeOptions = {}): Promise<RevokeResult> {
    const user = assertId(userId, 'userId');
    const grant = assertGrantId(grantId);
    if (grant === BASE_GRANT) throw new InvalidRequestError('grantId "base" cannot be revoked: it holds the credits with no grant of their own.');
    const key = revokeKey(options?.key !== undefined ? assertId(options.key, 'key') : grant);
    const reason = options?.reason;
    if (reason !== undefined && (typeof reason !== 'string' || reason.length > 500)) {
      throw new InvalidRequestError('reason must be a string of at most 500 characters.');
    }
    return this.ledger.revokeGrant(user, grant, { key, ...(reason ? { reason } : {}) });
  }

  async grantCredits(userId: unknown, amount: unknown, options: GrantOptions): Promise<GrantResult> {
    const user = assertId(userId, 'userId');
    const credits = assertAmount(amount);
    const key = grantKey(assertId(options?.idempotencyKey, 'idempotencyKey'));
    // The grant's id is its key (ledger/grants.ts grantIdOf): one grant per idempotency key.
    const grant = parseGrantTerms(options);
    // A past expiry is refused for a new grant only: a retry of one applied before (its reply lost, a webhook
    // delivered again) after its expiry passed is answered as applied, not as bad input.
    if (grant.expiresAt && !(await this.ledger.getClaim(user, key))) assertExpiryAhead(grant.expiresAt, new Date());
    const change = { kind: 'grant' as const, amount: credits, grant, ...(options.reason ? { reason: options.reason } : {}) };
    const outcome = await this.ledger.applyOnceSettled(user, key, change, { create: true });
    if (outcome.status === 'applied') return { granted: true, balance: outcome.balance };
    return { granted: false, balance: await this.ledger.getBalance(user) };
  }
}
