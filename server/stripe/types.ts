/**
 * The parts of Stripe that credit-kit/server's public API names, as structural types.
 *
 * The package's type declarations must compile in an app that does not install `stripe` (an app that only
 * guards routes), so the public API cannot mention stripe-node's own types. These interfaces describe the
 * few members the kit uses; stripe-node's client, events and sessions fit them (the repository's type-check
 * proves it: the tests pass real `Stripe` clients and events through them). Inside, the kit keeps using
 * stripe-node's full types.
 */

/** A Checkout Session as the kit reads it: `Stripe.Checkout.Session` fits. */
export interface StripeCheckoutSessionLike {
  id: string;
  mode: string | null;
  status: string | null;
  payment_status: string;
  amount_total: number | null;
  currency: string | null;
  livemode: boolean;
  metadata: Record<string, string> | null;
  payment_intent: string | { id: string } | null;
}

/** A verified Stripe event, as `onWebhook` reports it: `Stripe.Event` fits (cast to it to narrow `data`). */
export interface StripeEventLike {
  id: string;
  type: string;
  created: number;
  livemode: boolean;
  data: { object: unknown };
}

/**
 * What the kit needs of the Stripe client passed as the `stripe` option: a stripe-node client,
 * `new Stripe(process.env.STRIPE_SECRET_KEY)`, fits.
 */
export interface StripeClientLike {
  checkout: {
    sessions: {
      create(params: object, options?: { idempotencyKey?: string }): Promise<StripeCheckoutSessionLike>;
      retrieve(id: string): Promise<StripeCheckoutSessionLike>;
    };
  };
  webhooks: {
    constructEvent(payload: string | Uint8Array, header: string, secret: string, tolerance?: number): StripeEventLike;
  };
}
