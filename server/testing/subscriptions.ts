/**
 * credit-kit/testing for subscriptions: the events Stripe sends about a subscription the app started
 * through the kit's `POST /credits/subscribe`, built from what the kit recorded (user, plan, price), in the
 * shapes of the kit's API version (an invoice's subscription under `parent.subscription_details`, its
 * payment under `payments`). Sign them with `signEvent`.
 *
 *   await fetch(`${url}/api/credits/subscribe`, { method: 'POST', ..., body: JSON.stringify({ plan: 'basic' }) });
 *   const paid = await subscriptionInvoicePaid(credits, 'u1');
 *   await deliver(signEvent(paid, secret));                                  // the period's credits
 *   await deliver(signEvent(invoiceRefunded(paid), secret));                  // taken back
 */
import { stripeEvent, type TestEvent } from './index';
import type { Credits } from '../index';

type KitStore = Pick<Credits, 'store'>;

const DAY_MS = 86_400_000;
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

/** The user's newest subscription checkout, and the Stripe ids the helpers give it. */
async function subscriptionOf(credits: KitStore, userId: string) {
  const [record] = await credits.store.findSubscriptions({ userId }, 1);
  if (!record) {
    throw new Error(`credit-kit/testing: ${userId} has no subscription started through this app's POST /credits/subscribe; the kit grants only subscriptions it created.`);
  }
  const tail = record.id.slice('sub_ck_'.length, 'sub_ck_'.length + 24);
  return {
    record,
    subscription: record.stripeSubscriptionId ?? `sub_test_${tail}`,
    customer: record.customerId ?? `cus_test_${tail}`,
    metadata: { credit_kit_user_id: record.userId, credit_kit_plan: record.plan, credit_kit_subscription: record.id },
  };
}

/** `checkout.session.completed` for the user's subscription checkout: links the subscription and customer. */
export async function subscriptionCheckoutCompleted(credits: KitStore, userId: string): Promise<TestEvent> {
  const s = await subscriptionOf(credits, userId);
  return stripeEvent('checkout.session.completed', {
    id: s.record.checkoutSessionId,
    object: 'checkout.session',
    mode: 'subscription',
    livemode: s.record.livemode === true,
    status: 'complete',
    payment_status: 'paid',
    client_reference_id: userId,
    customer: s.customer,
    subscription: s.subscription,
    payment_intent: null,
    metadata: s.metadata,
  });
}

export interface InvoicePaidOptions {
  /** The billing period. Default: from a minute ago, for 30 days. */
  periodStart?: Date;
  periodEnd?: Date;
  /** `subscription_create` (default for the first), `subscription_cycle` (a renewal), ... */
  billingReason?: string;
  /** Cents paid. Default 1000; 0 pays with no payment (a trial, a coupon). */
  amount?: number;
}

/**
 * `invoice.paid` for a period of the user's subscription, on its plan's price. The payment intent that paid
 * it is `pi_test_<invoice id>`; `invoiceRefunded` and `invoiceDisputed` refer to it.
 */
export async function subscriptionInvoicePaid(credits: KitStore, userId: string, options: InvoicePaidOptions = {}): Promise<TestEvent> {
  const s = await subscriptionOf(credits, userId);
  const start = options.periodStart ?? new Date(Date.now() - 60_000);
  const end = options.periodEnd ?? new Date(start.getTime() + 30 * DAY_MS);
  const amount = options.amount ?? 1000;
  const id = `in_test_${Math.random().toString(36).slice(2, 14)}`;
  return stripeEvent('invoice.paid', {
    id,
    object: 'invoice',
    livemode: s.record.livemode === true,
    status: 'paid',
    customer: s.customer,
    currency: 'usd',
    amount_paid: amount,
    billing_reason: options.billingReason ?? (s.record.periods.length === 0 ? 'subscription_create' : 'subscription_cycle'),
    parent: { type: 'subscription_details', quote_details: null, subscription_details: { subscription: s.subscription, metadata: s.metadata } },
    lines: {
      object: 'list',
      has_more: false,
      data: [{ id: `il_${id}`, object: 'line_item', amount, currency: 'usd', period: { start: seconds(start), end: seconds(end) }, pricing: { type: 'price_details', price_details: { price: s.record.price, product: 'prod_test' } } }],
    },
    payments: {
      object: 'list',
      has_more: false,
      data: amount > 0 ? [{ id: `inpay_${id}`, object: 'invoice_payment', invoice: id, is_default: true, status: 'paid', amount_paid: amount, payment: { type: 'payment_intent', payment_intent: `pi_test_${id}` } }] : [],
    },
  });
}

/** `customer.subscription.updated` (or `.deleted` with `status: 'canceled'`) for the user's subscription. */
export async function subscriptionUpdated(
  credits: KitStore,
  userId: string,
  state: { periodStart: Date; periodEnd: Date; status?: string; cancelAtPeriodEnd?: boolean; endedAt?: Date; created?: Date },
): Promise<TestEvent> {
  const s = await subscriptionOf(credits, userId);
  const ended = state.endedAt ? seconds(state.endedAt) : null;
  return stripeEvent(
    state.status === 'canceled' ? 'customer.subscription.deleted' : 'customer.subscription.updated',
    {
      id: s.subscription,
      object: 'subscription',
      livemode: s.record.livemode === true,
      customer: s.customer,
      status: state.status ?? 'active',
      cancel_at_period_end: state.cancelAtPeriodEnd ?? false,
      canceled_at: ended,
      ended_at: ended,
      metadata: s.metadata,
      items: { object: 'list', has_more: false, data: [{ id: `si_${s.subscription}`, object: 'subscription_item', price: { id: s.record.price, object: 'price' }, current_period_start: seconds(state.periodStart), current_period_end: seconds(state.periodEnd) }] },
    },
    state.created ? { created: state.created } : {},
  );
}

/** The payment intent of an invoice built by `subscriptionInvoicePaid`. */
function paymentOf(invoicePaid: TestEvent): { pi: string; amount: number } {
  const invoice = invoicePaid.data.object as { id: string; amount_paid: number };
  return { pi: `pi_test_${invoice.id}`, amount: invoice.amount_paid };
}

/** `charge.refunded` for the payment of an invoice from `subscriptionInvoicePaid`: the period is taken back. */
export function invoiceRefunded(invoicePaid: TestEvent, amountRefunded?: number): TestEvent {
  const { pi, amount } = paymentOf(invoicePaid);
  return stripeEvent('charge.refunded', { id: `ch_${pi}`, object: 'charge', amount, amount_refunded: amountRefunded ?? amount, currency: 'usd', livemode: invoicePaid.livemode, payment_intent: pi });
}

/** `charge.dispute.created` for the payment of an invoice from `subscriptionInvoicePaid`. */
export function invoiceDisputed(invoicePaid: TestEvent, status = 'needs_response'): TestEvent {
  const { pi, amount } = paymentOf(invoicePaid);
  return stripeEvent('charge.dispute.created', { id: `dp_${pi}`, object: 'dispute', amount, currency: 'usd', livemode: invoicePaid.livemode, status, payment_intent: pi });
}

