/**
 * The webhook, framework-neutral: verify a delivery's signature over its raw bytes, then dispatch the event
 * to the purchase logic, answering with a typed outcome. The HTTP glue (raw-body capture, the answer, the
 * onWebhook report) lives with the router.
 */
import type Stripe from 'stripe';
import { SignatureError } from '../errors';
import type { ResolvedOptions } from '../options';
import type { FulfillmentResult, FulfillmentStatus, PaymentEventResult, Purchases } from './purchases';
import { SUBSCRIPTION_METADATA, type SubscriptionEventResult, type Subscriptions } from './subscriptions';
import type { StripeFact } from './facts';
import type { AutoRecharge, RechargeEventResult } from './recharge';

/** Verifies a delivery: the Stripe-Signature over exactly these bytes, with the endpoint's secret. */
export function verifyEvent(
  stripe: Stripe,
  raw: Buffer,
  signature: string | undefined,
  options: Pick<ResolvedOptions, 'webhookSecret' | 'webhookToleranceSeconds'>,
): Stripe.Event {
  if (!signature) throw new SignatureError('Missing Stripe-Signature header.');
  try {
    return stripe.webhooks.constructEvent(raw, signature, options.webhookSecret!, options.webhookToleranceSeconds);
  } catch (err) {
    throw new SignatureError('The Stripe-Signature does not match this body and secret, or is too old.', err);
  }
}

/** What the kit did with a verified event, as the webhook answers it and onWebhook reports it. */
export type WebhookOutcome =
  | { status: FulfillmentStatus; creditsAdded: number; reason?: string }
  | { clawedBack: number; restored: number; reason?: string }
  | { subscription: string | null; creditsGranted: number; revoked: number; ignored?: true; reason?: string }
  | { ignored: true; reason: string }
  | { autoRecharge: RechargeEventResult; reason?: string };

/**
 * Dispatches a verified event. Subscription-mode sessions, paid invoices and subscription changes go to the
 * subscriptions (stripe/subscriptions.ts); refund, dispute and charge events about a payment that paid a
 * subscription period take it back there, and otherwise become facts merged into the purchase (in any
 * order); anything not listed is acknowledged and ignored, with the reason.
 */
export async function handleEvent(purchases: Purchases, event: Stripe.Event, subscriptions?: Subscriptions, recharge?: AutoRecharge): Promise<WebhookOutcome> {
  const asOf = event.created;
  const payment = (r: PaymentEventResult): WebhookOutcome => ({
    clawedBack: r.clawedBack,
    restored: r.restored,
    ...(r.reason ? { reason: r.reason } : {}),
  });
  const subscription = (r: SubscriptionEventResult): WebhookOutcome => r;
  // A payment that paid a subscription period is the subscription's; any other goes to the purchases, which
  // keep it when nothing is linked to the payment yet. Kept, the subscriptions are asked again: an invoice that
  // linked the payment before the fact was kept would not have read it (one that links it later does).
  const paymentFact = async (pi: string | { id: string } | null | undefined, fact: StripeFact): Promise<WebhookOutcome> => {
    const linked = subscriptions ? await subscriptions.paymentFact(pi, fact) : null;
    if (linked) return subscription(linked);
    const r = await purchases.paymentFact(pi, fact);
    const late = subscriptions && r.sessionId === null ? await subscriptions.paymentFact(pi, fact) : null;
    return late ? subscription(late) : payment(r);
  };
  if (subscriptions) {
    switch (event.type) {
      case 'checkout.session.completed':
      case 'checkout.session.expired':
        // A subscription checkout the kit started carries its id; any other session is the purchases' to
        // judge (and ignore, with the reason, when it is not one the app created).
        if (event.data.object.mode === 'subscription' && event.data.object.metadata?.[SUBSCRIPTION_METADATA.ref]) {
          return subscription(await subscriptions.sessionEvent(event.data.object));
        }
        break;
      case 'invoice.paid':
        return subscription(await subscriptions.invoicePaid(event.data.object));
      case 'customer.subscription.created':
      case 'customer.subscription.updated':
      case 'customer.subscription.deleted':
        return subscription(await subscriptions.subscriptionEvent(event.data.object, asOf));
    }
  }
  const checkout = (r: FulfillmentResult): WebhookOutcome => ({
    status: r.status,
    creditsAdded: r.creditsAdded,
    ...(r.reason ? { reason: r.reason } : {}),
  });
  const recharged = (r: RechargeEventResult): WebhookOutcome => ({ autoRecharge: r, ...(r.reason ? { reason: r.reason } : {}) });
  switch (event.type) {
    case 'payment_intent.succeeded':
    case 'payment_intent.payment_failed':
    case 'payment_intent.requires_action': {
      // Payments the kit started off-session (auto-recharge); Checkout's own are credited by their session.
      const r = recharge ? await recharge.paymentIntentEvent(event.type, event.data.object) : null;
      return r ? recharged(r) : { ignored: true, reason: 'not an auto-recharge payment of this app' };
    }
    case 'checkout.session.completed':
      if (event.data.object.mode === 'setup') {
        const r = recharge ? await recharge.setupCompleted(event.data.object) : null;
        if (r) return recharged(r);
      }
      return checkout(await purchases.fulfill(event.data.object));
    case 'checkout.session.async_payment_succeeded':
    case 'checkout.session.expired':
      return checkout(await purchases.fulfill(event.data.object));
    case 'checkout.session.async_payment_failed':
      return checkout(await purchases.paymentFailed(event.data.object));
    case 'charge.refunded':
    case 'charge.updated': {
      const charge = event.data.object;
      return paymentFact(charge.payment_intent, { type: 'charge', amountRefunded: charge.amount_refunded, asOf });
    }
    case 'charge.refund.updated':
    case 'refund.created':
    case 'refund.updated':
    case 'refund.failed': {
      const refund = event.data.object;
      return paymentFact(refund.payment_intent, {
        type: 'refund',
        id: refund.id,
        amount: refund.amount,
        status: refund.status ?? 'pending',
        created: refund.created,
        asOf,
      });
    }
    case 'charge.dispute.created':
    case 'charge.dispute.updated':
    case 'charge.dispute.closed':
    case 'charge.dispute.funds_withdrawn':
    case 'charge.dispute.funds_reinstated': {
      const dispute = event.data.object;
      return paymentFact(dispute.payment_intent, { type: 'dispute', id: dispute.id, amount: dispute.amount, status: dispute.status, asOf });
    }
    default:
      return { ignored: true, reason: `credit-kit does not act on ${event.type} events` };
  }
}
