/**
 * Moves journal entries from account documents to the ledger collection in the background, batched across
 * accounts: every MOVE_DELAY_MS one insert command carries the new entries of every account changed
 * meanwhile. Removing them from their journals is a write of each account document, as costly as the
 * change itself, so it is done less often: when a journal holds PULL_AT entries, when an account has been
 * quiet for PULL_QUIET_MS (PULL_IDLE_MS when its journal adds an expiring grant, which the expiry sweep
 * finds only in the stored book), and on flush(); then bulk writes of `$pullAll`, PULL_CHUNK accounts
 * each, cover every account due. An entry already in the ledger and
 * still journalled is the same entry (reads count it once by id), so the delay changes no balance. A guarded
 * request thus costs its one blocking update plus small shares of batched background writes, and account
 * documents stay small. A move that fails leaves the entries journalled, where reads still count them and
 * reconcile() moves them.
 *
 * Grants: each account's journal is folded over its stored grant book (book.ts, grants.ts) so that every
 * ledger entry is written with the grants it took from or added to. The book is its own document (so a
 * spend's update neither rewrites nor returns it), and a move writes in this order: the ledger entries
 * (idempotent by id), the book after them (a compare-and-set on the stored book's `seq`: of two movers the
 * first wins and the other writes nothing more), then the pull of the journal entries the book now covers.
 * A crash after the book and before the pull leaves entries the book covers in the journal: reads count
 * them once by id, and the next fold skips them (seq at or below the book's) and pulls them. The fold is a
 * pure function of the entries, so a second mover, or one re-run after a crash, writes the same entries and
 * the same book.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, GrantBook, LedgerEntry } from '../domain/types';
import { foldJournal } from './book';

/** A snapshot with the book its journal leads to, and the books it was folded from. */
interface Moved {
  snapshot: AccountSnapshot;
  book: GrantBook;
  /** The book document as read (null: none yet): the compare-and-set's `from`. */
  stored: GrantBook | null;
  /** The book the fold started from (`stored`, or one a kit from before credit_books kept on the account). */
  from: GrantBook;
}

/** An account whose journal is all in the ledger: when its entries got there, and how long it may wait. */
interface Unpulled extends Moved {
  since: number;
  waitMs: number;
}

/** How long changes gather before one batched move. */
const MOVE_DELAY_MS = 50;
/** A journal this long (entries already in the ledger) is pulled with the next move. */
const PULL_AT = 8;
/**
 * How often idle journals are looked at. One whose folded book holds an expiring grant the stored book lacks
 * is pulled at the next look, if no change is pending for it: the expiry sweep finds due grants in stored
 * books only (README, "Grace").
 */
const PULL_IDLE_MS = 2000;
/**
 * Any other journal, of entries all in the ledger, is pulled once it saw no change for this long. Until
 * then its entries are counted once by id, as in the moment between a move's insert and its pull; an
 * account changed more often than this is pulled every PULL_AT entries instead of once per change
 * (measured on the embedded server: a pull costs about what the change costs). Well under the default
 * claimLeaseMs, after which reconcile() would move the journal itself.
 */
const PULL_QUIET_MS = 10_000;
/** The most accounts one pull command covers: the embedded server holds them all for the whole command. */
const PULL_CHUNK = 32;

export class JournalMover {
  /** The newest snapshot of each account changed since the last move. */
  private readonly pending = new Map<string, AccountSnapshot>();
  /** Per account, the sequence number up to which this process has written the ledger. */
  private readonly inLedger = new Map<string, number>();
  /** Accounts whose journal entries are all in the ledger but not yet pulled: the newest such snapshot. */
  private readonly unpulled = new Map<string, Unpulled>();
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** The idle pull in flight, if any (flush() waits for it). */
  private pulling: Promise<void> | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: CreditStore,
    private readonly onError: (err: unknown) => void,
    /**
     * Told of entries once they are in the ledger and before the book that covers them is stored (then
     * they are not folded, nor told of, again) and they leave their journals (low-balance alerts record
     * their crossings here); if it throws, the book and the journals are left for the next move.
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
    // An empty journal with a book still on the account (a kit from before credit_books) is migrated.
    if (snapshot.journal.length === 0 && !snapshot.book) return true;
    const { entries, book, stored, from } = await foldJournal(this.store, snapshot);
    await this.store.insertLedgerEntries(entries);
    await this.moved(entries);
    return (await this.pull([{ snapshot, book, stored, from }])).length === 0;
  }

  /**
   * Moves everything scheduled so far, empties the journals it moved, and resolves when done: also with the
   * accounts a pull scheduled again (another mover stored their book first and they journal newer entries).
   */
  async flush(): Promise<void> {
    do {
      while (this.running || this.pending.size > 0) await this.start();
      await this.pulling;
      await this.pullIdle(true).catch((err: unknown) => this.onError(err));
    } while (this.running || this.pending.size > 0);
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
    const stored = new Map((await this.store.getBooks(pendingBatch.map((s) => s.userId))).map((b) => [b.userId, b.book]));
    const tried = await Promise.allSettled(pendingBatch.map((snapshot) => foldJournal(this.store, snapshot, stored.get(snapshot.userId) ?? null)));
    const batch: AccountSnapshot[] = [];
    const folds: Array<Awaited<ReturnType<typeof foldJournal>>> = [];
    tried.forEach((t, i) => {
      if (t.status === 'rejected') return this.onError(t.reason);
      batch.push(pendingBatch[i]!);
      folds.push(t.value);
    });
    const moved: Moved[] = batch.map((snapshot, i) => ({ snapshot, book: folds[i]!.book, stored: folds[i]!.stored, from: folds[i]!.from }));
    const entries = batch.flatMap((snapshot, i) => {
      const known = this.inLedger.get(snapshot.userId) ?? 0;
      return folds[i]!.entries.filter((e) => e.seq > known);
    });
    await this.store.insertLedgerEntries(entries);
    await this.moved(entries);
    if (this.inLedger.size > 10_000) this.inLedger.clear(); // only a hint: forgetting costs a duplicate insert
    const due: Moved[] = [];
    const now = Date.now();
    for (const m of moved) {
      this.inLedger.set(m.snapshot.userId, m.snapshot.count);
      if (m.snapshot.journal.length >= PULL_AT) {
        this.unpulled.delete(m.snapshot.userId);
        due.push(m);
      } else {
        // An expiring grant the stored book lacks goes with the next idle pull, within PULL_IDLE_MS.
        this.unpulled.set(m.snapshot.userId, { ...m, since: now, waitMs: addsExpiringGrant(m) ? 0 : PULL_QUIET_MS });
      }
    }
    if (due.length > 0) await this.pullOrReschedule(due);
    this.armIdle();
  }

  /**
   * Pulls the journals of accounts that saw no new change since their entries reached the ledger, once they
   * have waited their time (all of them: flush()).
   */
  private async pullIdle(all = false): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const now = Date.now();
    const quiet = [...this.unpulled.values()].filter((m) => !this.pending.has(m.snapshot.userId) && (all || now - m.since >= m.waitMs));
    for (const m of quiet) this.unpulled.delete(m.snapshot.userId);
    if (quiet.length > 0) await this.pullOrReschedule(quiet);
  }

  /**
   * Per PULL_CHUNK accounts, one command storing their books, then one pulling their journals, one chunk
   * after the other, each its own store call: the embedded server's gate (tools/mongo/gate.go) holds every
   * account a command names until the command is done, so one command for a thousand idle accounts held a
   * thousand accounts' spends for about a second. On MongoDB each statement holds its own document only;
   * there the chunks are a few more background round trips. Returns the accounts whose book another mover
   * stored first (their journals are left as they are).
   */
  private async pull(moved: Moved[]): Promise<string[]> {
    const lost: string[] = [];
    for (let i = 0; i < moved.length; i += PULL_CHUNK) {
      const chunk = moved.slice(i, i + PULL_CHUNK);
      // A book already stored as far (a crash after its write, an older snapshot) is not written again.
      const writes = chunk
        .filter(({ book, stored }) => !stored || stored.seq !== book.seq)
        .map(({ snapshot, book, stored }) => ({ userId: snapshot.userId, from: stored?.seq ?? null, to: book }));
      const lostHere = new Set(await this.store.writeBooks(writes));
      // Every journalled entry of the snapshot is covered now: the book's seq is at least the snapshot's count.
      const pulls = chunk
        .filter(({ snapshot }) => !lostHere.has(snapshot.userId) && (snapshot.journal.length > 0 || snapshot.book))
        .map(({ snapshot }) => ({ userId: snapshot.userId, entries: snapshot.journal }));
      await this.store.pullJournals(pulls);
      lost.push(...lostHere);
    }
    return lost;
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

/**
 * Whether the book a journal folds to holds an expiring grant that the stored book (the one the journal
 * started from) does not hold with that expiry: until it is stored, the expiry sweep cannot find it.
 */
function addsExpiringGrant({ from, book }: Moved): boolean {
  const stored = from.grants;
  const time = (d: unknown) => (d instanceof Date ? d.getTime() : undefined);
  return book.grants.some((g) => {
    const expires = time(g.expiresAt);
    return expires !== undefined && !stored.some((s) => s.id === g.id && time(s.expiresAt) === expires);
  });
}
