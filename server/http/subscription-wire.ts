/**
 * The JSON bodies of the subscription routes (README "Subscriptions"). Types only, re-exported by wire.ts
 * for credit-kit/client.
 */

/** One plan, as GET /credits/plans lists it. */
export interface Plan {
  id: string;
  label: string;
  /** Credits every paid billing period grants. */
  credits: number;
  /** The Stripe Price id. */
  price: string;
  /** Up to this many unspent credits are kept one more period; null: none. */
  rollover: { max: number } | null;
  /** From Stripe's Price when it could be read (cached): smallest currency unit, lower-case currency, interval. */
  amount: number | null;
  currency: string | null;
  interval: { unit: string; count: number } | null;
}

/** GET /credits/plans */
export interface PlanList {
  creditName: string;
  plans: Plan[];
}

/** POST /credits/subscribe { plan } */
export interface SubscribeRequestBody {
  plan: string;
}

/** POST /credits/subscribe: the hosted Checkout page to send the user to. */
export interface SubscriptionCheckoutCreated {
  id: string;
  url: string | null;
  plan: string;
}

/** POST /credits/portal: the Stripe customer portal page for this user. */
export interface BillingPortalSession {
  url: string;
}

/** GET /credits/plan: the signed-in user's subscription, or `{ plan: null }`. */
export type UserPlan =
  | {
      plan: string;
      label: string;
      credits: number;
      /** Stripe's status: active, trialing, past_due, incomplete, unpaid, paused (canceled ones are not shown). */
      status: string;
      /** ISO times of the current billing period; null until Stripe has said. */
      currentPeriod: { start: string; end: string } | null;
      /** Cancelled, running to the end of the current period. */
      cancelAtPeriodEnd: boolean;
    }
  | { plan: null };
