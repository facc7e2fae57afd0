/**
 * credit-kit/testing: build and sign the Stripe events credit-kit handles, for an app's own tests.
 *
 * The kit credits only Checkout Sessions it created itself (it records each one when its checkout route
 * creates it), so a test first creates a session through the app, then delivers the events Stripe would
 * send about it:
 *
 *   const { id } = await (await fetch(`${url}/api/stripe/checkout/credits`, { method: 'POST', ... })).json();
 *   const delivery = signEvent(await checkoutCompleted(credits, id), process.env.STRIPE_WEBHOOK_SECRET!);
 *   await fetch(`${url}/api/stripe/webhook`, { method: 'POST', headers: delivery.headers, body: delivery.body });
 *
 * Events are signed the way Stripe signs deliveries (an HMAC-SHA256 `Stripe-Signature` header), so they go
 * through the kit's real verification. Nothing here calls Stripe; it needs no `stripe` package. The sessions
 * are built from what the kit recorded, so these test the kit's handling of Stripe's events, not what
 * Stripe itself computes (amounts, taxes, payment methods).
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Credits } from '../index';

/** What the helpers read of a kit: its store. `createCredits` and `createFetchCredits` (credit-kit/fetch) both have it. */
type KitStore = Pick<Credits, 'store'>;

/** A Stripe event as delivered: `data.object` is the Checkout Session, charge or dispute it is about. */
export interface TestEvent {
  id: string;
  object: 'event';
  type: string;
  created: number;
  livemode: boolean;
  api_version: string;
  pending_webhooks: number;
  request: { id: null; idempotency_key: null };
  data: { object: Record<string, unknown> };
}

/** A signed delivery: POST `body` with `headers` to the kit's webhook route. */
export interface SignedDelivery {
  body: string;
  headers: { 'content-type': 'application/json'; 'stripe-signature': string };
}

const API_VERSION = '2026-10-28';

/** An event of `type` about `object`, as Stripe would send it. */
export function stripeEvent(type: string, object: Record<string, unknown>, options: { id?: string; created?: Date } = {}): TestEvent {
  return {
    id: options.id ?? `evt_test_${hex()}`,
    object: 'event',
    type,
    created: Math.floor((options.created ?? new Date()).getTime() / 1000),
    livemode: object.livemode === true,
    api_version: API_VERSION,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object },
  };
}

/**
 * Signs an event with the webhook endpoint's secret (`whsec_…`, the kit's `webhookSecret`) as Stripe does:
 * `Stripe-Signature: t=<seconds>,v1=<HMAC-SHA256 of "<t>.<body>">`. `timestamp` (seconds) defaults to now;
 * one older than the kit's `webhookToleranceSeconds` is refused, as a replayed delivery would be.
 */
export function signEvent(event: TestEvent, secret: string, options: { timestamp?: number } = {}): SignedDelivery {
  if (typeof secret !== 'string' || secret === '') throw new TypeError('signEvent: pass the webhook secret the kit was created with.');
  const body = JSON.stringify(event);
  const t = options.timestamp ?? Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`, 'utf8').digest('hex');
  return { body, headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${v1}` } };
}

/**
 * `checkout.session.completed` (paid) for a session the app created through the kit's checkout route: the
 * session as Stripe sends it back, built from what the kit recorded (user, credits, amount, currency). Its
 * payment intent id is derived from the session id, so the refund and dispute events below refer to it.
 */
export async function checkoutCompleted(credits: KitStore, sessionId: string, options: { paid?: boolean } = {}): Promise<TestEvent> {
  const session = await sessionObject(credits, sessionId);
  // `paid: false`: a delayed payment method (a bank debit); Stripe completes the session unpaid and says
  // later, with checkout.session.async_payment_succeeded or _failed.
  return stripeEvent('checkout.session.completed', options.paid === false ? { ...session, payment_status: 'unpaid' } : session);
}

/** `checkout.session.async_payment_succeeded`: a delayed payment came through (after an unpaid completion). */
export async function asyncPaymentSucceeded(credits: KitStore, sessionId: string): Promise<TestEvent> {
  return stripeEvent('checkout.session.async_payment_succeeded', await sessionObject(credits, sessionId));
}

/** `checkout.session.async_payment_failed`: a delayed payment failed; nothing is credited. */
export async function asyncPaymentFailed(credits: KitStore, sessionId: string): Promise<TestEvent> {
  return stripeEvent('checkout.session.async_payment_failed', { ...(await sessionObject(credits, sessionId)), payment_status: 'unpaid' });
}

/** `checkout.session.expired`: the person never paid; nothing is credited. */
export async function checkoutExpired(credits: KitStore, sessionId: string): Promise<TestEvent> {
  const { payment_intent: _unused, ...session } = await sessionObject(credits, sessionId);
  return stripeEvent('checkout.session.expired', { ...session, status: 'expired', payment_status: 'unpaid', payment_intent: null });
}

/** `charge.refunded`: the purchase's charge, refunded `amountRefunded` cents in all (refunds add up). */
export async function chargeRefunded(credits: KitStore, sessionId: string, amountRefunded: number): Promise<TestEvent> {
  const s = await sessionObject(credits, sessionId);
  return stripeEvent('charge.refunded', {
    id: `ch_test_${tail(sessionId)}`,
    object: 'charge',
    amount: s.amount_total,
    amount_refunded: amountRefunded,
    currency: s.currency,
    livemode: false,
    payment_intent: s.payment_intent,
  });
}

/**
 * `charge.dispute.created` or `charge.dispute.closed` for the purchase's charge, with Stripe's dispute
 * `status`: `needs_response` when opened, `lost` or `won` when closed (`warning_*` for an inquiry).
 */
export async function chargeDispute(
  credits: KitStore,
  sessionId: string,
  type: 'charge.dispute.created' | 'charge.dispute.closed',
  status: string,
): Promise<TestEvent> {
  const s = await sessionObject(credits, sessionId);
  return stripeEvent(type, {
    id: `dp_test_${tail(sessionId)}`,
    object: 'dispute',
    amount: s.amount_total,
    currency: s.currency,
    livemode: false,
    status,
    payment_intent: s.payment_intent,
  });
}

async function sessionObject(credits: KitStore, sessionId: string): Promise<Record<string, unknown> & { amount_total: number; currency: string; payment_intent: string }> {
  const p = await credits.store.getPurchase(sessionId);
  if (!p) {
    throw new Error(
      `credit-kit/testing: no Checkout Session ${sessionId} was created through this app's checkout route; the kit credits only sessions it created.`,
    );
  }
  return {
    id: p.id,
    object: 'checkout.session',
    mode: 'payment',
    livemode: p.livemode,
    status: 'complete',
    payment_status: 'paid',
    amount_total: p.amountTotal,
    currency: p.currency,
    client_reference_id: p.userId,
    payment_intent: p.paymentIntentId ?? `pi_test_${tail(p.id)}`,
    metadata: { credit_kit_user_id: p.userId, credit_kit_credits: String(p.credits) },
  };
}

const hex = () => randomUUID().replace(/-/g, '');
const tail = (id: string) => id.replace(/[^A-Za-z0-9]/g, '').slice(-24);
export * from './subscriptions';
