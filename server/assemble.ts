/**
 * The one assembly behind both factories (createCredits for Express, createFetchCredits for the Fetch API):
 * the store behind its fail-closed bound, the ledger, the core, the purchases, and the members the two
 * return alike. Nothing here knows of a framework; the adapters add their guard and their routes on top.
 */
import { CreditsCore, type DeductOptions, type GrantOptions, type GrantResult, type RevokeOptions } from './domain/core';
import { Ledger, type ExpiryReport, type ReconcileReport, type RevokeResult, type TransactionPage } from './ledger';
import type { BalanceDetails, CreditGrant } from './http/wire';
import { logFailure } from './log';
import type { NeutralOptions } from './options';
import { failClosed } from './store/fail-closed';
import { MongoCreditStore } from './store/mongo-store';
import type { CreditStore, LedgerEntry } from './store/types';
import { Purchases, type FulfillmentResult } from './stripe/purchases';
import { Subscriptions } from './stripe/subscriptions';
import type { UserPlan } from './http/subscription-wire';
import { AutoRecharge } from './stripe/recharge';
import type { StripeCheckoutSessionLike } from './stripe/types';
import { assertId, parsePage } from './validate';

/** What both factories return, whatever the framework: the ledger functions, fulfilment and upkeep. */
export interface CreditsBase {
  /** The seed's function: true when `amount` was deducted, false when the balance was too low (nothing changed). */
  deductCredits(userId: string, amount: number, options?: DeductOptions): Promise<boolean>;
  /** An admin or system grant, applied at most once per idempotency key. */
  grantCredits(userId: string, amount: number, options: GrantOptions): Promise<GrantResult>;
  getBalance(userId: string): Promise<number>;
  /** The balance by grant and by source, and what expires next (`nextExpiry`). */
  getBalanceDetails(userId: string): Promise<BalanceDetails>;
  /** The grants with credits left, in the order they are spent. */
  listGrants(userId: string): Promise<CreditGrant[]>;
  /**
   * The expiry sweep (reconcile() runs it too): takes the unspent rest of every grant due by `now`
   * (default: the earlier of this instance's clock and the database server's) out of the balance, once
   * per grant. `userId`: only that account.
   * A `now` ahead of the clock expires early: for tests and simulated clocks.
   */
  expireGrants(options?: ExpireGrantsOptions): Promise<ExpiryReport>;
  /**
   * Takes a grant's unspent rest out of the balance now, once per key (default: per grant), and closes the
   * grant: a later give-back of a spend from it goes to `base`. `{ revoked: 0 }` when it holds nothing.
   */
  revokeGrant(userId: string, grantId: string, options?: RevokeOptions): Promise<RevokeResult>;
  /** The ledger, newest first; pass `nextCursor` back as `cursor` for older entries. */
  listTransactions(userId: string, options?: { limit?: number; cursor?: string | null }): Promise<TransactionPage>;
  /**
   * The user's live subscription (plan, status, current period, cancelAtPeriodEnd), or `{ plan: null }`
   * (README "Subscriptions").
   */
  getSubscription(userId: string): Promise<UserPlan>;
  /** Credits a Checkout Session (by id, fetched from Stripe, or a verified session object) exactly once. */
  fulfillCheckoutSession(sessionOrId: string | StripeCheckoutSessionLike): Promise<FulfillmentResult>;
  /** Creates the collections' indexes. Called for you on first use; await it at start-up to fail early. */
  init(): Promise<void>;
  /**
   * Finishes what a crash can leave half done (idempotency claims, journal entries not yet moved to the
   * ledger, purchase adjustments). Idempotent; run it at start-up and every few minutes.
   */
  reconcile(options?: ReconcileOptions): Promise<ReconcileReport & { adjustmentsApplied: number; rechargesSent: number }>;
  /**
   * Runs reconcile() now and then every `everyMs` (default 5 minutes) on an unref'd timer, reporting errors
   * to `onError` (default: the `logger`). Returns a function that stops it and resolves once a pass in flight has
   * ended: `await stop()` before closing the connection.
   */
  startReconciler(options?: { everyMs?: number; onError?: (err: unknown) => void }): () => Promise<void>;
  /** Waits for background work (journal moves, refunds after a failed response). For tests and shutdown. */
  flush(): Promise<void>;
  /** The storage port in use (the MongoDB store unless `store` was given), behind the fail-closed bound. */
  readonly store: CreditStore;
}

export interface ExpireGrantsOptions {
  now?: Date;
  userId?: string;
}

export interface ReconcileOptions {
  /**
   * Decide unfinished claims older than this, in ms. Default: `claimLeaseMs`. Any value is safe (a claim is
   * decided by fencing its entry first); 0 after an outage known to have stopped every holder.
   */
  olderThanMs?: number;
}

export interface Assembly {
  core: CreditsCore;
  purchases: Purchases;
  subscriptions: Subscriptions;
  /** Auto-recharge, when the `autoRecharge` option is set. */
  recharge: AutoRecharge | undefined;
  base: CreditsBase;
}

export function assemble(resolved: NeutralOptions): Assembly {
  const backing =
    resolved.store ??
    new MongoCreditStore({ connection: resolved.connection!, collectionPrefix: resolved.collectionPrefix });
  // Every store call is bounded by timeoutMs and fails closed; wrapped once, here.
  const store = failClosed(backing, resolved.timeoutMs);
  const ledger = new Ledger(store, resolved.claimLeaseMs, resolved.hooks.onBackgroundError, resolved.timeoutMs, resolved.lowBalance);
  const core = new CreditsCore(resolved, ledger);
  const purchases = new Purchases({ store, ledger, options: resolved });
  const subscriptions = new Subscriptions({
    store,
    options: resolved,
    ledger: {
      grantCredits: (userId, amount, opts) => core.grantCredits(userId, amount, opts),
      revokeGrant: (userId, grantId, opts) => core.revokeGrant(userId, grantId, opts),
    },
  });
  const recharge = resolved.autoRecharge
    ? new AutoRecharge({ store, ledger, purchases, options: resolved, settings: resolved.autoRecharge, leaseMs: resolved.claimLeaseMs })
    : undefined;
  // Crossings of a user's threshold are found where the mover writes entries to the ledger, off the request path.
  if (recharge) ledger.watchMoves((entries) => recharge.watch(entries));

  let initialised: Promise<void> | undefined;
  const init = () => (initialised ??= store.init().catch((err: unknown) => {
    initialised = undefined; // try again next time
    throw err;
  }));
  // Indexes are created in the background as soon as the connection is open; nothing waits for it.
  resolved.connection?.asPromise?.().then(() => init().catch(() => undefined), () => undefined);

  const reconcile: CreditsBase['reconcile'] = async (opts = {}) => {
    const onError = resolved.hooks.onBackgroundError;
    // A metered reservation past its settle-by time: given back whole unless the route settled it (README
    // "Streaming AI routes"). The give-back forecloses the settlement, so a settle() arriving later changes nothing.
    const decideReservation = (charge: LedgerEntry) =>
      core.giveBackUnsettled(charge.userId, charge.id, -charge.amount, 'Not settled within settleWithinMs: the reservation was given back');
    const repaired = await ledger.reconcile({ ...(opts.olderThanMs !== undefined ? { olderThanMs: opts.olderThanMs } : {}), decideReservation });
    const adjustmentsApplied = await purchases.reconcile(500, onError);
    const rechargesSent = recharge ? await recharge.reconcile(opts.olderThanMs ?? resolved.claimLeaseMs, 500, onError) : 0;
    return { ...repaired, adjustmentsApplied, rechargesSent };
  };

  const base: CreditsBase = {
    deductCredits: (userId, amount, opts) => core.deductCredits(userId, amount, opts),
    grantCredits: (userId, amount, opts) => core.grantCredits(userId, amount, opts),
    getBalance: async (userId) => core.getBalance(assertId(userId, 'userId')),
    getBalanceDetails: async (userId) => core.getBalanceDetails(assertId(userId, 'userId')),
    listGrants: async (userId) => (await core.getBalanceDetails(assertId(userId, 'userId'))).grants,
    async expireGrants({ now, userId } = {}) {
      if (now !== undefined && (!(now instanceof Date) || Number.isNaN(now.getTime()))) throw new RangeError('expireGrants: now must be a valid Date.');
      return ledger.expireGrants(now, userId === undefined ? undefined : assertId(userId, 'userId'));
    },
    revokeGrant: (userId, grantId, opts) => core.revokeGrant(userId, grantId, opts),
    async listTransactions(userId, opts = {}) {
      return core.listTransactions(assertId(userId, 'userId'), parsePage(opts.limit, opts.cursor, 1000));
    },
    fulfillCheckoutSession: (sessionOrId) => purchases.fulfill(sessionOrId),
    getSubscription: async (userId) => subscriptions.getPlan(assertId(userId, 'userId')),
    init,
    reconcile,
    startReconciler({ everyMs = 300_000, onError = (err: unknown) => logFailure(resolved.logger, err, 'reconcile') } = {}) {
      if (!Number.isSafeInteger(everyMs) || everyMs < 1) throw new RangeError('startReconciler: everyMs must be a positive integer.');
      let running: Promise<void> | undefined;
      let stopped = false;
      const tick = () => {
        if (running || stopped) return; // one pass at a time
        running = reconcile()
          .then(() => undefined, onError)
          .finally(() => (running = undefined));
      };
      tick();
      const timer = setInterval(tick, everyMs);
      timer.unref();
      // Stops the timer and resolves once a pass in flight has ended, so that a shutdown can close the
      // connection after it (a pass cut off by a closed connection only reports errors; the next one retries).
      return async () => {
        stopped = true;
        clearInterval(timer);
        await running;
      };
    },
    async flush() {
      await core.flush();
      if (!recharge) return;
      // The mover's crossings queue payments; their answers may queue nothing more for the ledger, but wait anyway.
      await recharge.flush();
      await core.flush();
    },
    store,
  };
  return { core, purchases, subscriptions, recharge, base };
}
