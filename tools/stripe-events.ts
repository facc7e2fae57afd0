/**
 * Stripe events as the tests and benchmarks deliver them: the Checkout Session the kit creates, wrapped in
 * an event and signed with stripe-node's own generateTestHeaderString, exactly as Stripe signs deliveries.
 */
import { randomUUID } from 'node:crypto';
import type Stripe from 'stripe';
import { newPurchase } from '../server/domain/purchase-record';
import type { Purchase } from '../server/domain/types';

const hex = () => randomUUID().replace(/-/g, '');

/**
 * A paid Checkout Session as the kit creates it (metadata with the user and credits) and Stripe sends it back.
 * The kit credits only sessions it recorded when creating them: pass the id its checkout route returned.
 */
export function checkoutSession(userId: string, credits: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: `cs_test_${hex()}`,
    object: 'checkout.session',
    mode: 'payment',
    livemode: false,
    status: 'complete',
    payment_status: 'paid',
    amount_total: credits * 10,
    currency: 'usd',
    client_reference_id: userId,
    payment_intent: `pi_${hex()}`,
    metadata: { credit_kit_user_id: userId, credit_kit_credits: String(credits) },
    ...overrides,
  };
}

/** The JSON body of an event delivery. */
export function eventPayload(event: { id?: string; type: string; object: unknown }): string {
  return JSON.stringify({
    id: event.id ?? `evt_${hex()}`,
    object: 'event',
    api_version: '2026-10-28',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: event.type,
    data: { object: event.object },
  });
}

/** Signs a body as Stripe would: the headers of a delivery to the webhook route. */
export function signPayload(stripe: Stripe, payload: string, opts: { secret: string; timestamp?: number }): { body: string; headers: Record<string, string> } {
  const signature = stripe.webhooks.generateTestHeaderString({
    payload,
    secret: opts.secret,
    ...(opts.timestamp !== undefined ? { timestamp: opts.timestamp } : {}),
  });
  return { body: payload, headers: { 'content-type': 'application/json', 'stripe-signature': signature } };
}

/**
 * The record the kit's checkout route writes when it creates a session, for tests that drive fulfilment
 * without that route (a worker process with no Stripe client): insert it with `credits.store.insertPurchase`.
 */
export function purchaseRecordOf(session: { id: string; amount_total: number; currency: string; metadata: Record<string, string> }): Purchase {
  return newPurchase({
    sessionId: session.id,
    userId: session.metadata.credit_kit_user_id!,
    credits: Number(session.metadata.credit_kit_credits),
    amountTotal: session.amount_total,
    currency: session.currency,
    livemode: false,
  });
}
