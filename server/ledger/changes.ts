/**
 * Applying balance changes: once, or once per idempotency key, under any concurrency, stalls, lost replies
 * and crashes.
 *
 * A keyed change first claims its key (a unique document naming the one entry id its holder may apply),
 * then applies the entry to the account. Whoever decides a claim whose holder looks gone (its lease is over,
 * or this process gave up on it) first *fences* the entry id on the account: one atomic update after which
 * the account refuses that entry whenever its write arrives, and which says whether the journal already
 * held it. Only then does it look in the ledger and decide: applied, or never will be. So a lease only
 * decides when to look; a holder stalled for any time, or a clock minutes off, cannot make a key apply twice.
 *
 * A write whose outcome is unknown (a timeout, a lost reply) is settled the same way, by fencing and
 * looking, never by assuming it failed.
 */
import { randomUUID } from 'node:crypto';
import { ConflictError, CreditsError, StoreUnavailableError } from '../errors';
import type { ApplyOptions, CreditStore } from '../store/types';
import type { AccountSnapshot, Claim, ClaimedChange, EntryKind, EntryRef, GrantTerms, JournalEntry } from '../domain/types';
import { giveBackKey } from '../domain/keys';
import type { Background } from './background';
import type { JournalMover } from './journal-mover';
import { SpendBatcher, type SpendResult } from './spends';

export interface ChangeInput {
  kind: EntryKind;
  amount: number;
  reason?: string;
  ref?: EntryRef;
  /** A credit's grant (ledger/grants.ts). */
  grant?: GrantTerms;
  /** A spend's grant taken from first. */
  from?: string;
  /** An expiry with rollover: what of `from`'s rest is kept, as grant `grant` (domain/types.ts). */
  rolledOver?: number;
}

export interface ChangeOptions extends ApplyOptions {
  /**
   * A spend whose outcome is unknown is given back if it turns out to have landed (a guarded request that
   * was refused never pays). The give-back is recorded in the database before anything else, so a restart
   * does not lose it once the database has answered once.
   */
  undoIfUncertain?: boolean;
  /** Recovery finishes this change if its holder disappears, instead of releasing the key. */
  complete?: boolean;
  /** Apply only if this entry landed in the account (checked after the key is claimed). */
  ifLanded?: string;
  /** When the outcome is unknown, settle it now by fencing and looking, and answer as it turned out. */
  resolveIfUncertain?: boolean;
  /** Kept with the claim: what a guarded request was, and when its key may be forgotten. */
  claim?: Pick<Claim, 'request' | 'expiresAt'>;
}

export interface Applied {
  entry: JournalEntry;
  balance: number;
}

export type KeyedOutcome = ({ status: 'applied' } & Applied) | { status: 'rejected' } | { status: 'duplicate'; claim: Claim };

export type SettledOutcome = ({ status: 'applied' } & Applied) | { status: 'applied-before'; claim: Claim } | { status: 'rejected' };

/** The largest balance the ledger keeps exactly; changes that would leave ±this are refused. */
export const MAX_BALANCE = Number.MAX_SAFE_INTEGER;

export class BalanceRangeError extends CreditsError {
  override name = 'BalanceRangeError';
  constructor(amount: number) {
    super(
      'invalid_amount',
      `A change of ${amount} credits would take the balance beyond ±${MAX_BALANCE} (2^53 - 1), where credits can no longer be counted exactly; nothing was changed.`,
    );
  }
}

type Decision = 'applied' | 'released' | 'busy';

export class Changes {
  /** Claims this process gave up on (their outcome was unknown): decided at once, not after the lease. */
  private readonly abandoned = new Set<string>();
  /** Guarded spends of one account that arrive together go in one update (ledger/spends.ts). */
  private readonly spends: SpendBatcher;

  constructor(
    private readonly store: CreditStore,
    private readonly mover: JournalMover,
    private readonly background: Background,
    private readonly leaseMs: number,
    timeoutMs: number,
  ) {
    this.spends = new SpendBatcher(store, timeoutMs);
  }

  /** One change with no key: one round trip. Returns null when the guard refused it. */
  async apply(userId: string, change: ChangeInput, options: ChangeOptions = {}): Promise<Applied | null> {
    const entry = newEntry(change);
    const applied = await this.write(userId, entry, options);
    if (!applied) {
      if (entry.amount > 0 || options.minBalance === undefined) await this.throwIfOutOfRange(userId, entry.amount);
      return null;
    }
    this.mover.schedule(applied.snapshot);
    return { entry, balance: applied.balance };
  }

  /** One change applied at most once per (user, key). */
  async applyOnce(userId: string, key: string, change: ChangeInput, options: ChangeOptions = {}): Promise<KeyedOutcome> {
    const entry = newEntry(change, key);
    const claim: Claim = {
      id: claimId(userId, key),
      userId,
      key,
      entryId: entry.id,
      state: 'pending',
      createdAt: entry.at,
      amount: change.amount,
      ...(options.complete ? { change: claimedChange(change) } : {}),
      ...(options.ifLanded ? { ifLanded: options.ifLanded } : {}),
      ...(options.claim?.request ? { request: options.claim.request } : {}),
      ...(options.claim?.expiresAt ? { expiresAt: options.claim.expiresAt } : {}),
    };
    let existing: Claim | null;
    try {
      existing = await this.store.insertClaim(claim);
    } catch (err) {
      this.abandon(claim); // it may have been inserted: decide it soon so the key is not held for a lease
      throw err;
    }
    if (existing) {
      if (existing.state === 'pending' && this.mayDecide(existing)) {
        const decision = await this.decide(existing);
        if (decision === 'released') return this.applyOnce(userId, key, change, options);
      }
      return { status: 'duplicate', claim: (await this.store.getClaim(claim.id)) ?? existing };
    }
    if (options.ifLanded && !(await this.landed(userId, options.ifLanded))) {
      await this.store.releaseClaim(claim.id, entry.id);
      return { status: 'rejected' };
    }

    let snapshot: AccountSnapshot | null;
    try {
      snapshot = (await this.write(userId, entry, options))?.snapshot ?? null;
    } catch (err) {
      if (options.resolveIfUncertain) {
        const settled = await this.decide(claim).catch(() => undefined);
        if (settled === 'applied') return { status: 'applied', entry, balance: await this.balance(userId) };
        if (settled !== 'released') this.abandon(claim);
      } else {
        this.abandon(claim);
      }
      throw err;
    }

    if (!snapshot) {
      // Refused: by the guard, by the safe-integer bound, or because a decider fenced this entry (it judged
      // this holder gone and the key's fate is now theirs).
      if (await this.store.isFenced(userId, entry.id)) {
        return { status: 'duplicate', claim: (await this.store.getClaim(claim.id)) ?? claim };
      }
      await this.store.releaseClaim(claim.id, entry.id);
      await this.throwIfOutOfRange(userId, entry.amount);
      return { status: 'rejected' };
    }
    this.mover.schedule(snapshot);
    try {
      await this.store.markClaimApplied(claim.id, entry.id);
    } catch {
      this.abandon(claim); // the change is durable; the claim is marked by whoever decides it
    }
    return { status: 'applied', entry, balance: snapshot.balance };
  }

  /**
   * The entry's one write. When it fails its outcome is unknown: a spend that asked for it is given back if
   * it turns out to have landed, and the error is a StoreUnavailableError (the kit fails closed).
   */
  private async write(userId: string, entry: JournalEntry, options: ChangeOptions): Promise<SpendResult | null> {
    try {
      // An unkeyed guarded spend may share its update with the account's other spends arriving meanwhile.
      const batchable = entry.key === undefined && entry.amount < 0 && options.minBalance !== undefined && options.ifCount === undefined && !options.create;
      if (batchable && this.spends.enabled) return await this.spends.spend(userId, entry, options.minBalance!);
      const snapshot = await this.store.applyEntry(userId, entry, applyOptions(options));
      return snapshot && { snapshot, balance: snapshot.balance };
    } catch (err) {
      if (options.undoIfUncertain && entry.amount < 0) this.giveBackIfLanded(userId, entry, err);
      throw uncertain(err);
    }
  }

  /**
   * applyOnce for callers that want the key's final outcome rather than a conflict: when another holder
   * has the key it waits for that holder, and tries again if the holder released it without applying.
   * `applied-before`: the change this key stands for had already been applied (the claim says how much).
   */
  async applyOnceSettled(userId: string, key: string, change: ChangeInput, options: ChangeOptions = {}): Promise<SettledOutcome> {
    for (;;) {
      const outcome = await this.applyOnce(userId, key, change, options);
      if (outcome.status !== 'duplicate') return outcome;
      const fate = await this.awaitClaim(outcome.claim);
      if (fate.state === 'applied') return { status: 'applied-before', claim: fate.claim };
    }
  }

  /**
   * Takes a key so that no change can be applied under it from now on, unless one already was. Returns
   * the claim that was applied under the key, or null when this call closed it.
   */
  async foreclose(userId: string, key: string): Promise<Claim | null> {
    for (;;) {
      const closing: Claim = {
        id: claimId(userId, key),
        userId,
        key,
        entryId: `foreclosed:${randomUUID()}`,
        state: 'applied',
        createdAt: new Date(),
        amount: 0,
      };
      const existing = await this.store.insertClaim(closing);
      if (!existing) return null;
      const fate = existing.state === 'applied' ? { state: 'applied' as const, claim: existing } : await this.awaitClaim(existing);
      if (fate.state === 'applied') return isForeclosure(fate.claim) ? null : fate.claim;
    }
  }

  /**
   * Waits until the key's holder has finished, deciding the claim itself once the holder looks gone, and
   * follows the key if it passes to another holder. Conflict when it takes longer than `timeoutMs`.
   */
  async awaitClaim(claim: Claim, timeoutMs = 5000): Promise<{ state: 'applied'; claim: Claim } | { state: 'released' }> {
    const deadline = Date.now() + timeoutMs;
    let current: Claim | null = claim;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      if (!current) return { state: 'released' };
      if (current.state === 'applied') return { state: 'applied', claim: current };
      if (this.mayDecide(current)) {
        const decision = await this.decide(current);
        if (decision === 'released') return { state: 'released' };
        if (decision === 'applied') return { state: 'applied', claim: (await this.store.getClaim(claim.id)) ?? current };
      }
      if (Date.now() > deadline) {
        throw new ConflictError('An operation with this idempotency key is still in progress; retry later.');
      }
      await sleep(delay);
      current = await this.store.getClaim(claim.id);
    }
  }

  /**
   * Decides a pending claim whose holder may be gone. Fences its entry first, so the holder's write can
   * never land afterwards, then looks: applied if the entry is anywhere; otherwise a claim that must be
   * completed is re-armed with a fresh entry and applied, and any other claim is released.
   * `busy`: someone else moved the claim on meanwhile; read it again.
   */
  async decide(claim: Claim): Promise<Decision> {
    if (await this.landed(claim.userId, claim.entryId)) {
      await this.store.markClaimApplied(claim.id, claim.entryId);
      this.abandoned.delete(tag(claim));
      return 'applied';
    }
    const releaseIt = async (): Promise<Decision> => {
      await this.store.releaseClaim(claim.id, claim.entryId);
      this.abandoned.delete(tag(claim));
      return 'released';
    };
    if (!claim.change) return releaseIt();
    if (claim.ifLanded && !(await this.landed(claim.userId, claim.ifLanded))) return releaseIt();

    const entry = newEntry(claim.change, claim.key);
    if (!(await this.store.rearmClaim(claim.id, claim.entryId, { entryId: entry.id, createdAt: entry.at }))) return 'busy';
    const snapshot = await this.store.applyEntry(claim.userId, entry, { create: true });
    if (!snapshot) return 'busy'; // fenced by a concurrent decider, who finishes it
    this.mover.schedule(snapshot);
    await this.store.markClaimApplied(claim.id, entry.id);
    this.abandoned.delete(tag(claim));
    return 'applied';
  }

  /**
   * Fences an entry and says whether it landed: after the fence it can never land, so the answer is final.
   * The fence comes first: a look without it could miss a write still on its way.
   */
  async landed(userId: string, entryId: string): Promise<boolean> {
    const { inJournal } = await this.store.fenceEntry(userId, entryId);
    return inJournal || (await this.store.hasLedgerEntry(entryId));
  }

  /**
   * The give-back owed for a spend whose outcome is unknown. The fence comes first: most such spends never
   * landed, and once fenced they never will, so one update settles them. One that did land is given back
   * under a claim that recovery completes (it names the spend: `ifLanded`), so a restart after that point
   * does not lose it.
   */
  giveBackIfLanded(userId: string, spend: JournalEntry, cause: unknown): void {
    if (neverSent(cause)) return;
    this.background.retry(async () => {
      if (!(await this.landed(userId, spend.id))) return;
      await this.applyOnceSettled(
        userId,
        giveBackKey(spend.id),
        {
          kind: 'refund',
          amount: -spend.amount,
          ref: { chargeId: spend.id, note: 'the request was refused (database unavailable) after its charge landed' },
        },
        { create: true, complete: true, ifLanded: spend.id },
      );
    });
  }

  private abandon(claim: Claim): void {
    this.abandoned.add(tag(claim));
    this.background.retry(async () => {
      const current = await this.store.getClaim(claim.id);
      if (!current || current.state !== 'pending' || current.entryId !== claim.entryId) {
        this.abandoned.delete(tag(claim));
        return;
      }
      if ((await this.decide(current)) === 'busy') throw new Error('claim moved on while it was decided; looking again');
    });
  }

  /** A lease over, by this host's clock, or a claim this process gave up on: safe either way (fenced). */
  private mayDecide(claim: Claim): boolean {
    return this.abandoned.has(tag(claim)) || Date.now() - new Date(claim.createdAt).getTime() > this.leaseMs;
  }

  private async balance(userId: string): Promise<number> {
    return (await this.store.getAccount(userId))?.balance ?? 0;
  }

  private async throwIfOutOfRange(userId: string, amount: number): Promise<void> {
    const balance = await this.balance(userId);
    if (balance + amount > MAX_BALANCE || balance + amount < -MAX_BALANCE) throw new BalanceRangeError(amount);
  }
}

export function claimId(userId: string, key: string): string {
  return JSON.stringify([userId, key]);
}

/** A claim as one holder's attempt: the key and the entry it names. */
function tag(claim: Claim): string {
  return `${claim.id}\n${claim.entryId}`;
}

export function isForeclosure(claim: Claim): boolean {
  return claim.entryId.startsWith('foreclosed:');
}

function applyOptions(options: ChangeOptions): ApplyOptions {
  const out: ApplyOptions = {};
  if (options.minBalance !== undefined) out.minBalance = options.minBalance;
  if (options.create !== undefined) out.create = options.create;
  if (options.ifCount !== undefined) out.ifCount = options.ifCount;
  return out;
}

function claimedChange(change: ChangeInput): ClaimedChange {
  const c: ClaimedChange = { kind: change.kind, amount: change.amount };
  if (change.reason !== undefined) c.reason = change.reason;
  if (change.ref !== undefined) c.ref = change.ref;
  if (change.grant !== undefined) c.grant = change.grant;
  if (change.from !== undefined) c.from = change.from;
  if (change.rolledOver !== undefined) c.rolledOver = change.rolledOver;
  return c;
}

export function newEntry(change: ChangeInput, key?: string): JournalEntry {
  const entry: JournalEntry = { id: randomUUID(), kind: change.kind, amount: change.amount, at: new Date() };
  if (key !== undefined) entry.key = key;
  if (change.reason !== undefined) entry.reason = change.reason;
  if (change.ref !== undefined) entry.ref = change.ref;
  if (change.grant !== undefined) entry.grant = change.grant;
  if (change.from !== undefined) entry.from = change.from;
  if (change.rolledOver !== undefined) entry.rolledOver = change.rolledOver;
  return entry;
}

/**
 * The driver's errors for a command it never sent: no server could be selected, the client was not
 * connected, or no connection came free in time. Such a write cannot land. Anything else (a network
 * error mid-command, a timeout) may have landed.
 */
const NOT_SENT = new Set([
  'MongoServerSelectionError',
  'MongoNotConnectedError',
  'MongoTopologyClosedError',
  'MongoWaitQueueTimeoutError',
  'SpendNotSentError', // ledger/spends.ts: its time ran out while it waited for its account's update
]);

function neverSent(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (NOT_SENT.has((e as { name?: string }).name ?? '')) return true;
  }
  return false;
}

/** A write that failed after it was sent: its outcome is unknown, so the kit fails closed. */
function uncertain(err: unknown): CreditsError {
  return err instanceof CreditsError ? err : new StoreUnavailableError(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
