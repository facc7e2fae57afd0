/**
 * credits.router(): the kit's HTTP routes, mounted by the app (at /api in the docs).
 *
 *   POST /stripe/checkout/credits        create a Checkout Session        (signed in, JSON only)
 *   POST /stripe/webhook                 Stripe events, verified           (raw body, Stripe-Signature)
 *   GET  /stripe/checkout/session/:id    success page: status, fulfil      (signed in, own sessions)
 *   GET  /credits/balance                { balance, creditName }           (signed in)
 *   GET  /credits/transactions           the ledger, paginated             (signed in)
 *   GET  /credits/grants                 balance by grant, what expires    (signed in)
 *   GET  /credits/pricing                price, limits and bundles         (public)
 *   POST /credits/subscribe              subscription Checkout for a plan  (signed in, JSON only)
 *   POST /credits/portal                 Stripe customer portal URL        (signed in)
 *   GET  /credits/plans                  the app's plans                   (public)
 *   GET  /credits/plan                   the user's plan and period        (signed in)
 */
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Router } from 'express';
import type { CreditsCore } from '../domain/core';
import type { ResolvedOptions } from '../options';
import { CreditsError } from '../errors';
import { resolveUserId, sendError } from './middleware';
import { fixedWindowLimiter, rateLimitedError, rateLimitKey } from './rate-limit';
import type { Purchases } from '../stripe/purchases';
import type { Subscriptions } from '../stripe/subscriptions';
import type { AutoRecharge } from '../stripe/recharge';
import { createRechargeRoutes } from '../stripe/recharge-routes';
import type { CreditStore } from '../store/types';
import type { Reply } from './guard';
import { bodyError, createRoutes, WEBHOOK_BODY_LIMIT, type RouteInput } from './handlers';

/** Where `express.json({ verify: credits.keepRawBody })` keeps the bytes for the webhook. */
const RAW_BODY = Symbol.for('credit-kit.rawBody');

/**
 * For apps that must parse JSON globally before the router: keeps the raw bytes the webhook verifies.
 * `buf` is the Buffer body-parser hands its `verify` option (typed as its base class, Uint8Array, so that
 * the declarations need none of Node's globals).
 */
export function keepRawBody(req: unknown, _res: unknown, buf: Uint8Array): void {
  Reflect.set(req as object, RAW_BODY, buf);
}

export function createRateLimiter(options: ResolvedOptions<Request>, limit: number | undefined): RequestHandler | undefined {
  const rl = options.rateLimit;
  if (!rl || limit === undefined || limit >= Number.MAX_SAFE_INTEGER) return undefined;
  return fixedWindowLimiter({
    windowMs: rl.windowMs,
    limit,
    // Per signed-in user; a request from nobody counts against its address.
    key: async (req) => rateLimitKey(await options.getUserId(req), req.ip),
    refuse: (_req, res) => sendError(res, rateLimitedError(), options.logger),
  });
}

export interface RouterDeps {
  credits: CreditsCore;
  purchases: Purchases;
  subscriptions?: Subscriptions;
  options: ResolvedOptions<Request>;
  checkoutLimiter: RequestHandler | undefined;
  recharge?: AutoRecharge | undefined;
  store?: CreditStore;
}

export function createRouter({ credits: core, purchases, subscriptions, options, checkoutLimiter, recharge, store }: RouterDeps): Router {
  const router = express.Router();
  const json = express.json({ limit: options.bodyLimit, strict: true, type: 'application/json' });
  const routes = createRoutes({ core, purchases, subscriptions, options, recharge });
  const rechargeRoutes = createRechargeRoutes(recharge, options, async (u) => (await store?.getAccount(u))?.count ?? 0);

  const input = (req: Request): RouteInput => ({
    query: req.query as Record<string, unknown>,
    header: (name) => req.get(name),
    user: () => resolveUserId(options.getUserId, req),
    body: req.body,
  });
  const handle =
    (fn: (req: Request) => Reply | Promise<Reply>): RequestHandler =>
    (req, res) =>
      void Promise.resolve()
        .then(() => fn(req))
        .then((reply) => void res.status(reply.status).json(reply.body))
        .catch((err: unknown) => sendError(res, err, options.logger));

  // JSON only: a cross-site HTML form can send urlencoded, multipart or text/plain, never application/json
  // without a CORS preflight, so this is the checkout route's CSRF defence.
  const jsonOnly: RequestHandler = (req, res, next) => {
    if (!req.is('application/json')) return sendError(res, bodyError.notJson(), options.logger);
    next();
  };

  const checkoutChain: RequestHandler[] = [jsonOnly, json];
  if (checkoutLimiter) checkoutChain.unshift(checkoutLimiter);
  router.post('/stripe/checkout/credits', ...checkoutChain, handle((req) => routes.checkout(input(req))));

  router.post('/stripe/webhook', express.raw({ type: () => true, limit: WEBHOOK_BODY_LIMIT }), (req, res) => {
    const raw = (): Buffer => {
      const body: unknown = Buffer.isBuffer(req.body) ? req.body : Reflect.get(req, RAW_BODY);
      if (!Buffer.isBuffer(body)) {
        throw new CreditsError(
          'misconfigured',
          'The webhook body was parsed before credit-kit could verify its signature. Mount credits.router() before ' +
            'express.json(), or parse with express.json({ verify: credits.keepRawBody }).',
        );
      }
      return body;
    };
    void routes.webhook(raw, req.get('stripe-signature'), `${req.method} ${req.originalUrl.split('?')[0]}`).then(({ reply, report }) => {
      if (!res.headersSent) res.status(reply.status).json(reply.body);
      report();
    });
  });

  router.get('/stripe/checkout/session/:id', handle((req) => routes.session(input(req), req.params.id)));
  router.get('/credits/balance', handle((req) => routes.balance(input(req))));
  router.get('/credits/transactions', handle((req) => routes.transactions(input(req))));
  router.get('/credits/grants', handle((req) => routes.grants(input(req))));
  router.get('/credits/pricing', handle(() => routes.pricing()));
  router.post('/credits/subscribe', ...checkoutChain, handle((req) => routes.subscribe(input(req))));
  router.post('/credits/portal', ...(checkoutLimiter ? [checkoutLimiter] : []), handle((req) => routes.portal(input(req))));
  router.get('/credits/plans', handle((req) => routes.plans(input(req))));
  router.get('/credits/plan', handle((req) => routes.plan(input(req))));
  // Auto-recharge (stripe/recharge-routes.ts): bodies are JSON only, as for checkout.
  router.get('/credits/auto-recharge', handle((req) => rechargeRoutes.get(input(req))));
  router.put('/credits/auto-recharge', jsonOnly, json, handle((req) => rechargeRoutes.put(input(req))));
  router.delete('/credits/auto-recharge', handle((req) => rechargeRoutes.disable(input(req))));
  router.post('/credits/auto-recharge/card', jsonOnly, json, handle((req) => rechargeRoutes.saveCard(input(req))));
  router.delete('/credits/auto-recharge/card', handle((req) => rechargeRoutes.removeCard(input(req))));
  router.get('/credits/auto-recharge/action', handle((req) => rechargeRoutes.action(input(req))));

  // Body parser failures in the kit's own routes answer in the kit's error shape.
  const bodyErrors: ErrorRequestHandler = (err: { type?: string; status?: number }, req, res, next) => {
    if (err?.type === 'entity.too.large') {
      // The webhook's own limit, not bodyLimit, is the one its body went past.
      return sendError(res, bodyError.tooLarge(req.path === '/stripe/webhook' ? WEBHOOK_BODY_LIMIT : options.bodyLimit), options.logger);
    }
    if (err?.type === 'entity.parse.failed') return sendError(res, bodyError.badJson(), options.logger);
    if (err?.type && err.status && err.status < 500) return sendError(res, bodyError.unreadable(), options.logger);
    next(err);
  };
  router.use(bodyErrors);
  return router;
}
