/**
 * Expiry: the unspent rest of a grant leaves the balance as its own `expire` entry, exactly once, while the
 * account goes on being spent from.
 *
 * The sweep reads the account, folds its journal over its grant book (book.ts) to learn what each due
 * grant holds as of the account's `count`, and applies the expiry under the grant's key (`expire:<grant>`,
 * the keyed-change machinery of changes.ts) with a compare-and-set on `count`: a spend or a give-back that
 * lands in between makes the write miss, and the sweep reads again. So the expiry entry comes right after
 * the entry it was computed from, and takes exactly what the grant holds then. The key makes it once:
 * two sweepers at once, a stalled one (fenced when its claim is decided), a lost reply (settled by fencing
 * and looking) all end with one entry.
 *
 * Spends ordered before the expiry entry still take from the grant: the grace, at most the time from the
 * expiry to the next sweep (reconcile(), every `everyMs` of startReconciler) plus the journal's move
 * (PULL_IDLE_MS, or a lease for an account whose mover stopped). A grant is due when the earlier of two
 * clocks says so, the sweeping instance's and the database server's (one clock for every instance): an
 * instance whose clock runs ahead does not expire early; a clock can never make a grant expire twice.
 * A `now` given by the caller (a simulated clock) is used as it is.
 */
import type { CreditStore } from '../store/types';
import { expireKey } from '../domain/keys';
import type { Changes } from './changes';
import type { JournalMover } from './journal-mover';
import { foldJournal } from './book';

export interface ExpiryReport {
  /** Grants whose rest this pass took out of the balance. */
  grantsExpired: number;
  /** Credits those expiries took. */
  creditsExpired: number;
  /** Due grants another sweeper was expiring at the same time (it finishes them, or the next pass does). */
  busy: number;
  errors: number;
}

/** Reads of a busy account before the sweep leaves it for the next pass. */
const MAX_ROUNDS = 20;

export class Expiry {
  constructor(
    private readonly store: CreditStore,
    private readonly changes: Changes,
    private readonly mover: JournalMover,
  ) {}

  /** Expires every due grant of up to `batch` accounts whose stored book holds one. */
  async sweep(given: Date | undefined, batch: number, onError: (err: unknown) => void): Promise<ExpiryReport> {
    const report: ExpiryReport = { grantsExpired: 0, creditsExpired: 0, busy: 0, errors: 0 };
    const now = given ?? (await this.clock());
    for (const userId of await this.store.accountsWithGrantsDue(now, batch)) {
      try {
        await this.expireAccount(userId, now, report);
      } catch (err) {
        report.errors++;
        onError(err);
      }
    }
    return report;
  }

  /** Expires the due grants of one account, as of `now` (default: the clock of the sweep). */
  async expireAccount(userId: string, given?: Date, report: ExpiryReport = { grantsExpired: 0, creditsExpired: 0, busy: 0, errors: 0 }): Promise<ExpiryReport> {
    const now = given ?? (await this.clock());
    const leave = new Set<string>();
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const account = await this.store.getAccount(userId);
      if (!account) return report;
      const { book } = await foldJournal(this.store, account);
      const due = book.grants
        .filter((g) => g.expiresAt && new Date(g.expiresAt).getTime() <= now.getTime() && g.remaining > 0 && !leave.has(g.id))
        .sort((a, b) => new Date(a.expiresAt!).getTime() - new Date(b.expiresAt!).getTime());
      const grant = due[0];
      if (!grant) {
        // Stores the book without the expired grants, so the next sweep does not read this account again.
        await this.mover.moveNow(account);
        return report;
      }
      const outcome = await this.changes.applyOnce(
        userId,
        expireKey(grant.id),
        {
          kind: 'expire',
          amount: -grant.remaining,
          from: grant.id,
          reason: `${grant.remaining} ${grant.source} credits expired`,
          ref: { note: `grant ${grant.id} expired at ${new Date(grant.expiresAt!).toISOString()}` },
        },
        { ifCount: account.count, resolveIfUncertain: true },
      );
      if (outcome.status === 'applied') {
        report.grantsExpired++;
        report.creditsExpired += grant.remaining;
      } else if (outcome.status === 'duplicate') {
        // Expired already (then it holds nothing once the fold sees the entry), or another sweeper holds
        // the key now: either way not this pass's to do again.
        if (outcome.claim.state === 'pending') report.busy++;
        leave.add(grant.id);
      }
      // rejected: the account moved on between the read and the write; read it again.
    }
    return report;
  }

  /** The earlier of this instance's clock and the database server's. */
  private async clock(): Promise<Date> {
    const local = new Date();
    const server = await this.store.serverTime();
    return server && server.getTime() < local.getTime() ? server : local;
  }
}
