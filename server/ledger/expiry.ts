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
 *
 * Rollover: a grant with rollover terms expires the same way, in the same one entry under the same key: it
 * takes the grant's whole rest and keeps min(max, rest) of it as grant `rollover:<grant>` (ledger/grants.ts),
 * so only the rest beyond that leaves the balance, and the argument above is unchanged.
 *
 * Revoke: `revoke(userId, grantId)` takes a grant's rest out now, by the same read, fold and keyed
 * compare-and-set on `count` (`atCount`), under `revoke:<grant>` unless the caller names a key. The fold then
 * closes the grant: nothing is ever given back into it.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, GrantBook, OpenGrant } from '../domain/types';
import { ConflictError, CreditsError } from '../errors';
import { expireKey, revokeKey } from '../domain/keys';
import type { ChangeInput, Changes, KeyedOutcome } from './changes';
import type { JournalMover } from './journal-mover';
import { currentBook } from './book';
import { rolloverAt } from './grants';

export interface ExpiryReport {
  /** Grants whose rest this pass took out of the balance. */
  grantsExpired: number;
  /** Credits those expiries took (what left the balance; a rollover's kept credits are not counted). */
  creditsExpired: number;
  /** Due grants another sweeper was expiring at the same time (it finishes them, or the next pass does). */
  busy: number;
  errors: number;
}

export interface RevokeResult {
  /** Credits this call took out of the balance: the grant's unspent rest, or 0 (nothing left, unknown, or revoked before). */
  revoked: number;
  balance: number;
}

/** Reads of a busy account before the sweep leaves it for the next pass. */
const MAX_ROUNDS = 20;

/** One change computed from the account's book and applied only if the account has not moved on since. */
interface Planned {
  key: string;
  change: ChangeInput;
}

type Round =
  | { status: 'nothing'; account: AccountSnapshot | null }
  | { status: 'done'; planned: Planned; outcome: Exclude<KeyedOutcome, { status: 'rejected' }> }
  | { status: 'moved' };

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
      const r = await this.atCount(userId, (book) => {
        const grant = book.grants
          .filter((g) => g.expiresAt && new Date(g.expiresAt).getTime() <= now.getTime() && g.remaining > 0 && !leave.has(g.id))
          .sort((a, b) => new Date(a.expiresAt!).getTime() - new Date(b.expiresAt!).getTime())[0];
        return grant ? { key: expireKey(grant.id), change: expiryOf(grant) } : null;
      });
      if (r.status === 'nothing') {
        // Stores the book without the expired grants, so the next sweep does not read this account again.
        if (r.account) await this.mover.moveNow(r.account);
        return report;
      }
      if (r.status === 'moved') continue; // the account moved on between the read and the write; read it again
      if (r.outcome.status === 'applied') {
        report.grantsExpired++;
        report.creditsExpired += -r.planned.change.amount;
      } else {
        // Expired already (then it holds nothing once the fold sees the entry), or another sweeper holds
        // the key now: either way not this pass's to do again.
        if (r.outcome.claim.state === 'pending') report.busy++;
        leave.add(r.planned.change.from!);
      }
    }
    return report;
  }

  /**
   * Takes what grant `grantId` holds out of the balance now, once per key (default `revoke:<grant>`): 0 when
   * it holds nothing (used up, unknown, or revoked before). A call that finds another holding the key waits
   * for it (and revokes itself if the holder lets go without writing): answering 0 while the holder may
   * still fail would lose the revoke. A ConflictError when the account changed under every one of its
   * reads, or the holder neither finished nor let go in time (retry it); `idempotency_key_reused` when the
   * key revoked another grant.
   */
  async revoke(userId: string, grantId: string, options: { reason?: string; key?: string } = {}): Promise<RevokeResult> {
    const key = options.key ?? revokeKey(grantId);
    for (let round = 0; round < MAX_ROUNDS * 2; round++) {
      const r = await this.atCount(userId, (book) => {
        const grant = book.grants.find((g) => g.id === grantId && g.remaining > 0);
        if (!grant) return null;
        const change: ChangeInput = {
          kind: 'revoke',
          amount: -grant.remaining,
          from: grant.id,
          reason: options.reason ?? `${grant.remaining} ${grant.source} credits revoked`,
          ref: { note: `grant ${grant.id} revoked` },
        };
        return { key, change };
      });
      if (r.status === 'moved') continue;
      if (r.status === 'done' && r.outcome.status === 'applied') return { revoked: -r.planned.change.amount, balance: r.outcome.balance };
      if (r.status === 'done' && r.outcome.status === 'duplicate') {
        // Another call holds the key, or used it. Pending: its write may still land, or it may let go and
        // fail; wait for its fate (deciding it once its lease is over) before answering.
        const fate = r.outcome.claim.state === 'applied' ? { state: 'applied' as const, claim: r.outcome.claim } : await this.changes.awaitClaim(r.outcome.claim);
        if (fate.state === 'released') continue; // let go without writing: this call revokes
        await this.assertSameGrant(userId, grantId, key, fate.claim.entryId);
      }
      return { revoked: 0, balance: (await this.store.getAccount(userId))?.balance ?? 0 };
    }
    throw new ConflictError(`The account of ${userId} changed under every attempt to revoke ${grantId}; nothing was revoked. Retry.`);
  }

  /**
   * A key that revoked another grant is refused rather than answered with 0 (two grants revoked under one
   * caller's key, say the refund's id, would leave the second untouched). The entry is looked for in the
   * journal first, then the ledger: the mover writes the ledger before it empties the journal, so one of
   * the two reads finds it.
   */
  private async assertSameGrant(userId: string, grantId: string, key: string, entryId: string): Promise<void> {
    const inJournal = (await this.store.getAccount(userId))?.journal.find((e) => e.id === entryId);
    const entry = inJournal ?? (await this.store.getLedgerEntries([entryId])).find((e) => e.userId === userId);
    if (entry && entry.kind === 'revoke' && entry.from !== undefined && entry.from !== grantId) {
      throw new CreditsError(
        'idempotency_key_reused',
        `The key ${JSON.stringify(key.slice('revoke:'.length))} already revoked grant ${entry.from}; a revoke of ${grantId} needs its own key (or none: the default is the grant's id). Nothing was revoked.`,
        { grantId, revokedGrantId: entry.from },
      );
    }
  }

  /**
   * One round of the loop expiry and revoke share: read the account, fold its journal over its book, plan
   * a change from the book, and apply it under its key only if the account's `count` is still the one
   * read (`moved` otherwise: the caller reads again). The key makes it once, the count makes its amount
   * exactly what the book held right before it.
   */
  private async atCount(userId: string, plan: (book: GrantBook) => Planned | null): Promise<Round> {
    const { account, folded } = await currentBook(this.store, userId);
    if (!account || !folded) return { status: 'nothing', account: null };
    const { book } = folded;
    const planned = plan(book);
    if (!planned) return { status: 'nothing', account };
    const outcome = await this.changes.applyOnce(userId, planned.key, planned.change, { ifCount: account.count, resolveIfUncertain: true });
    if (outcome.status === 'rejected') return { status: 'moved' };
    return { status: 'done', planned, outcome };
  }

  /** The earlier of this instance's clock and the database server's. */
  private async clock(): Promise<Date> {
    const local = new Date();
    const server = await this.store.serverTime();
    return server && server.getTime() < local.getTime() ? server : local;
  }
}

/** A due grant's expiry: its whole rest out, less what its rollover terms keep (one entry either way). */
function expiryOf(grant: OpenGrant): ChangeInput {
  const at = new Date(grant.expiresAt!).toISOString();
  const rollover = rolloverAt(grant);
  if (!rollover) {
    return {
      kind: 'expire',
      amount: -grant.remaining,
      from: grant.id,
      reason: `${grant.remaining} ${grant.source} credits expired`,
      ref: { note: `grant ${grant.id} expired at ${at}` },
    };
  }
  const gone = grant.remaining - rollover.keep;
  const until = rollover.terms.expiresAt ? `until ${rollover.terms.expiresAt.toISOString()}` : 'with no expiry';
  return {
    kind: 'expire',
    amount: -gone,
    from: grant.id,
    grant: rollover.terms,
    rolledOver: rollover.keep,
    reason: `${gone} ${grant.source} credits expired, ${rollover.keep} rolled over`,
    ref: { note: `grant ${grant.id} expired at ${at}; ${rollover.keep} kept as ${rollover.terms.id} ${until}` },
  };
}
