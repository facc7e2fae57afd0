/**
 * The credit ledger: every balance change is one atomic update of the account document that also journals
 * the change inside it; the journal is then moved to the ledger collection, off the hot path. Changes that
 * must happen once per key (grants, purchases, refunds, idempotent requests) first claim their key.
 *
 * Invariants, at every moment and after a crash between any two steps:
 * - balance = sum of (ledger entries) ∪ (journal entries), counted once by id;
 * - a key's entry is applied at most once: the claim is unique, and the entry id it names can enter the
 *   journal only once (the update's filter refuses an id already there, and an entry leaves the journal
 *   only after it is in the ledger, where recovery looks for it).
 */
import { randomUUID } from 'node:crypto';
import { ConflictError, CreditsError, StoreUnavailableError } from './errors';
import type {
  AccountSnapshot,
  ApplyOptions,
  Claim,
  CreditStore,
  EntryKind,
  EntryRef,
  JournalEntry,
  LedgerEntry,
} from './store/types';

/** Named points between the steps of a change, where tests inject crashes. */
export type FaultPoint =
  | 'after-claim'
  | 'reply-lost' // the update landed but its answer never reached us, as when a connection drops
  | 'after-apply'
  | 'before-move'
  | 'after-purchase-update';

export interface LedgerHooks {
  /** Called at each step boundary; throwing here simulates a crash at that point. Tests only. */
  fault?: (point: FaultPoint) => void | Promise<void>;
  /** Told of errors in background work (moving journal entries); default: console.error. */
  onBackgroundError?: (err: unknown) => void;
}

export interface ChangeInput {
  kind: EntryKind;
  amount: number;
  reason?: string;
  ref?: EntryRef;
}

export interface Uncertain {
  /** Give a spend back if it turns out to have landed although the call failed (see applyOrUndo). */
  undoIfUncertain?: { checkAfterMs: number };
}

export interface Applied {
  entry: JournalEntry;
  balance: number;
}

export type KeyedOutcome =
  | ({ status: 'applied' } & Applied)
  | { status: 'rejected' }
  | { status: 'duplicate'; claim: Claim };

export interface Transaction {
  id: string;
  kind: EntryKind;
  amount: number;
  balanceAfter: number;
  seq: number;
  createdAt: string;
  reason?: string;
  ref?: EntryRef;
}

export interface TransactionPage {
  transactions: Transaction[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
  /** The balance the listed entries lead to. */
  balance: number;
}

export interface ReconcileReport {
  claimsResolved: number;
  claimsReleased: number;
  accountsMoved: number;
}

/** How long changes gather before one batched move to the ledger collection. */
const MOVE_DELAY_MS = 50;

export class Ledger {
  /** The newest snapshot of each account changed since the last move. */
  private readonly pending = new Map<string, AccountSnapshot>();
  /** Per account, the sequence number up to which this process has written the ledger. */
  private readonly inLedger = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    readonly store: CreditStore,
    private readonly leaseMs: number,
    private readonly hooks: LedgerHooks = {},
  ) {}

  async fault(point: FaultPoint): Promise<void> {
    if (this.hooks.fault) await this.hooks.fault(point);
  }

  /** Runs a store call, turning database failures into StoreUnavailableError (the kit fails closed). */
  async db<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof CreditsError) throw err;
      throw new StoreUnavailableError(err);
    }
  }

  /** One change with no key: one round trip. Returns null when the guard refused it. */
  async apply(userId: string, change: ChangeInput, options: ApplyOptions & Uncertain = {}): Promise<Applied | null> {
    const entry = newEntry(change);
    const snapshot = await this.applyOrUndo(userId, entry, options);
    if (!snapshot) return null;
    await this.fault('after-apply');
    this.scheduleMove(snapshot);
    return { entry, balance: snapshot.balance };
  }

  /** One change applied at most once per (user, key), under any concurrency and across crashes. */
  async applyOnce(userId: string, key: string, change: ChangeInput, options: ApplyOptions & Uncertain = {}): Promise<KeyedOutcome> {
    const entry = { ...newEntry(change), key };
    const claim: Claim = {
      id: claimId(userId, key),
      userId,
      key,
      entryId: entry.id,
      state: 'pending',
      createdAt: entry.at,
    };
    const existing = await this.db(() => this.store.insertClaim(claim));
    if (existing) {
      // A claim left pending by a crash is resolved here once its lease is over, then the key is free again.
      if (existing.state === 'pending' && Date.now() - existing.createdAt.getTime() > this.leaseMs) {
        if ((await this.resolveClaim(existing)) === 'released') return this.applyOnce(userId, key, change, options);
      }
      return { status: 'duplicate', claim: existing };
    }
    await this.fault('after-claim');

    const snapshot = await this.applyOrUndo(userId, entry, options);
    if (!snapshot) {
      await this.db(() => this.store.releaseClaim(claim.id, entry.id));
      return { status: 'rejected' };
    }
    await this.fault('after-apply');
    this.scheduleMove(snapshot);
    try {
      await this.store.markClaimApplied(claim.id);
    } catch (err) {
      // The change itself is durable; recovery marks the claim later.
      this.backgroundError(err);
    }
    return { status: 'applied', entry, balance: snapshot.balance };
  }

  /**
   * applyOnce for callers that want the key's final outcome rather than a conflict: when another holder
   * has the key it waits for that holder, and tries again if the holder released it without applying.
   * `applied-before`: the change this key stands for had already been applied, by someone else.
   */
  async applyOnceSettled(
    userId: string,
    key: string,
    change: ChangeInput,
    options: ApplyOptions = {},
  ): Promise<({ status: 'applied' } & Applied) | { status: 'applied-before' } | { status: 'rejected' }> {
    for (;;) {
      const outcome = await this.applyOnce(userId, key, change, options);
      if (outcome.status !== 'duplicate') return outcome;
      if ((await this.awaitClaim(outcome.claim)) === 'applied') return { status: 'applied-before' };
    }
  }

  /**
   * Applies an entry. When the database fails mid-call the update may or may not have landed; with
   * `undoIfUncertain` (a guarded request refused with 503, whose route never ran) the spend is looked for
   * later and given back once if it did land, so a refused request is never paid for.
   */
  private async applyOrUndo(userId: string, entry: JournalEntry, options: ApplyOptions & Uncertain): Promise<AccountSnapshot | null> {
    const { undoIfUncertain, ...applyOptions } = options;
    try {
      const snapshot = await this.store.applyEntry(userId, entry, applyOptions);
      await this.fault('reply-lost');
      return snapshot;
    } catch (err) {
      if (undoIfUncertain && entry.amount < 0) {
        // Checked twice: soon, and again once any command still queued at the server must have ended.
        this.undoIfLanded(userId, entry, undoIfUncertain.checkAfterMs, 0);
        this.undoIfLanded(userId, entry, 30_000, 0);
      }
      throw new StoreUnavailableError(err);
    }
  }

  private undoIfLanded(userId: string, entry: JournalEntry, delayMs: number, attempt: number): void {
    const timer = setTimeout(() => {
      void this.undoOnce(userId, entry).catch((err: unknown) => {
        if (attempt < 8) this.undoIfLanded(userId, entry, Math.min(delayMs * 2, 120_000), attempt + 1);
        else this.backgroundError(err);
      });
    }, delayMs);
    timer.unref();
  }

  private async undoOnce(userId: string, entry: JournalEntry): Promise<void> {
    const account = await this.store.getAccount(userId);
    const landed = account?.journal.some((e) => e.id === entry.id) || (await this.store.hasLedgerEntry(entry.id));
    if (!landed) return;
    await this.applyOnce(
      userId,
      `undo:${entry.id}`,
      { kind: 'refund', amount: -entry.amount, ref: { chargeId: entry.id, note: 'the request was refused (database unavailable) after its charge landed' } },
      { create: true },
    );
  }

  /**
   * Waits until another holder of the same key has finished, and says whether its change was applied.
   * Used where a retry should learn the first attempt's outcome instead of getting a conflict.
   */
  async awaitClaim(claim: Claim, timeoutMs = 5000): Promise<'applied' | 'released'> {
    const deadline = Date.now() + timeoutMs;
    let current: Claim | null = claim;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      if (!current || current.entryId !== claim.entryId) return 'released';
      if (current.state === 'applied') return 'applied';
      // A holder that outlived its lease has crashed: decide its claim now instead of waiting it out.
      if (Date.now() - current.createdAt.getTime() > this.leaseMs) return this.resolveClaim(current);
      if (Date.now() > deadline) {
        throw new ConflictError('An operation with this idempotency key is still in progress; retry later.');
      }
      await sleep(delay);
      current = await this.db(() => this.store.getClaim(claim.id));
    }
  }

  getAccount(userId: string): Promise<AccountSnapshot | null> {
    return this.db(() => this.store.getAccount(userId));
  }

  async getBalance(userId: string): Promise<number> {
    return (await this.getAccount(userId))?.balance ?? 0;
  }

  /**
   * The ledger newest first: journal entries not yet moved, then the ledger collection, read so that the
   * page never counts an entry twice or skips one while a move is under way.
   */
  async listTransactions(userId: string, options: { limit: number; cursor?: number }): Promise<TransactionPage> {
    const account = await this.getAccount(userId);
    if (!account) return { transactions: [], nextCursor: null, balance: 0 };
    const journalled = ledgerEntriesOf(account);
    const firstJournalSeq = account.count - account.journal.length + 1;
    const before = options.cursor ?? account.count + 1;

    const fromJournal = journalled.filter((e) => e.seq < before).reverse().slice(0, options.limit);
    const rest = options.limit - fromJournal.length;
    const fromLedger =
      rest > 0
        ? await this.db(() => this.store.listLedger(userId, { beforeSeq: Math.min(before, firstJournalSeq), limit: rest }))
        : [];
    const page = [...fromJournal, ...fromLedger];
    const last = page[page.length - 1];
    return {
      transactions: page.map(toTransaction),
      nextCursor: last && last.seq > 1 ? String(last.seq) : null,
      balance: account.balance,
    };
  }

  /**
   * Moves journal entries to the ledger collection in the background, batched across accounts: every
   * MOVE_DELAY_MS one insert command carries the new entries of every account changed meanwhile, and one
   * bulk write removes them from those journals, so a guarded request costs its one blocking update plus a
   * small share of two batched background writes, and account documents stay small.
   */
  scheduleMove(snapshot: AccountSnapshot): void {
    if (snapshot.journal.length === 0) return;
    const known = this.pending.get(snapshot.userId);
    if (!known || snapshot.count > known.count) this.pending.set(snapshot.userId, snapshot);
    if (!this.timer && !this.running) {
      this.timer = setTimeout(() => void this.startMoves(), MOVE_DELAY_MS);
      this.timer.unref();
    }
  }

  private startMoves(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running) return this.running.then(() => this.startMoves());
    if (this.pending.size === 0) return Promise.resolve();
    const run = this.runMoves()
      .catch((err: unknown) => this.backgroundError(err)) // the entries stay journalled; reconcile() moves them
      .finally(() => {
        this.running = undefined;
        if (this.pending.size > 0 && !this.timer) {
          this.timer = setTimeout(() => void this.startMoves(), MOVE_DELAY_MS);
          this.timer.unref();
        }
      });
    this.running = run;
    return run;
  }

  private async runMoves(): Promise<void> {
    const batch = [...this.pending.values()];
    this.pending.clear();
    await this.fault('before-move');
    const entries = batch.flatMap((snapshot) => {
      const known = this.inLedger.get(snapshot.userId) ?? 0;
      return ledgerEntriesOf(snapshot).filter((e) => e.seq > known);
    });
    await this.store.insertLedgerEntries(entries);
    if (this.inLedger.size > 10_000) this.inLedger.clear(); // only a hint: forgetting costs a duplicate insert
    for (const snapshot of batch) this.inLedger.set(snapshot.userId, snapshot.count);
    await this.store.pullJournals(batch.map((s) => ({ userId: s.userId, entries: s.journal })));
  }

  /** Moves one account's whole journal now (recovery). */
  async moveSnapshot(snapshot: AccountSnapshot): Promise<void> {
    if (snapshot.journal.length === 0) return;
    await this.store.insertLedgerEntries(ledgerEntriesOf(snapshot));
    await this.store.pullJournals([{ userId: snapshot.userId, entries: snapshot.journal }]);
  }

  /** Moves everything scheduled so far and resolves when done. For tests and shutdown. */
  async flush(): Promise<void> {
    while (this.running || this.pending.size > 0) await this.startMoves();
  }

  /** Decides a claim whose holder may have crashed: applied if its entry is anywhere, else released. */
  async resolveClaim(claim: Claim): Promise<'applied' | 'released'> {
    const account = await this.getAccount(claim.userId);
    const inJournal = account?.journal.some((e) => e.id === claim.entryId) ?? false;
    if (inJournal || (await this.db(() => this.store.hasLedgerEntry(claim.entryId)))) {
      if (account && inJournal) await this.moveSnapshot(account);
      await this.db(() => this.store.markClaimApplied(claim.id));
      return 'applied';
    }
    await this.db(() => this.store.releaseClaim(claim.id, claim.entryId));
    return 'released';
  }

  /**
   * Repairs what a crash can leave behind: stale claims, and journals whose oldest entry is older than the
   * lease (moved and emptied; a journal kept short on purpose is left alone until then). Idempotent.
   */
  async reconcile(options: { batch?: number } = {}): Promise<ReconcileReport> {
    const batch = options.batch ?? 500;
    const report: ReconcileReport = { claimsResolved: 0, claimsReleased: 0, accountsMoved: 0 };
    const stale = await this.db(() => this.store.pendingClaimsBefore(new Date(Date.now() - this.leaseMs), batch));
    for (const claim of stale) {
      if ((await this.resolveClaim(claim)) === 'applied') report.claimsResolved++;
      else report.claimsReleased++;
    }
    const staleSince = new Date(Date.now() - this.leaseMs);
    for (const userId of await this.db(() => this.store.accountsWithJournal(staleSince, batch))) {
      const account = await this.getAccount(userId);
      if (account && account.journal.length > 0) {
        await this.db(() => this.moveSnapshot(account));
        report.accountsMoved++;
      }
    }
    return report;
  }

  private backgroundError(err: unknown): void {
    (this.hooks.onBackgroundError ?? ((e) => console.error('[credit-kit] background ledger work failed:', e)))(err);
  }
}

export function claimId(userId: string, key: string): string {
  return JSON.stringify([userId, key]);
}

function newEntry(change: ChangeInput): JournalEntry {
  const entry: JournalEntry = { id: randomUUID(), kind: change.kind, amount: change.amount, at: new Date() };
  if (change.reason !== undefined) entry.reason = change.reason;
  if (change.ref !== undefined) entry.ref = change.ref;
  return entry;
}

/**
 * Sequence numbers and balances-after of journal entries follow from one snapshot: every update adds one
 * entry and bumps `count`, so the journal is the last `journal.length` entries, in order.
 */
export function ledgerEntriesOf(snapshot: AccountSnapshot): LedgerEntry[] {
  const { journal, count, userId } = snapshot;
  const out: LedgerEntry[] = new Array(journal.length);
  let balanceAfter = snapshot.balance;
  for (let i = journal.length - 1; i >= 0; i--) {
    const entry = journal[i]!;
    out[i] = { ...entry, userId, seq: count - (journal.length - 1 - i), balanceAfter };
    balanceAfter -= entry.amount;
  }
  return out;
}

function toTransaction(entry: LedgerEntry): Transaction {
  const t: Transaction = {
    id: entry.id,
    kind: entry.kind,
    amount: entry.amount,
    balanceAfter: entry.balanceAfter,
    seq: entry.seq,
    createdAt: new Date(entry.at).toISOString(),
  };
  if (entry.reason) t.reason = entry.reason;
  if (entry.ref) t.ref = entry.ref;
  return t;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
