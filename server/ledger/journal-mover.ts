/**
 * Moves journal entries from account documents to the ledger collection in the background, batched across
 * accounts: every MOVE_DELAY_MS one insert command carries the new entries of every account changed
 * meanwhile, and one bulk write removes them from those journals. A guarded request thus costs its one
 * blocking update plus a small share of two batched background writes, and account documents stay small.
 * A move that fails leaves the entries journalled, where reads still count them and reconcile() moves them.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot } from '../domain/types';
import { ledgerEntriesOf } from './history';

/** How long changes gather before one batched move. */
const MOVE_DELAY_MS = 50;

export class JournalMover {
  /** The newest snapshot of each account changed since the last move. */
  private readonly pending = new Map<string, AccountSnapshot>();
  /** Per account, the sequence number up to which this process has written the ledger. */
  private readonly inLedger = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: CreditStore,
    private readonly onError: (err: unknown) => void,
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

  /** Moves one account's whole journal now (recovery). */
  async moveNow(snapshot: AccountSnapshot): Promise<void> {
    if (snapshot.journal.length === 0) return;
    await this.store.insertLedgerEntries(ledgerEntriesOf(snapshot));
    await this.store.pullJournals([{ userId: snapshot.userId, entries: snapshot.journal }]);
  }

  /** Moves everything scheduled so far and resolves when done. */
  async flush(): Promise<void> {
    while (this.running || this.pending.size > 0) await this.start();
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
    const batch = [...this.pending.values()];
    this.pending.clear();
    const entries = batch.flatMap((snapshot) => {
      const known = this.inLedger.get(snapshot.userId) ?? 0;
      return ledgerEntriesOf(snapshot).filter((e) => e.seq > known);
    });
    await this.store.insertLedgerEntries(entries);
    if (this.inLedger.size > 10_000) this.inLedger.clear(); // only a hint: forgetting costs a duplicate insert
    for (const snapshot of batch) this.inLedger.set(snapshot.userId, snapshot.count);
    await this.store.pullJournals(batch.map((s) => ({ userId: s.userId, entries: s.journal })));
  }
}
