/**
 * The credit ledger: every balance change is one atomic update of the account document that also journals
 * the change inside it; the journal is then moved to the ledger collection, off the hot path.
 *
 * Its parts, one job each:
 * - changes.ts: applying a change once, or once per key, and deciding claims by fencing (the money rules);
 * - journal-mover.ts: moving journals to the ledger collection in batches;
 * - history.ts: reading the ledger page by page;
 * - recovery.ts: reconcile(), finishing what crashes and stalls left half done;
 * - background.ts: the work owed after an answer, retried and tracked so flush() means "nothing in flight".
 *
 * Invariants, at every moment and after a crash between any two steps:
 * - balance = sum of (ledger entries) ∪ (journal entries), counted once by id;
 * - a key's change is applied at most once: the claim is unique, it names the one entry id that may apply
 *   it, an entry enters a journal at most once, and a claim is only ever decided after its entry is fenced.
 */
import type { CreditStore } from '../store/types';
import type { Claim, StoredReply } from '../domain/types';
import { LowBalanceAlerts, type LowBalanceWatch } from './alerts';
import { Background } from './background';
import { Changes, claimId, type ChangeInput, type ChangeOptions } from './changes';
import { listTransactions, type TransactionPage } from './history';
import { JournalMover } from './journal-mover';
import { reconcileLedger, type ReconcileReport } from './recovery';

export type { Applied, ChangeInput, KeyedOutcome, SettledOutcome } from './changes';
export { claimId, isForeclosure } from './changes';
export type { Transaction, TransactionPage } from './history';
export type { ReconcileReport } from './recovery';
export type { LowBalanceWatch } from './alerts';

export interface LedgerHooks {
  /** Told of errors in background work (moving journal entries, repairs); default: the `logger`. */
  onBackgroundError?: (err: unknown) => void;
}

export class Ledger {
  readonly background: Background;
  private readonly mover: JournalMover;
  private readonly changes: Changes;
  private readonly alerts: LowBalanceAlerts | undefined;

  constructor(
    private readonly store: CreditStore,
    private readonly leaseMs: number,
    private readonly onError: (err: unknown) => void,
    lowBalance?: LowBalanceWatch,
  ) {
    this.background = new Background((err) => this.backgroundError(err));
    const alerts = lowBalance ? new LowBalanceAlerts(store, lowBalance, (err) => this.backgroundError(err)) : undefined;
    this.alerts = alerts;
    this.mover = new JournalMover(store, (err) => this.backgroundError(err), alerts && ((entries) => alerts.record(entries)));
    this.changes = new Changes(store, this.mover, this.background, leaseMs);
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

  reconcile(options: { batch?: number; olderThanMs?: number } = {}): Promise<ReconcileReport> {
    return reconcileLedger(
      { store: this.store, changes: this.changes, mover: this.mover, alerts: this.alerts, olderThanMs: options.olderThanMs ?? this.leaseMs, onError: (e) => this.backgroundError(e) },
      options.batch ?? 500,
    );
  }

  private backgroundError(err: unknown): void {
    try {
      this.onError(err);
    } catch {
      // A reporting hook that throws must not stop the work it reports on.
    }
  }
}

