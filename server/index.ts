/**
 * credit-kit/server: prepaid usage credits for Express apps.
 *
 *   const credits = createCredits({ connection: mongoose.connection, getUserId: (req) => req.session.userId });
 *   app.use('/api', credits.router());
 *   app.post('/api/summarize', credits.requireCredits(5), handler);
 *   app.post('/api/chat', credits.requireCredits(50, async (req, res) => { … })); // async, Express 4 and 5
 */
import type { Request, RequestHandler, Router } from 'express';
import { assemble, type CreditsBase } from './assemble';
import { createRequireCredits, type Cost } from './http/middleware';
import type { GuardOptions } from './http/guard';
import { resolveOptions, type CreditsOptions, type NamedCosts } from './options';
import { createRateLimiter, createRouter, keepRawBody } from './http/router';

/**
 * What createCredits returns: the ledger functions every factory has, and the Express guard and router.
 * `Name` is the names of the `costs` it was given (any string when it was given none, or a NamedCosts).
 */
export interface Credits<Name extends string = string> extends CreditsBase {
  /**
   * Express middleware: deducts `cost` before the route runs; refunds it if the route fails. With a
   * `handler`, the guarded route itself: the handler runs once the charge is made, and a promise it returns
   * that rejects goes to `next(err)` (and is refunded) on Express 4 as on Express 5.
   */
  requireCredits(cost: Cost<Name>, handler?: RequestHandler): RequestHandler;
  /**
   * With options: `requireCredits(50, { metered: true })` reserves 50 that only `req.credits.settle(used)`
   * turns into a charge; unsettled after `settleWithinMs`, `reconcile()` gives the reservation back. A named
   * cost that is metered (`costs`) is a metered guard without it.
   */
  requireCredits(cost: Cost<Name>, options: GuardOptions, handler?: RequestHandler): RequestHandler;
  /** The kit's routes: checkout, webhook, session, balance, transactions, pricing. Mount at `/api`. */
  router(): Router;
  /** For `express.json({ verify: credits.keepRawBody })` in apps that parse JSON before the router. */
  keepRawBody: typeof keepRawBody;
}

/** createCredits' options: `getUserId(req)` reads an Express request. */
export type CreateCreditsOptions = CreditsOptions<Request>;

export function createCredits<Costs extends NamedCosts = NamedCosts>(options: CreateCreditsOptions & { costs?: Costs }): Credits<Extract<keyof Costs, string>> {
  const resolved = resolveOptions(options);
  const { core, purchases, subscriptions, recharge, base } = assemble(resolved);
  return {
    ...base,
    requireCredits: createRequireCredits(core, resolved, createRateLimiter(resolved, resolved.rateLimit?.guarded)),
    router: () =>
      createRouter({ credits: core, purchases, subscriptions, recharge, store: base.store, options: resolved, checkoutLimiter: createRateLimiter(resolved, resolved.rateLimit?.checkout) }),
    keepRawBody,
  };
}

export * from './public-api';
export type { CreditsOptions, RateLimitOptions } from './options';
export type { Cost } from './http/middleware';
export type { WebhookOutcome } from './stripe/webhook';
