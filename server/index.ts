/**
 * credit-kit/server: prepaid usage credits for Express apps.
 *
 *   const credits = createCredits({ connection: mongoose.connection, getUserId: (req) => req.session.userId });
 *   app.use('/api', credits.router());
 *   app.post('/api/summarize', credits.requireCredits(5), handler);
 *   app.post('/api/chat', credits.requireCredits(50, async (req, res) => { … })); // async, Express 4 and 5
 */
import type { RequestHandler, Router } from 'express';
import { CreditsCore, type DeductOptions, type GrantOptions, type GrantResult } from './domain/core';
import { Ledger, type ReconcileReport, type TransactionPage } from './ledger';
import { failClosed } from './store/fail-closed';
import { createRequireCredits, type Cost } from './http/middleware';
import { logFailure } from './log';
import { resolveOptions, type CreateCreditsOptions } from './options';
import { Purchases, type FulfillmentResult } from './stripe/purchases';
import type { StripeCheckoutSessionLike } from './stripe/types';
import { createRateLimiter, createRouter, keepRawBody } from './http/router';
import { MongoCreditStore } from './store/mongo-store';
import type { CreditStore } from './store/types';
import { assertId, parsePage } from './validate';

export interface Credits {
  /**
   * Express middleware: deducts `cost` before the route runs; refunds it if the route fails. With a
   * `handler`, the guarded route itself: the handler runs once the charge is made, and a promise it returns
   * that rejects goes to `next(err)` (and is refunded) on Express 4 as on Express 5.
   */
  requireCredits(cost: Cost, handler?: RequestHandler): RequestHandler;
  /** The seed's function: true when `amount` was deducted, false when the balance was too low (nothing changed). */
  deductCredits(userId: string, amount: number, options?: DeductOptions): Promise<boolean>;
  /** An admin or system grant, applied at most once per idempotency key. */
  grantCredits(userId: string, amount: number, options: GrantOptions): Promise<GrantResult>;
  getBalance(userId: string): Promise<number>;
  /** The ledger, newest first; pass `nextCursor` back as `cursor` for older entries. */
  listTransactions(userId: string, options?: { limit?: number; cursor?: string | null }): Promise<TransactionPage>;
  /** The kit's routes: checkout, webhook, session, balance, transactions, pricing. Mount at `/api`. */
  router(): Router;
  /** Credits a Checkout Session (by id, fetched from Stripe, or a verified session object) exactly once. */
  fulfillCheckoutSession(sessionOrId: string | StripeCheckoutSessionLike): Promise<FulfillmentResult>;
  /** For `express.json({ verify: credits.keepRawBody })` in apps that parse JSON before the router. */
  keepRawBody: typeof keepRawBody;
  /** Creates the collections' indexes. Called for you on first use; await it at start-up to fail early. */
  init(): Promise<void>;
  /**
   * Finishes what a crash can leave half done (idempotency claims, journal entries not yet moved to the
   * ledger, purchase adjustments). Idempotent; run it at start-up and every few minutes.
   */
  reconcile(options?: ReconcileOptions): Promise<ReconcileReport & { adjustmentsApplied: number }>;
  /**
   * Runs reconcile() now and then every `everyMs` (default 5 minutes) on an unref'd timer, reporting errors
   * to `onError` (default: the `logger`). Returns a function that stops it.
   */
  startReconciler(options?: { everyMs?: number; onError?: (err: unknown) => void }): () => void;
  /** Waits for background work (journal moves, refunds after a failed response). For tests and shutdown. */
  flush(): Promise<void>;
  /** The storage port in use (the MongoDB store unless `store` was given), behind the fail-closed bound. */
  readonly store: CreditStore;
}

export interface ReconcileOptions {
  /**
   * Decide unfinished claims older than this, in ms. Default: `claimLeaseMs`. Any value is safe (a claim is
   * decided by fencing its entry first); 0 after an outage known to have stopped every holder.
   */
  olderThanMs?: number;
}

export function createCredits(options: CreateCreditsOptions): Credits {
  const resolved = resolveOptions(options);
  const base =
    resolved.store ??
    new MongoCreditStore({ connection: resolved.connection!, collectionPrefix: resolved.collectionPrefix });
  // Every store call is bounded by timeoutMs and fails closed; wrapped once, here.
  const store = failClosed(base, resolved.timeoutMs);
  const ledger = new Ledger(store, resolved.claimLeaseMs, resolved.hooks.onBackgroundError);
  const core = new CreditsCore(resolved, ledger);
  const purchases = new Purchases({ store, ledger, options: resolved });
  const requireCredits = createRequireCredits(core, resolved, createRateLimiter(resolved, resolved.rateLimit?.guarded));

  let initialised: Promise<void> | undefined;
  const init = () => (initialised ??= store.init().catch((err: unknown) => {
    initialised = undefined; // try again next time
    throw err;
  }));
  // Indexes are created in the background as soon as the connection is open; nothing waits for it.
  resolved.connection?.asPromise?.().then(() => init().catch(() => undefined), () => undefined);

  const credits: Credits = {
    requireCredits,
    deductCredits: (userId, amount, opts) => core.deductCredits(userId, amount, opts),
    grantCredits: (userId, amount, opts) => core.grantCredits(userId, amount, opts),
    getBalance: async (userId) => core.getBalance(assertId(userId, 'userId')),
    async listTransactions(userId, opts = {}) {
      return core.listTransactions(assertId(userId, 'userId'), parsePage(opts.limit, opts.cursor, 1000));
    },
    router: () => createRouter({ credits: core, purchases, options: resolved, checkoutLimiter: createRateLimiter(resolved, resolved.rateLimit?.checkout) }),
    fulfillCheckoutSession: (sessionOrId) => purchases.fulfill(sessionOrId),
    keepRawBody,
    init,
    async reconcile(opts = {}) {
      const onError = resolved.hooks.onBackgroundError;
      const repaired = await ledger.reconcile(opts.olderThanMs !== undefined ? { olderThanMs: opts.olderThanMs } : {});
      const adjustmentsApplied = await purchases.reconcile(500, onError);
      return { ...repaired, adjustmentsApplied };
    },
    startReconciler({ everyMs = 300_000, onError = (err: unknown) => logFailure(resolved.logger, err, 'reconcile') } = {}) {
      if (!Number.isSafeInteger(everyMs) || everyMs < 1) throw new RangeError('startReconciler: everyMs must be a positive integer.');
      let running = false;
      const tick = () => {
        if (running) return; // one pass at a time
        running = true;
        credits
          .reconcile()
          .catch(onError)
          .finally(() => (running = false));
      };
      tick();
      const timer = setInterval(tick, everyMs);
      timer.unref();
      return () => clearInterval(timer);
    },
    flush: () => core.flush(),
    store,
  };
  return credits;
}

export {
  CreditsError,
  CreditsConfigError,
  InvalidRequestError,
  InvalidAmountError,
  UnauthenticatedError,
  InsufficientCreditsError,
  NotFoundError,
  ConflictError,
  StoreUnavailableError,
  SignatureError,
  PaymentProviderError,
  ERROR_CODES,
} from './errors';
export type { CreditsErrorCode, CreditsErrorBody } from './errors';
export type {
  CreateCreditsOptions,
  PricingOptions,
  CreditBundle,
  RefundRule,
  OveragePolicy,
  RateLimitOptions,
  WebhookReport,
} from './options';
export type { CreditsLogger, CreditsLogFunction, LogLevel, LogRecord } from './log';
export type { CreditsContext, Cost } from './http/middleware';
export type { DeductOptions, GrantOptions, GrantResult } from './domain/core';
export type { Transaction, TransactionPage, ReconcileReport, LedgerHooks } from './ledger';
export type { FulfillmentResult, FulfillmentStatus, PaymentEventResult } from './stripe/purchases';
export type { WebhookOutcome } from './stripe/webhook';
export type { StripeClientLike, StripeEventLike, StripeCheckoutSessionLike } from './stripe/types';
export type { CreditStore, EntryKind, EntryRef, AccountSnapshot, LedgerEntry, Purchase } from './store/types';
/** The JSON bodies of the kit's routes, the same types credit-kit/client uses. */
export type {
  Balance,
  Pricing,
  PricingBundle,
  CheckoutUi,
  CheckoutItem,
  CheckoutRequestBody,
  HostedCheckoutSession,
  EmbeddedCheckoutSession,
  CheckoutSessionCreated,
  CheckoutSessionStatus,
  CheckoutSessionResult,
  InsufficientCreditsBody,
} from './http/wire';
