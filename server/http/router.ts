/**
 * credits.router(): the kit's HTTP routes, mounted by the app (at /api in the docs).
 *
 *   POST /stripe/checkout/credits        create a Checkout Session        (signed in, JSON only)
 *   POST /stripe/webhook                 Stripe events, verified           (raw body, Stripe-Signature)
 *   GET  /stripe/checkout/session/:id    success page: status, fulfil      (signed in, own sessions)
 *   GET  /credits/balance                { balance, creditName }           (signed in)
 *   GET  /credits/transactions           the ledger, paginated             (signed in)
 *   GET  /credits/pricing                price, limits and bundles         (public)
 */
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response, type Router } from 'express';
import type Stripe from 'stripe';
import { createCheckoutSession, parseCheckoutBody } from '../stripe/checkout';
import type { CreditsCore } from '../domain/core';
import type { ResolvedOptions } from '../options';
import { CreditsError, InvalidRequestError, NotFoundError, toCreditsError } from '../errors';
import type { WebhookReport } from '../options';
import { resolveUserId, sendError } from './middleware';
import { addressKey, fixedWindowLimiter } from './rate-limit';
import { parseIdempotencyKey, parsePage } from '../validate';
import type { Balance, CheckoutSessionResult, EmbeddedCheckoutSession, HostedCheckoutSession, Pricing, TransactionPage } from './wire';
import type { Purchases } from '../stripe/purchases';
import { handleEvent, verifyEvent, type WebhookOutcome } from '../stripe/webhook';

/** Where `express.json({ verify: credits.keepRawBody })` keeps the bytes for the webhook. */
const RAW_BODY = Symbol.for('credit-kit.rawBody');

/**
 * For apps that must parse JSON globally before the router: keeps the raw bytes the webhook verifies.
 * `buf` is the Buffer body-parser hands its `verify` option (typed as its base class, Uint8Array, so that
 * the declarations need none of Node's globals).
 */
export function keepRawBody(req: unknown, _res: unknown, buf: Uint8Array): void {
  (req as Record<symbol, Uint8Array>)[RAW_BODY] = buf;
}

export function createRateLimiter(options: ResolvedOptions, limit: number | undefined): RequestHandler | undefined {
  const rl = options.rateLimit;
  if (!rl || limit === undefined || limit >= Number.MAX_SAFE_INTEGER) return undefined;
  return fixedWindowLimiter({
    windowMs: rl.windowMs,
    limit,
    // Per signed-in user; a request from nobody counts against its address.
    key: async (req) => {
      const user = await options.getUserId(req);
      return typeof user === 'string' && user ? `user:${user}` : `ip:${addressKey(req.ip ?? '')}`;
    },
    refuse: (_req, res) => {
      sendError(res, new CreditsError('rate_limited', 'Too many requests; slow down and try again shortly.'), options.logger);
    },
  });
}

export interface RouterDeps {
  credits: CreditsCore;
  purchases: Purchases;
  options: ResolvedOptions;
  checkoutLimiter: RequestHandler | undefined;
}

export function createRouter({ credits: core, purchases, options, checkoutLimiter }: RouterDeps): Router {
  const router = express.Router();
  const json = express.json({ limit: options.bodyLimit, strict: true, type: 'application/json' });

  const handle =
    (fn: (req: Request, res: Response) => Promise<void>): RequestHandler =>
    (req, res) =>
      void fn(req, res).catch((err: unknown) => sendError(res, err, options.logger));

  const requireStripe = (): Stripe => {
    if (!options.stripe) {
      throw new CreditsError('not_configured', 'Stripe is not configured: pass `stripe` and `webhookSecret` to createCredits.');
    }
    return options.stripe;
  };

  // JSON only: a cross-site HTML form can send urlencoded, multipart or text/plain, never application/json
  // without a CORS preflight, so this is the checkout route's CSRF defence.
  const jsonOnly: RequestHandler = (req, res, next) => {
    if (!req.is('application/json')) {
      return sendError(res, new CreditsError('unsupported_media_type', 'Send the body as JSON with Content-Type: application/json.'), options.logger);
    }
    next();
  };

  const checkoutChain: RequestHandler[] = [jsonOnly, json];
  if (checkoutLimiter) checkoutChain.unshift(checkoutLimiter);
  router.post(
    '/stripe/checkout/credits',
    ...checkoutChain,
    handle(async (req, res) => {
      const userId = await resolveUserId(options.getUserId, req);
      const request = parseCheckoutBody(req.body, options);
      const stripe = requireStripe();
      const key = parseIdempotencyKey(req.get('idempotency-key'));
      const session = await createCheckoutSession(stripe, options, userId, request, key);
      // Recorded before anyone sees the URL: only sessions this app created and recorded are ever credited.
      await purchases.record({
        sessionId: session.id,
        userId,
        credits: request.credits,
        amountTotal: request.total,
        currency: options.pricing.currency,
        livemode: session.livemode,
      });
      res.status(201).json(
        request.ui === 'embedded'
          ? ({ id: session.id, clientSecret: session.clientSecret, credits: request.credits, amount: request.total } satisfies EmbeddedCheckoutSession)
          : ({ id: session.id, url: session.url, credits: request.credits, amount: request.total } satisfies HostedCheckoutSession),
      );
    }),
  );

  router.post(
    '/stripe/webhook',
    express.raw({ type: () => true, limit: '1mb' }),
    (req, res) => {
      let event: Stripe.Event | undefined;
      void receiveWebhook(req, (e) => (event = e))
        .then((outcome) => {
          res.status(200).json({ received: true, type: event?.type, ...outcome });
          report({ status: 200, ...(event ? { event } : {}), outcome });
        })
        .catch((err: unknown) => {
          sendError(res, err, options.logger);
          const e = toCreditsError(err);
          report({ status: e.status, ...(event ? { event } : {}), error: { code: e.code, message: e.message } });
        });
    },
  );

  const report = (r: WebhookReport) => {
    try {
      options.onWebhook?.(r);
    } catch {
      // A logging hook must never change what Stripe is told.
    }
  };

  /** Verifies a delivery and applies its event; `seen` learns the event as soon as it is verified. */
  async function receiveWebhook(req: Request, seen: (event: Stripe.Event) => void): Promise<WebhookOutcome> {
    const raw: unknown = Buffer.isBuffer(req.body) ? req.body : (req as unknown as Record<symbol, unknown>)[RAW_BODY];
    if (!Buffer.isBuffer(raw)) {
      throw new CreditsError(
        'misconfigured',
        'The webhook body was parsed before credit-kit could verify its signature. Mount credits.router() before ' +
          'express.json(), or parse with express.json({ verify: credits.keepRawBody }).',
      );
    }
    const event = verifyEvent(requireStripe(), raw, req.get('stripe-signature'), options);
    seen(event);
    return handleEvent(purchases, event);
  }

  router.get(
    '/stripe/checkout/session/:id',
    handle(async (req, res) => {
      const userId = await resolveUserId(options.getUserId, req);
      const id = req.params.id;
      if (typeof id !== 'string' || !/^cs_[A-Za-z0-9_]{1,250}$/.test(id)) {
        throw new InvalidRequestError('That is not a Checkout Session id (cs_…).');
      }
      const session = await purchases.retrieveSession(id);
      const owner = session.metadata?.credit_kit_user_id ?? session.client_reference_id;
      if (owner !== userId) throw new NotFoundError('No such checkout session.');
      const result = await purchases.fulfill(session);
      res.json({
        id: session.id,
        status: result.status,
        paymentStatus: session.payment_status,
        credits: result.credits,
        creditsAdded: result.creditsAdded,
        balance: await core.getBalance(userId),
        creditName: options.creditName,
      } satisfies CheckoutSessionResult);
    }),
  );

  router.get(
    '/credits/balance',
    handle(async (req, res) => {
      onlyQuery(req, []);
      const userId = await resolveUserId(options.getUserId, req);
      res.json({ balance: await core.getBalance(userId), creditName: options.creditName } satisfies Balance);
    }),
  );

  router.get(
    '/credits/transactions',
    handle(async (req, res) => {
      onlyQuery(req, ['limit', 'cursor']);
      const userId = await resolveUserId(options.getUserId, req);
      res.json((await core.listTransactions(userId, parsePage(req.query.limit, req.query.cursor, 100))) satisfies TransactionPage);
    }),
  );

  router.get('/credits/pricing', (_req, res) => {
    const p = options.pricing;
    res.json({
      creditName: options.creditName,
      currency: p.currency,
      creditPriceCents: p.creditPriceCents,
      minQuantity: Math.max(p.minQuantity, Math.ceil(p.minimumChargeCents / p.creditPriceCents)),
      maxQuantity: p.maxQuantity,
      bundles: [...p.bundles.values()].map((b) => ({ id: b.id, credits: b.credits, price: b.price, name: b.name ?? null })),
    } satisfies Pricing);
  });

  // Body parser failures in the kit's own routes answer in the kit's error shape.
  const bodyErrors: ErrorRequestHandler = (err: { type?: string; status?: number }, _req, res, next) => {
    if (err?.type === 'entity.too.large') {
      return sendError(res, new CreditsError('payload_too_large', `The body is larger than ${options.bodyLimit}.`), options.logger);
    }
    if (err?.type === 'entity.parse.failed') return sendError(res, new InvalidRequestError('The body is not valid JSON.'), options.logger);
    if (err?.type && err.status && err.status < 500) return sendError(res, new InvalidRequestError('The body could not be read.'), options.logger);
    next(err);
  };
  router.use(bodyErrors);
  return router;
}

/** Refuses query parameters a route does not read, such as `userId=` or `cursor[$gt]=`: nothing is silently ignored. */
function onlyQuery(req: Request, allowed: string[]): void {
  for (const key of Object.keys(req.query)) {
    if (!allowed.includes(key)) {
      throw new InvalidRequestError(`Unknown query parameter "${key.slice(0, 40)}".${allowed.length ? ` This route reads ${allowed.join(' and ')}.` : ''}`);
    }
  }
}

