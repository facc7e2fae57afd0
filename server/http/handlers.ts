/**
 * The kit's routes, framework-neutral: each takes what an adapter read from the request (query, headers,
 * the parsed body, a way to learn who is signed in) and answers a status and a JSON body of the wire
 * contract (wire.ts). The Express router (router.ts) and the Fetch handlers (server/fetch) only read
 * requests and send these answers, so validation, order of checks and bodies are written once.
 */
import type Stripe from 'stripe';
import type { CreditsCore } from '../domain/core';
import { CreditsError, InvalidRequestError, NotFoundError, toCreditsError } from '../errors';
import type { NeutralOptions, WebhookReport } from '../options';
import { createCheckoutSession, parseCheckoutBody } from '../stripe/checkout';
import type { Purchases } from '../stripe/purchases';
import type { Subscriptions } from '../stripe/subscriptions';
import type { BillingPortalSession, PlanList, SubscriptionCheckoutCreated, UserPlan } from './subscription-wire';
import type { AutoRecharge } from '../stripe/recharge';
import { handleEvent, verifyEvent } from '../stripe/webhook';
import { parseIdempotencyKey, parsePage } from '../validate';
import { errorReply, type Reply } from './guard';
import type { Balance, BalanceDetails, CheckoutSessionCreated, CheckoutSessionResult, Pricing, TransactionPage } from './wire';

/** What a route reads of a request, whatever the framework. */
export interface RouteInput {
  /** The query parameters: a string each, or an array when repeated (or whatever the framework's parser made). */
  query: Record<string, unknown>;
  header(name: string): string | undefined;
  /** The signed-in user's id (`resolveUserId`), or throws 401. Called only by routes that need a user. */
  user(): Promise<string>;
  /** The parsed JSON body, for the checkout route. */
  body?: unknown;
}

export interface RouteDeps {
  core: CreditsCore;
  purchases: Purchases;
  /** The subscriptions (README "Subscriptions"); without them, subscription events are ignored. */
  subscriptions?: Subscriptions;
  options: NeutralOptions;
  /** Auto-recharge, whose payment and card-saving events the webhook hands it. */
  recharge?: AutoRecharge | undefined;
}

/** The failures of reading a JSON body, with the same codes and messages on every adapter. */
export const bodyError = {
  notJson: () => new CreditsError('unsupported_media_type', 'Send the body as JSON with Content-Type: application/json.'),
  tooLarge: (limit: string) => new CreditsError('payload_too_large', `The body is larger than ${limit}.`),
  badJson: () => new InvalidRequestError('The body is not valid JSON.'),
  unreadable: () => new InvalidRequestError('The body could not be read.'),
};

/** The webhook's largest body: Stripe's events are far below it. */
export const WEBHOOK_BODY_LIMIT = '1mb';

export function createRoutes({ core, purchases, subscriptions, options, recharge }: RouteDeps) {
  const requireStripe = (): Stripe => {
    if (!options.stripe) {
      throw new CreditsError('not_configured', 'Stripe is not configured: pass `stripe` and `webhookSecret` to createCredits.');
    }
    return options.stripe;
  };

  const requireSubscriptions = (): Subscriptions => {
    if (!subscriptions || options.plans.byId.size === 0) {
      throw new CreditsError('not_configured', 'No subscription plans are configured: pass `plans` to createCredits.');
    }
    return subscriptions;
  };

  const report = (r: WebhookReport) => {
    try {
      options.onWebhook?.(r);
    } catch {
      // A logging hook must never change what Stripe is told.
    }
  };

  return {
    /** POST /stripe/checkout/credits; the adapter has checked the Content-Type and parsed the JSON body. */
    async checkout(input: RouteInput): Promise<Reply<CheckoutSessionCreated>> {
      const userId = await input.user();
      const request = parseCheckoutBody(input.body, options);
      const stripe = requireStripe();
      const key = parseIdempotencyKey(input.header('idempotency-key'));
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
      return {
        status: 201,
        body:
          request.ui === 'embedded'
            ? { id: session.id, clientSecret: session.clientSecret, credits: request.credits, amount: request.total }
            : { id: session.id, url: session.url, credits: request.credits, amount: request.total },
      };
    },

    /**
     * POST /stripe/webhook: verifies the delivery over its raw bytes (`raw()` may throw, e.g. a body parsed
     * before the kit could read it) and applies its event. Always answers; `report` tells `onWebhook`, for
     * the adapter to call once the answer has gone out.
     */
    async webhook(raw: () => Buffer, signature: string | undefined, where: string): Promise<{ reply: Reply; report: () => void }> {
      let event: Stripe.Event | undefined;
      try {
        const verified = verifyEvent(requireStripe(), raw(), signature, options);
        event = verified;
        const outcome = await handleEvent(purchases, verified, subscriptions, recharge);
        return {
          reply: { status: 200, body: { received: true, type: verified.type, ...outcome } },
          report: () => report({ status: 200, event: verified, outcome }),
        };
      } catch (err) {
        const e = toCreditsError(err);
        const seen = event;
        return {
          reply: errorReply(err, options.logger, where),
          report: () => report({ status: e.status, ...(seen ? { event: seen } : {}), error: { code: e.code, message: e.message } }),
        };
      }
    },

    /** GET /stripe/checkout/session/:id, the success page: the purchase's status, fulfilled on the way. */
    async session(input: RouteInput, id: unknown): Promise<Reply<CheckoutSessionResult>> {
      const userId = await input.user();
      if (typeof id !== 'string' || !/^cs_[A-Za-z0-9_]{1,250}$/.test(id)) {
        throw new InvalidRequestError('That is not a Checkout Session id (cs_…).');
      }
      const session = await purchases.retrieveSession(id);
      const owner = session.metadata?.credit_kit_user_id ?? session.client_reference_id;
      if (owner !== userId) throw new NotFoundError('No such checkout session.');
      if (session.mode === 'subscription' && subscriptions) {
        // The subscription is linked on the way; its credits come with the paid invoice (invoice.paid).
        await subscriptions.sessionEvent(session);
        const plan = options.plans.byId.get(session.metadata?.credit_kit_plan ?? '');
        return {
          status: 200,
          body: {
            id: session.id,
            status: session.status === 'complete' ? (session.payment_status === 'unpaid' ? 'awaiting_payment' : 'paid') : session.status === 'expired' ? 'expired' : 'open',
            paymentStatus: session.payment_status,
            credits: plan?.credits ?? 0,
            creditsAdded: 0,
            balance: await core.getBalance(userId),
            creditName: options.creditName,
          },
        };
      }
      const result = await purchases.fulfill(session);
      return {
        status: 200,
        body: {
          id: session.id,
          status: result.status,
          paymentStatus: session.payment_status,
          credits: result.credits,
          creditsAdded: result.creditsAdded,
          balance: await core.getBalance(userId),
          creditName: options.creditName,
        },
      };
    },

    /** GET /credits/balance */
    async balance(input: RouteInput): Promise<Reply<Balance>> {
      onlyQuery(input.query, []);
      const userId = await input.user();
      return { status: 200, body: { balance: await core.getBalance(userId), creditName: options.creditName } };
    },

    /** GET /credits/grants: the balance by grant and source, and what expires next. */
    async grants(input: RouteInput): Promise<Reply<BalanceDetails>> {
      onlyQuery(input.query, []);
      const userId = await input.user();
      return { status: 200, body: await core.getBalanceDetails(userId) };
    },

    /** GET /credits/transactions?limit&cursor */
    async transactions(input: RouteInput): Promise<Reply<TransactionPage>> {
      onlyQuery(input.query, ['limit', 'cursor']);
      const userId = await input.user();
      return { status: 200, body: await core.listTransactions(userId, parsePage(input.query.limit, input.query.cursor, 100)) };
    },

    /** POST /credits/subscribe { plan }: a Checkout Session in subscription mode; the adapter parsed the JSON body. */
    async subscribe(input: RouteInput): Promise<Reply<SubscriptionCheckoutCreated>> {
      const userId = await input.user();
      const subs = requireSubscriptions();
      const plan = subs.parseSubscribeBody(input.body);
      requireStripe();
      const key = parseIdempotencyKey(input.header('idempotency-key'));
      return { status: 201, body: await subs.subscribe(userId, plan, key) };
    },

    /** POST /credits/portal: the Stripe customer portal for the user's subscription. */
    async portal(input: RouteInput): Promise<Reply<BillingPortalSession>> {
      onlyQuery(input.query, []);
      const userId = await input.user();
      requireStripe();
      return { status: 200, body: await requireSubscriptions().portal(userId) };
    },

    /** GET /credits/plans (public) */
    async plans(input: RouteInput): Promise<Reply<PlanList>> {
      onlyQuery(input.query, []);
      return { status: 200, body: { creditName: options.creditName, plans: subscriptions ? await subscriptions.listPlans() : [] } };
    },

    /** GET /credits/plan: the signed-in user's subscription, or { plan: null }. */
    async plan(input: RouteInput): Promise<Reply<UserPlan>> {
      onlyQuery(input.query, []);
      const userId = await input.user();
      return { status: 200, body: subscriptions ? await subscriptions.getPlan(userId) : { plan: null } };
    },

    /** GET /credits/pricing (public) */
    pricing(): Reply<Pricing> {
      const p = options.pricing;
      return {
        status: 200,
        body: {
          creditName: options.creditName,
          currency: p.currency,
          creditPriceCents: p.creditPriceCents,
          minQuantity: Math.max(p.minQuantity, Math.ceil(p.minimumChargeCents / p.creditPriceCents)),
          maxQuantity: p.maxQuantity,
          bundles: [...p.bundles.values()].map((b) => ({ id: b.id, credits: b.credits, price: b.price, name: b.name ?? null })),
          costs: [...options.costs.values()].map(({ name, label, metered, amount, perModel }) =>
            metered ? { name, label, metered, reserve: amount, perModel: Object.fromEntries(perModel) } : { name, label, metered, credits: amount },
          ),
        },
      };
    },
  };
}

export type Routes = ReturnType<typeof createRoutes>;

/** Refuses query parameters a route does not read, such as `userId=` or `cursor[$gt]=`: nothing is silently ignored. */
function onlyQuery(query: Record<string, unknown>, allowed: string[]): void {
  for (const key of Object.keys(query)) {
    if (!allowed.includes(key)) {
      throw new InvalidRequestError(`Unknown query parameter "${key.slice(0, 40)}".${allowed.length ? ` This route reads ${allowed.join(' and ')}.` : ''}`);
    }
  }
}
