/**
 * Moves journal entries from account documents to the ledger collection in the background, batched across
 * accounts: every MOVE_DELAY_MS one insert command carries the new entries of every account changed
 * meanwhile. Removing them from their journals is a write of each account document, so it is done less
 * often: when a journal holds PULL_AT entries, when an account has been quiet for PULL_IDLE_MS, and on
 * flush(); then one bulk write of `$pullAll` covers every account due. An entry already in the ledger and
 * still journalled is the same entry (reads count it once by id), so the delay changes no balance. A guarded
 * request thus costs its one blocking update plus small shares of batched background writes, and account
 * documents stay small. A move that fails leaves the entries journalled, where reads still count them and
 * reconcile() moves them.
 *
 * Grants: each account's journal is folded over its grant book (book.ts, grants.ts) so that every ledger
 * entry is written with the grants it took from or added to, and the pull stores the book after the pulled
 * entries, with a compare-and-set on the book's `seq`. The fold is a pure function of the entries, so a
 * second mover, or one re-run after a crash, writes the same entries and the same book.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, GrantBook, LedgerEntry } from '../domain/types';
import { foldJournal } from './book';

/** A snapshot with the book its journal leads to. */
interface Moved {
  snapshot: AccountSnapshot;
  book: GrantBook;
}

/** How long changes gather before one batched move. */
const MOVE_DELAY_MS = 50;
/** A journal this long (entries already in the ledger) is pulled with the next move. */
const PULL_AT = 8;
/** Entries in the ledger are pulled from a journal that saw no change for this long. */
const PULL_IDLE_MS = 2000;

export class JournalMover {
  /** The newest snapshot of each account changed since the last move. */
  private readonly pending = new Map<string, AccountSnapshot>();
  /** Per account, the sequence number up to which this process has written the ledger. */
  private readonly inLedger = new Map<string, number>();
  /** Accounts whose journal entries are all in the ledger but not yet pulled: the newest such snapshot. */
  private readonly unpulled = new Map<string, Moved>();
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** The idle pull in flight, if any (flush() waits for it). */
  private pulling: Promise<void> | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: CreditStore,
    private readonly onError: (err: unknown) => void,
    /**
     * Told of entries once they are in the ledger and before they leave their journals (low-balance alerts
     * record their crossings here); if it throws, the journals are left for the next move.
     */
    private readonly moved: (entries: LedgerEntry[]) => Promise<void> = async () => undefined,
  ) {}

  schedule(snapshot: AccountSnapshot): void {
    if (snapshot.journal.length === 0) return;
    const known = this.pending.get(snapshot.userId);
    if (!known || snapshot.count > known.count) this.pending.set(snapshot.userId, snapshot);
    if (!this.timer && !this.running) {
      this.timer = setTimeout(() => void this.start(), MOVE_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Moves one account's whole journal now (recovery, the expiry sweep); true when its book was stored. */
  async moveNow(snapshot: AccountSnapshot): Promise<boolean> {
    if (snapshot.journal.length === 0) return true;
    const { entries, book } = await foldJournal(this.store, snapshot);
    await this.store.insertLedgerEntries(entries);
    await this.moved(entries);
    return (await this.pull([{ snapshot, book }])).length === 0;
  }

  /** Moves everything scheduled so far, empties the journals it moved, and resolves when done. */
  async flush(): Promise<void> {
    while (this.running || this.pending.size > 0) await this.start();
    await this.pulling;
    await this.pullIdle().catch((err: unknown) => this.onError(err));
  }

  private start(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running) return this.running.then(() => this.start());
    if (this.pending.size === 0) return Promise.resolve();
    const run = this.run()
      .catch((err: unknown) => this.onError(err))
      .finally(() => {
        this.running = undefined;
        if (this.pending.size > 0 && !this.timer) {
          this.timer = setTimeout(() => void this.start(), MOVE_DELAY_MS);
          this.timer.unref();
        }
      });
    this.running = run;
    return run;
  }

  private async run(): Promise<void> {
    const pendingBatch = [...this.pending.values()];
    this.pending.clear();
    // Folding reads only for give-backs whose charge has left the journal; accounts fold side by side. One
    // account whose fold fails (a read refused) is reported and left journalled, for its next change or
    // reconcile(); the others move on.
    const tried = await Promise.allSettled(pendingBatch.map((snapshot) => foldJournal(this.store, snapshot)));
    const batch: AccountSnapshot[] = [];
    const folds: Array<Awaited<ReturnType<typeof foldJournal>>> = [];
    tried.forEach((t, i) => {
      if (t.status === 'rejected') return this.onError(t.reason);
      batch.push(pendingBatch[i]!);
      folds.push(t.value);
    });
    const moved: Moved[] = batch.map((snapshot, i) => ({ snapshot, book: folds[i]!.book }));
    const entries = batch.flatMap((snapshot, i) => {
      const known = this.inLedger.get(snapshot.userId) ?? 0;
      return folds[i]!.entries.filter((e) => e.seq > known);
    });
    await this.store.insertLedgerEntries(entries);
    await this.moved(entries);
    if (this.inLedger.size > 10_000) this.inLedger.clear(); // only a hint: forgetting costs a duplicate insert
    const due: Moved[] = [];
    for (const m of moved) {
      this.inLedger.set(m.snapshot.userId, m.snapshot.count);
      if (m.snapshot.journal.length >= PULL_AT) {
        this.unpulled.delete(m.snapshot.userId);
        due.push(m);
      } else {
        this.unpulled.set(m.snapshot.userId, m);
      }
    }
    if (due.length > 0) await this.pullOrReschedule(due);
    this.armIdle();
  }

  /** Pulls the journals of accounts that saw no new change since their entries reached the ledger. */
  private async pullIdle(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const quiet = [...this.unpulled.values()].filter((m) => !this.pending.has(m.snapshot.userId));
    for (const m of quiet) this.unpulled.delete(m.snapshot.userId);
    if (quiet.length > 0) await this.pullOrReschedule(quiet);
  }

  private pull(moved: Moved[]): Promise<string[]> {
    return this.store.pullJournals(
      moved.map(({ snapshot, book }) => ({ userId: snapshot.userId, entries: snapshot.journal, book: { from: snapshot.book?.seq ?? null, to: book } })),
    );
  }

  /** An account another mover pulled first may still journal newer entries: read it and move it again. */
  private async pullOrReschedule(moved: Moved[]): Promise<void> {
    for (const userId of await this.pull(moved)) {
      const fresh = await this.store.getAccount(userId);
      if (fresh && fresh.journal.length > 0) this.schedule(fresh);
    }
  }

  private armIdle(): void {
    if (this.idleTimer || this.unpulled.size === 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      const pulling = this.pullIdle()
        .catch((err: unknown) => this.onError(err))
        .finally(() => {
          if (this.pulling === pulling) this.pulling = undefined; // a later pull may have started meanwhile
          this.armIdle();
        });
      this.pulling = pulling;
    }, PULL_IDLE_MS);
    this.idleTimer.unref();
  }
}
