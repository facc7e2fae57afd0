/**
 * The credit ledger: every balance change is one atomic update of the account document that also journals
 * the change inside it; the journal is then moved to the ledger collection, off the hot path.
 *
 * Its parts, one job each:
 * - changes.ts: applying a change once, or once per key, and deciding claims by fencing (the money rules);
 * - journal-mover.ts: moving journals to the ledger collection in batches;
 * - history.ts: reading the ledger page by page;
 * - recovery.ts: reconcile(), finishing what crashes and stalls left half done;
 * - grants.ts, book.ts: which grants each entry took from or added to, folded by the mover off the hot path;
 * - expiry.ts: the sweep that takes a due grant's rest out of the balance, once;
 * - background.ts: the work owed after an answer, retried and tracked so flush() means "nothing in flight".
 *
 * Invariants, at every moment and after a crash between any two steps:
 * - balance = sum of (ledger entries) ∪ (journal entries), counted once by id;
 * - a key's change is applied at most once: the claim is unique, it names the one entry id that may apply
 *   it, an entry enters a journal at most once, and a claim is only ever decided after its entry is fenced.
 */
import type { CreditStore } from '../store/types';
import type { Claim, GrantBook, LedgerEntry, StoredReply } from '../domain/types';
import { LowBalanceAlerts, type LowBalanceWatch } from './alerts';
import { Background } from './background';
import { currentBook } from './book';
import { Changes, claimId, type ChangeInput, type ChangeOptions } from './changes';
import { Expiry, type ExpiryReport, type RevokeResult } from './expiry';
import { listTransactions, type TransactionPage } from './history';
import { JournalMover } from './journal-mover';
import { reconcileLedger, type DecideReservation, type ReconcileReport as RecoveryReport } from './recovery';

export type { Applied, ChangeInput, KeyedOutcome, SettledOutcome } from './changes';
export { claimId, isForeclosure } from './changes';
export type { Transaction, TransactionGrant, TransactionPage } from './history';
export type { ExpiryReport, RevokeResult } from './expiry';
export type { LowBalanceWatch } from './alerts';

export type ReconcileReport = RecoveryReport & {
  /** Grants whose unspent rest the expiry sweep took out of the balance in this pass. */
  grantsExpired: number;
};

export interface LedgerHooks {
  /** Told of errors in background work (moving journal entries, repairs); default: the `logger`. */
  onBackgroundError?: (err: unknown) => void;
}

export class Ledger {
  readonly background: Background;
  private readonly mover: JournalMover;
  private readonly changes: Changes;
  private readonly expiry: Expiry;
  private readonly alerts: LowBalanceAlerts | undefined;
  /** Others told of entries as they reach the ledger (auto-recharge's trigger), after the alerts. */
  private readonly watchers: Array<(entries: LedgerEntry[]) => Promise<void>> = [];

  constructor(
    private readonly store: CreditStore,
    private readonly leaseMs: number,
    private readonly onError: (err: unknown) => void,
    /** The bound on a store call (createCredits' timeoutMs), which spends waiting to be batched keep too. */
    timeoutMs: number,
    lowBalance?: LowBalanceWatch,
  ) {
    this.background = new Background((err) => this.backgroundError(err));
    const alerts = lowBalance ? new LowBalanceAlerts(store, lowBalance, (err) => this.backgroundError(err)) : undefined;
    this.alerts = alerts;
    this.mover = new JournalMover(store, (err) => this.backgroundError(err), async (entries) => {
      await alerts?.record(entries);
      for (const watch of this.watchers) await watch(entries);
    });
    this.changes = new Changes(store, this.mover, this.background, leaseMs, timeoutMs);
    this.expiry = new Expiry(store, this.changes, this.mover);
  }

  /**
   * Tells `watch` of entries once they are in the ledger and before they leave their journals, in `seq`
   * order per account (every entry at least once; a second mover may tell it again). If it throws, the
   * journals stay for the next move.
   */
  watchMoves(watch: (entries: LedgerEntry[]) => Promise<void>): void {
    this.watchers.push(watch);
  }

  apply(userId: string, change: ChangeInput, options?: ChangeOptions) {
    return this.changes.apply(userId, change, options);
  }

  applyOnce(userId: string, key: string, change: ChangeInput, options?: ChangeOptions) {
    return this.changes.applyOnce(userId, key, change, options);
  }

  applyOnceSettled(userId: string, key: string, change: ChangeInput, options?: ChangeOptions) {
    return this.changes.applyOnceSettled(userId, key, change, options);
  }

  foreclose(userId: string, key: string): Promise<Claim | null> {
    return this.changes.foreclose(userId, key);
  }

  getClaim(userId: string, key: string): Promise<Claim | null> {
    return this.store.getClaim(claimId(userId, key));
  }

  /** Keeps the answer given under a key with its claim, once, if the claim still names `entryId`. */
  async keepReply(userId: string, key: string, entryId: string, reply: StoredReply): Promise<void> {
    await this.store.saveReply(claimId(userId, key), entryId, reply);
  }

  async getBalance(userId: string): Promise<number> {
    return (await this.store.getAccount(userId))?.balance ?? 0;
  }

  /** The account's grant book as of its latest entry, and its balance. */
  async grantBook(userId: string): Promise<{ balance: number; book: GrantBook }> {
    const { account, folded } = await currentBook(this.store, userId);
    if (!account || !folded) return { balance: 0, book: { seq: 0, clock: null, debt: 0, grants: [] } };
    return { balance: account.balance, book: folded.book };
  }

  /**
   * The expiry sweep: every account's due grants as of `now` (one account's when `userId` is given); by
   * default as of the earlier of this instance's clock and the database's.
   */
  expireGrants(now?: Date, userId?: string, batch = 500): Promise<ExpiryReport> {
    if (userId !== undefined) return this.expiry.expireAccount(userId, now);
    return this.expiry.sweep(now, batch, (e) => this.backgroundError(e));
  }

  /** Takes grant `grantId`'s unspent rest out of the balance now, once per `key` (ledger/expiry.ts). */
  revokeGrant(userId: string, grantId: string, options: { reason?: string; key: string }): Promise<RevokeResult> {
    return this.expiry.revoke(userId, grantId, options);
  }

  listTransactions(userId: string, options: { limit: number; cursor?: number }): Promise<TransactionPage> {
    return listTransactions(this.store, userId, options);
  }

  /** Resolves when no background work is left: owed repairs done, journals moved. For tests and shutdown. */
  async flush(): Promise<void> {
    await this.background.flush();
    await this.mover.flush();
    await this.background.flush();
    await this.alerts?.flush();
  }

  async reconcile(options: { batch?: number; olderThanMs?: number; decideReservation?: DecideReservation } = {}): Promise<ReconcileReport> {
    const batch = options.batch ?? 500;
    const repaired = await reconcileLedger(
      {
        store: this.store,
        changes: this.changes,
        mover: this.mover,
        alerts: this.alerts,
        olderThanMs: options.olderThanMs ?? this.leaseMs,
        decideReservation: options.decideReservation,
        onError: (e) => this.backgroundError(e),
      },
      batch,
    );
    // After the repairs, so that journals left by crashes are in the books the sweep reads.
    let expired: ExpiryReport;
    try {
      expired = await this.expireGrants(undefined, undefined, batch);
    } catch (err) {
      this.backgroundError(err);
      expired = { grantsExpired: 0, creditsExpired: 0, busy: 0, errors: 1 };
    }
    return { ...repaired, grantsExpired: expired.grantsExpired, errors: repaired.errors + expired.errors };
  }

  private backgroundError(err: unknown): void {
    try {
      this.onError(err);
    } catch {
      // A reporting hook that throws must not stop the work it reports on.
    }
  }
}

