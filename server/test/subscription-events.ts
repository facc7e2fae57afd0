/**
 * Subscription events as Stripe sends them (API 2026-10-28 shapes: an invoice names its subscription under
 * `parent.subscription_details`, its lines' prices under `pricing.price_details`, its payments under
 * `payments`), signed with stripe-node's generateTestHeaderString. `created` is the event's own time, so
 * that tests can deliver an older state after a newer one.
 */
import { randomUUID } from 'node:crypto';
import type Stripe from 'stripe';
import { signPayload } from '../../tools/stripe-events';
import { post, WEBHOOK_SECRET } from './helpers';

const hex = () => randomUUID().replace(/-/g, '').slice(0, 24);
export const DAY = 86_400;
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The kit's subscription as its checkout created it: ids the events about it carry. */
export interface Sub {
  ref: string;
  userId: string;
  plan: string;
  sessionId: string;
  subscriptionId: string;
  customerId: string;
}

export function newSub(ref: string, userId: string, plan: string, sessionId: string): Sub {
  return { ref, userId, plan, sessionId, subscriptionId: `sub_${hex()}`, customerId: `cus_${hex()}` };
}

const metadataOf = (s: Sub) => ({ credit_kit_user_id: s.userId, credit_kit_plan: s.plan, credit_kit_subscription: s.ref });

export function delivery(stripe: Stripe, type: string, object: unknown, opts: { created?: number; id?: string } = {}) {
  const payload = JSON.stringify({
    id: opts.id ?? `evt_${hex()}`,
    object: 'event',
    api_version: '2026-10-28',
    created: opts.created ?? nowSeconds(),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  });
  return signPayload(stripe, payload, { secret: WEBHOOK_SECRET });
}

export function sessionCompleted(s: Sub): Record<string, unknown> {
  return {
    id: s.sessionId,
    object: 'checkout.session',
    mode: 'subscription',
    livemode: false,
    status: 'complete',
    payment_status: 'paid',
    amount_total: 1900,
    currency: 'usd',
    client_reference_id: s.userId,
    customer: s.customerId,
    subscription: s.subscriptionId,
    payment_intent: null,
    metadata: metadataOf(s),
  };
}

export interface InvoiceLine {
  price: string;
  amount: number;
  start: number;
  end: number;
  /** A proration (an invoice item a plan change left for the next invoice), as its line's `parent` says. */
  proration?: boolean;
}

export function invoice(
  s: Sub,
  lines: InvoiceLine[],
  opts: { id?: string; billingReason?: string; paymentIntent?: string | null; metadata?: Record<string, string> | null } = {},
): Record<string, unknown> {
  const id = opts.id ?? `in_${hex()}`;
  const paid = lines.reduce((sum, l) => sum + Math.max(0, l.amount), 0);
  const pi = opts.paymentIntent === undefined ? `pi_${hex()}` : opts.paymentIntent;
  return {
    id,
    object: 'invoice',
    livemode: false,
    status: 'paid',
    customer: s.customerId,
    amount_paid: paid,
    currency: 'usd',
    billing_reason: opts.billingReason ?? 'subscription_cycle',
    parent: {
      type: 'subscription_details',
      quote_details: null,
      subscription_details: { subscription: s.subscriptionId, metadata: opts.metadata === undefined ? metadataOf(s) : opts.metadata },
    },
    lines: {
      object: 'list',
      has_more: false,
      url: `/v1/invoices/${id}/lines`,
      data: lines.map((l) => ({
        id: `il_${hex()}`,
        object: 'line_item',
        amount: l.amount,
        currency: 'usd',
        livemode: false,
        period: { start: l.start, end: l.end },
        pricing: { type: 'price_details', price_details: { price: l.price, product: 'prod_1' }, unit_amount_decimal: String(Math.abs(l.amount)) },
        subscription: s.subscriptionId,
        ...(l.proration === undefined
          ? {}
          : {
              parent: l.proration
                ? { type: 'invoice_item_details', invoice_item_details: { invoice_item: `ii_${hex()}`, proration: true, proration_details: null, subscription: s.subscriptionId }, subscription_item_details: null }
                : {
                    type: 'subscription_item_details',
                    invoice_item_details: null,
                    subscription_item_details: { invoice_item: null, proration: false, proration_details: null, subscription: s.subscriptionId, subscription_item: `si_${hex()}` },
                  },
            }),
      })),
    },
    ...(pi
      ? {
          payments: {
            object: 'list',
            has_more: false,
            url: '/v1/invoice_payments',
            data: [{ id: `inpay_${hex()}`, object: 'invoice_payment', invoice: id, is_default: true, status: 'paid', amount_paid: paid, payment: { type: 'payment_intent', payment_intent: pi } }],
          },
        }
      : {}),
  };
}

/** The payment intent an invoice built above was paid with. */
export function paymentIntentOf(inv: Record<string, unknown>): string {
  return (inv.payments as { data: Array<{ payment: { payment_intent: string } }> }).data[0]!.payment.payment_intent;
}

export function subscription(
  s: Sub,
  state: { price: string; status?: string; start: number; end: number; cancelAtPeriodEnd?: boolean; endedAt?: number | null },
): Record<string, unknown> {
  return {
    id: s.subscriptionId,
    object: 'subscription',
    livemode: false,
    customer: s.customerId,
    status: state.status ?? 'active',
    cancel_at_period_end: state.cancelAtPeriodEnd ?? false,
    canceled_at: state.endedAt ?? null,
    ended_at: state.endedAt ?? null,
    metadata: metadataOf(s),
    items: {
      object: 'list',
      has_more: false,
      data: [{ id: `si_${hex()}`, object: 'subscription_item', price: { id: state.price, object: 'price' }, current_period_start: state.start, current_period_end: state.end }],
    },
  };
}

export function chargeRefunded(pi: string, amountRefunded: number): Record<string, unknown> {
  return { id: `ch_${hex()}`, object: 'charge', payment_intent: pi, amount: amountRefunded, amount_refunded: amountRefunded, refunded: true };
}

export function dispute(pi: string, amount: number, status = 'needs_response'): Record<string, unknown> {
  return { id: `dp_${hex()}`, object: 'dispute', payment_intent: pi, amount, status, charge: `ch_${hex()}` };
}

/** Starts a subscription checkout for `plan` through the kit's route under `url`, which must answer 201; the session's id. */
export async function subscribeSession(url: string, userId: string, plan: string): Promise<string> {
  const res = await post(`${url}/api/credits/subscribe`, userId, { plan });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}
