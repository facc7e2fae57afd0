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

/** A grant of a period, claimed in the record before it is made (so a retry makes that one). */
export interface SubscriptionGrant {
  id: string;
  plan: string;
  credits: number;
  /**
   * What the invoice paying for it covers on the period's ladder of credits: [0, plan] for the allowance,
   * [old plan, new plan] for an upgrade (absent on older records: the top `credits` of its plan's).
   */
  covers?: [number, number];
  /**
   * How much of its rest its expiry keeps: the part of `rolloverCovers` no other grant of the period covered
   * when it was claimed (absent on older records: its plan's max less those of the grants claimed before it).
   */
  rollover?: number;
  /**
   * What it pays for on the period's ladder of rollover maxes: [0, plan's max] for the allowance, [old plan's
   * max, new plan's max] for an upgrade (empty when the new plan keeps less). So the period keeps at most the
   * biggest max among the plans paid for in it, split the same whatever order its invoices came in when each
   * plan keeps at least as much as the one before.
   */
  rolloverCovers?: [number, number];
  /** The invoice that paid for it. */
  invoiceId: string;
  /** The payments of that invoice: a refund or dispute of one takes this grant back (absent on older records: any of the period's). */
  paymentIntentIds?: string[];
  /** Set once taken back. */
  revokedAt?: Date | null;
}

/** One billing period's allowance, as granted on its paid invoice. */
export interface SubscriptionPeriod {
  /** The period's start and end (Stripe's line item period), in seconds. */
  start: number;
  end: number;
  /** The grants claimed (then made) for this period: the allowance, and an upgrade's difference (one per plan). */
  grants: SubscriptionGrant[];
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
  /** The Checkout Session, once created (null while the request holding the user's slot creates it). */
  checkoutSessionId: string | null;
  /** The session's URL, given again to a second subscribe while the checkout is open. */
  checkoutUrl?: string | null;
  /** When the session stops accepting payment (seconds; the kit sets it): past it the user's slot is free. */
  checkoutExpiresAt?: number | null;
  /**
   * The user's subscription slot: the n-th subscription the user started through the kit. The record's id
   * is derived from the user and this number, so two subscribe requests at the same moment insert the same
   * id and only one wins (a unique insert, on any MongoDB-compatible server). Absent on older records.
   */
  slot?: number;
  /** The Stripe mode, learned from the session (null until the session is created). */
  livemode: boolean | null;
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

/**
 * Whether the record holds its user's subscription slot at `nowSeconds`: a live subscription, or a checkout
 * the kit opened (slot records only) that has not expired. A cancelled, ended or expired one frees it.
 */
export function holdsSlot(s: SubscriptionRecord, nowSeconds: number): 'live' | 'checkout' | null {
  if (s.endedAt !== null) return null;
  if (LIVE_STATUSES.has(s.status)) return 'live';
  if (s.status === 'checkout' && s.slot !== undefined && !(s.checkoutExpiresAt != null && s.checkoutExpiresAt <= nowSeconds)) return 'checkout';
  return null;
}

export function newSubscription(
  r: { id: string; userId: string; plan: string; price: string; checkoutSessionId: string | null; livemode: boolean | null },
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
