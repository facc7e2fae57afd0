/**
 * The wire contract: every JSON body credits.router() answers (and the checkout body it reads), declared
 * once. The routes check their answers against these types (`satisfies` in router.ts) and credit-kit/client
 * re-exports them, so the two sides cannot drift apart.
 *
 * Types only: the client imports this file with `import type`, and everything it imports is a type, so no
 * server code can reach the browser bundle through it.
 */
import type { CreditsErrorBody, CreditsErrorCode } from '../errors';
import type { Transaction, TransactionGrant, TransactionPage } from '../ledger/history';
import type { EntryKind, EntryRef, GrantSource, PurchaseStatus } from '../domain/types';

export type { CreditsErrorBody, CreditsErrorCode, EntryKind, EntryRef, GrantSource, Transaction, TransactionGrant, TransactionPage };

/** One grant with credits left, as GET /credits/grants and getBalanceDetails() list it. */
export interface CreditGrant {
  /** The grant's id: `grant:<idempotencyKey>` for grantCredits, `checkout:<session>` for a purchase, `base`. */
  id: string;
  source: GrantSource;
  /** Credits left in it. */
  remaining: number;
  /** 0-100, lower is spent first (`base` is spent after every grant). */
  priority: number;
  /** ISO time its unspent rest leaves the balance; null: never. A time in the past: expiring now. */
  expiresAt: string | null;
}

/** GET /credits/grants: the balance broken down by grant and source, and what expires next. */
export interface BalanceDetails {
  balance: number;
  creditName: string;
  /** Credits left per source (`purchase`, `subscription`, `promotion`, `admin`, `base`, the app's own). */
  bySource: Record<string, number>;
  /** The soonest expiry: how many credits leave the balance then, and when; null when none expire. */
  nextExpiry: { amount: number; expiresAt: string } | null;
  /** Credits spent beyond every grant (the balance is below zero by this, or below the grants' sum). */
  debt: number;
  /** The grants with credits left, in the order they are spent. */
  grants: CreditGrant[];
}

/** GET /credits/balance */
export interface Balance {
  balance: number;
  creditName: string;
}

/** One of the server's fixed bundles, in GET /credits/pricing. */
export interface PricingBundle {
  id: string;
  credits: number;
  /** Total price in the smallest currency unit (cents). */
  price: number;
  name: string | null;
}

/** Token prices of one model: whole credits for `per` input and output tokens. */
export interface PricingTokenPrice {
  input: number;
  output: number;
  per: number;
}

/** One of the server's named costs (createCredits' `costs`), in GET /credits/pricing. */
export type PricingCost =
  | { name: string; label: string; metered: false; credits: number }
  | { name: string; label: string; metered: true; reserve: number; perModel: Record<string, PricingTokenPrice> };

/** GET /credits/pricing */
export interface Pricing {
  creditName: string;
  /** ISO code, lower case (`usd`). */
  currency: string;
  creditPriceCents: number;
  minQuantity: number;
  maxQuantity: number;
  bundles: PricingBundle[];
  /** What the app's guarded actions cost, by name; empty when it names none. */
  costs: PricingCost[];
}

export type CheckoutUi = 'hosted' | 'embedded';

/** What to buy: a number of credits, or one of the server's bundles. */
export type CheckoutItem = { quantity: number; bundle?: undefined } | { bundle: string; quantity?: undefined };

/** POST /stripe/checkout/credits: what to buy, and which Checkout to create (default `hosted`). */
export type CheckoutRequestBody = CheckoutItem & { ui?: CheckoutUi };

/** 201 from POST /stripe/checkout/credits with `ui: "hosted"` (the default): send the browser to `url`. */
export interface HostedCheckoutSession {
  id: string;
  /** Stripe's page; always set by Stripe for a hosted session. */
  url: string | null;
  credits: number;
  /** What the session charges, in the smallest currency unit. */
  amount: number;
}

/** 201 from POST /stripe/checkout/credits with `ui: "embedded"`: hand `clientSecret` to Stripe.js. */
export interface EmbeddedCheckoutSession {
  id: string;
  clientSecret: string | null;
  credits: number;
  amount: number;
}

/** The 201 body of POST /stripe/checkout/credits for each `ui`. */
export type CheckoutSessionCreated<U extends CheckoutUi = CheckoutUi> = U extends 'embedded' ? EmbeddedCheckoutSession : HostedCheckoutSession;

/** Where a purchase stands; `ignored` when the session is not one of the kit's credit purchases. */
export type CheckoutSessionStatus = PurchaseStatus | 'ignored';

/** GET /stripe/checkout/session/:id (the success page): the purchase's status, credited on the way. */
export interface CheckoutSessionResult {
  id: string;
  status: CheckoutSessionStatus;
  /** Stripe's `payment_status` of the session (`paid`, `unpaid`, `no_payment_required`). */
  paymentStatus: string;
  credits: number;
  /** Credits this request added: 0 when they had been added before. */
  creditsAdded: number;
  balance: number;
  creditName: string;
}

/** Every failure: `{ error: { code, message, ...details } }` with the HTTP status of ERROR_CODES[code]. */
export type ErrorBody = CreditsErrorBody;

/**
 * The headers of every guarded answer (server/http/balance-headers.ts), which the React kit reads: what the
 * request was charged, and the balance right after it. A 402 carries them too (0 charged).
 */
export interface BalanceHeaderNames {
  charged: 'Credits-Charged';
  balance: 'Credits-Balance';
}

/** 402 from a guarded route (requireCredits): what it needs and what the balance was. */
export interface InsufficientCreditsBody {
  error: { code: 'insufficient_credits'; message: string; required: number; balance: number };
}

export type { Plan, PlanList, SubscribeRequestBody, SubscriptionCheckoutCreated, BillingPortalSession, UserPlan } from './subscription-wire';
