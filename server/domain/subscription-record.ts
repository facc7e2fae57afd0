/**
 * A subscription as the kit records it. The record is written when the kit creates the subscription's
 * Checkout Session, under an id of the kit's own (`ref`) that the session's and the subscription's metadata
 * carry, so an event about the subscription finds its record (and so its user) whether or not the session's
 * completion has been delivered yet. Only subscriptions with such a record are ever granted anything.
 */

/** A Stripe subscription status, as Stripe names it. */
export type SubscriptionStatus =
  | 'checkout'
  | 'incomplete'
  | 'incomplete_expired'
  | 'trialing'
  | 'active'
  | 'past_due'
  | 'canceled'
  | 'unpaid'
  | 'paused'
  | (string & {});

/** One billing period's allowance, as granted on its paid invoice. */
export interface SubscriptionPeriod {
  /** The period's start and end (Stripe's line item period), in seconds. */
  start: number;
  end: number;
  /** The grants made for this period: the allowance, and an upgrade's difference (one per plan). */
  grants: Array<{ id: string; plan: string; credits: number; invoiceId: string }>;
  /** Payment intents that paid this period's invoices: a refund or dispute of one takes the period back. */
  paymentIntentIds: string[];
  /** Set once the period's unspent allowance was taken back (refund or dispute). */
  revokedAt: Date | null;
}

export interface SubscriptionRecord {
  /** The kit's id for this subscription (`sub_ck_…`), in the session's and subscription's metadata. */
  id: string;
  userId: string;
  /** The plan subscribed to at checkout, then the plan of the newest subscription state. */
  plan: string;
  /** The Stripe Price of the plan subscribed to at checkout. */
  price: string;
  checkoutSessionId: string;
  livemode: boolean;
  stripeSubscriptionId: string | null;
  customerId: string | null;
  status: SubscriptionStatus;
  currentPeriod: { start: number; end: number } | null;
  cancelAtPeriodEnd: boolean;
  /** When the subscription ended (Stripe's `ended_at`, seconds); no period starting at or after it is granted. */
  endedAt: number | null;
  /** `event.created` of the newest subscription state merged (0: none yet); an older one changes nothing. */
  stateAsOf: number;
  periods: SubscriptionPeriod[];
  createdAt: Date;
  updatedAt: Date;
  /** Compare-and-set version. */
  version: number;
}

/** Statuses during which a user has a subscription (and may not start another). */
export const LIVE_STATUSES: ReadonlySet<string> = new Set(['incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused']);

export function newSubscription(
  r: { id: string; userId: string; plan: string; price: string; checkoutSessionId: string; livemode: boolean },
  now = new Date(),
): SubscriptionRecord {
  return {
    ...r,
    stripeSubscriptionId: null,
    customerId: null,
    status: 'checkout',
    currentPeriod: null,
    cancelAtPeriodEnd: false,
    endedAt: null,
    stateAsOf: 0,
    periods: [],
    createdAt: now,
    updatedAt: now,
    version: 0,
  };
}
