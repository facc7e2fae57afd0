/**
 * createCredits' options: declared, defaulted and validated once, at start-up. Nothing here runs per request.
 */
import type { Request } from 'express';
import type { Connection } from 'mongoose';
import type Stripe from 'stripe';
import { CreditsConfigError } from './errors';
import type { LedgerHooks } from './ledger';
import { faultsOf, type FaultInjector } from './ledger/faults';
import type { CreditStore } from './store/types';
import type { StripeClientLike, StripeEventLike } from './stripe/types';
import type { WebhookOutcome } from './stripe/webhook';

export interface CreditBundle {
  /** Stable id the client sends: `{ "bundle": "starter" }`. Letters, digits, `-` and `_`. */
  id: string;
  credits: number;
  /** Total price in the smallest currency unit (cents). */
  price: number;
  /** Shown on the Checkout page; default `${credits} ${creditName}`. */
  name?: string;
}

export interface PricingOptions {
  /** Price of one credit in cents. Default: `CREDIT_PRICE_USD` × 100 if set, else 10 ($0.10). */
  creditPriceCents?: number;
  /** ISO currency code, lower case. Default `usd`. */
  currency?: string;
  /** Smallest quantity one checkout may buy. Default 1 (still subject to `minimumChargeCents`). */
  minQuantity?: number;
  /** Largest quantity one checkout may buy. Default 100000. */
  maxQuantity?: number;
  /** Stripe's minimum charge. Default 50 ($0.50). */
  minimumChargeCents?: number;
  /** Named bundles, for discounts. */
  bundles?: CreditBundle[];
}

/** When a guarded route's outcome refunds its charge. */
export type RefundRule = 'server-error' | 'error' | 'never' | ((outcome: { status: number }) => boolean);

/**
 * What `settle(actual)` does when `actual` exceeds the reservation and the balance cannot cover the difference:
 * - `cap`: charge what the balance holds (it reaches 0, never below); the ledger entry records what was requested.
 * - `debt`: charge it all; the balance goes negative and spending is refused until it is topped up.
 */
export type OveragePolicy = 'cap' | 'debt';

export interface RateLimitOptions {
  /** Window length in milliseconds. Default 60000. */
  windowMs?: number;
  /** Requests each user may make per window to guarded routes. Default: no limit. */
  guarded?: number;
  /** Checkout sessions each user may create per window. Default: no limit. */
  checkout?: number;
}

export interface CreateCreditsOptions {
  /** The app's mongoose connection. The kit's collections are created in its database. */
  connection?: Connection;
  /**
   * Another storage for the ledger, instead of the MongoDB store on `connection`: anything that passes the
   * CreditStore conformance suite (server/store/conformance.ts). It is wrapped in the same fail-closed bound.
   */
  store?: CreditStore;
  /** The signed-in user's id, or null/undefined when nobody is signed in. Never read from the body or query. */
  getUserId: (req: Request) => string | null | undefined | Promise<string | null | undefined>;
  /** Word shown to people, plural. Default `credits`. */
  creditName?: string;
  /** Prefix of the kit's collection names. Default `credit_`. */
  collectionPrefix?: string;
  /**
   * Upper bound of every database call on the request and webhook paths, in ms: past it the guarded route
   * answers 503 and does not run (and a charge that lands later is given back). Default 3000.
   */
  timeoutMs?: number;
  /** Default `server-error`: a thrown error, `next(err)` or any 5xx answer refunds the charge. */
  refundOn?: RefundRule;
  /** Default `cap`. */
  overage?: OveragePolicy;
  /**
   * How long an unfinished idempotency claim is left to its holder before others decide it, in ms. It only
   * decides when to look: a claim is decided by first fencing its entry, so a holder that outlives its
   * lease (or runs on a host whose clock is off) can never apply it twice, whatever the value. One shorter
   * than a database call only costs retries: live holders are fenced and their requests answered 409.
   * Default 60000.
   */
  claimLeaseMs?: number;

  /**
   * A Stripe client the app constructs (keys, API version and, in tests, the mock's host):
   * `new Stripe(process.env.STRIPE_SECRET_KEY)` from stripe-node.
   */
  stripe?: StripeClientLike;
  /** The webhook endpoint's signing secret (`whsec_…`). Required with `stripe`. */
  webhookSecret?: string;
  pricing?: PricingOptions;
  /** Public URL of the app, for Checkout's return URLs. Default: `NEXT_PUBLIC_URL`. Never taken from a request. */
  publicUrl?: string;
  /** Path of the success page; `{CHECKOUT_SESSION_ID}` is filled in by Stripe. Default `/success?session_id={CHECKOUT_SESSION_ID}`. */
  successPath?: string;
  /** Path of the page a cancelled checkout returns to. Default `/cancel`. */
  cancelPath?: string;
  /** Signature tolerance for webhooks, in seconds. Default 300 (Stripe's). */
  webhookToleranceSeconds?: number;
  /** Per-user rate limits: a fixed window per user, in this process's memory (server/http/rate-limit.ts). Default: none. */
  rateLimit?: RateLimitOptions;
  /** Largest JSON body the kit's routes accept. Default `16kb`. */
  bodyLimit?: string;
  /** Told of every webhook delivery once it is answered: for logs and metrics. Errors it throws are ignored. */
  onWebhook?: (report: WebhookReport) => void;
  /** `onBackgroundError`: told of errors in work done after an answer (default: console.error). */
  hooks?: LedgerHooks;
}

export interface WebhookReport {
  /** The HTTP status the delivery got: 200 handled or ignored, 400 refused, 5xx Stripe will retry. */
  status: number;
  /** The verified event; absent when the delivery was refused before verification succeeded. */
  event?: StripeEventLike;
  /**
   * What the kit did: `{ status, creditsAdded }` for a checkout, `{ clawedBack, restored }` for a refund,
   * dispute or charge event, `{ ignored: true }` otherwise; `reason` says why an event changed nothing.
   */
  outcome?: WebhookOutcome;
  /** Why the delivery was refused or failed. */
  error?: { code: string; message: string };
}

export interface ResolvedPricing {
  creditPriceCents: number;
  currency: string;
  minQuantity: number;
  maxQuantity: number;
  minimumChargeCents: number;
  bundles: Map<string, CreditBundle>;
}

export interface ResolvedOptions {
  connection: Connection | undefined;
  store: CreditStore | undefined;
  getUserId: CreateCreditsOptions['getUserId'];
  creditName: string;
  collectionPrefix: string;
  timeoutMs: number;
  refundOn: (outcome: { status: number }) => boolean;
  overage: OveragePolicy;
  claimLeaseMs: number;
  stripe: Stripe | undefined;
  webhookSecret: string | undefined;
  pricing: ResolvedPricing;
  publicUrl: string | undefined;
  successPath: string;
  cancelPath: string;
  webhookToleranceSeconds: number;
  rateLimit: Required<RateLimitOptions> | undefined;
  bodyLimit: string;
  onWebhook: ((report: WebhookReport) => void) | undefined;
  hooks: LedgerHooks;
  /** Tests only (server/ledger/faults.ts). */
  fault: FaultInjector | undefined;
}

const KNOWN_KEYS: ReadonlyArray<keyof CreateCreditsOptions> = [
  'connection',
  'store',
  'getUserId',
  'creditName',
  'collectionPrefix',
  'timeoutMs',
  'refundOn',
  'overage',
  'claimLeaseMs',
  'stripe',
  'webhookSecret',
  'pricing',
  'publicUrl',
  'successPath',
  'cancelPath',
  'webhookToleranceSeconds',
  'rateLimit',
  'bodyLimit',
  'onWebhook',
  'hooks',
];

/** Stripe's upper bound for one Checkout amount: $999,999.99. */
const STRIPE_MAX_AMOUNT = 99_999_999;

export function resolveOptions(options: CreateCreditsOptions, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new CreditsConfigError('createCredits(options) needs an options object: { connection, getUserId, ... }.');
  }
  for (const key of Object.keys(options)) {
    if (!(KNOWN_KEYS as string[]).includes(key)) {
      const hint = KNOWN_KEYS.find((k) => k.toLowerCase() === key.toLowerCase());
      throw new CreditsConfigError(
        `createCredits: unknown option \`${key}\`.${hint ? ` Did you mean \`${hint}\`?` : ''} Known options: ${KNOWN_KEYS.join(', ')}.`,
      );
    }
  }
  const c = options.connection as Partial<Connection> | undefined;
  if (options.store !== undefined && (typeof options.store !== 'object' || typeof options.store?.applyEntry !== 'function')) {
    throw new CreditsConfigError('createCredits: `store` must implement CreditStore (see server/store/types.ts).');
  }
  if (options.store === undefined && (!c || typeof c !== 'object' || typeof c.getClient !== 'function')) {
    throw new CreditsConfigError(
      'createCredits: `connection` must be a mongoose Connection, for example `mongoose.connection` after `mongoose.connect(uri)`, or `mongoose.createConnection(uri)`.',
    );
  }
  if (typeof options.getUserId !== 'function') {
    throw new CreditsConfigError(
      'createCredits: `getUserId(req)` is required: return the signed-in user id from your session (never from the body or query), or null.',
    );
  }
  if (options.stripe && !options.webhookSecret) {
    throw new CreditsConfigError(
      'createCredits: `webhookSecret` is required with `stripe`: the endpoint secret (whsec_…) from the Stripe dashboard or `stripe listen`.',
    );
  }
  if (options.stripe && typeof (options.stripe as Partial<StripeClientLike>).checkout?.sessions?.create !== 'function') {
    throw new CreditsConfigError('createCredits: `stripe` must be a Stripe client: `new Stripe(process.env.STRIPE_SECRET_KEY)`.');
  }

  const creditName = nonEmptyString(options.creditName ?? 'credits', 'creditName');
  const refundOn = resolveRefundRule(options.refundOn ?? 'server-error');
  const overage = options.overage ?? 'cap';
  if (overage !== 'cap' && overage !== 'debt') {
    throw new CreditsConfigError(`createCredits: \`overage\` must be 'cap' or 'debt', got ${JSON.stringify(overage)}.`);
  }

  const publicUrl = options.publicUrl ?? env.NEXT_PUBLIC_URL;
  if (publicUrl !== undefined) {
    try {
      const u = new URL(publicUrl);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('protocol');
    } catch {
      throw new CreditsConfigError(`createCredits: \`publicUrl\` (or NEXT_PUBLIC_URL) must be an absolute http(s) URL, got ${JSON.stringify(publicUrl)}.`);
    }
  }

  return {
    connection: options.connection,
    store: options.store,
    getUserId: options.getUserId,
    creditName,
    collectionPrefix: nonEmptyString(options.collectionPrefix ?? 'credit_', 'collectionPrefix'),
    timeoutMs: positiveInt(options.timeoutMs ?? 3000, 'timeoutMs'),
    refundOn,
    overage,
    claimLeaseMs: positiveInt(options.claimLeaseMs ?? 60_000, 'claimLeaseMs'),
    // The public type is structural so that the declarations need no 'stripe' module; the object is a
    // stripe-node client (checked above), and inside the kit stripe-node's own types check every call.
    stripe: options.stripe as Stripe | undefined,
    webhookSecret: options.webhookSecret,
    pricing: resolvePricing(options.pricing ?? {}, env),
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    successPath: path(options.successPath ?? '/success?session_id={CHECKOUT_SESSION_ID}', 'successPath'),
    cancelPath: path(options.cancelPath ?? '/cancel', 'cancelPath'),
    webhookToleranceSeconds: positiveInt(options.webhookToleranceSeconds ?? 300, 'webhookToleranceSeconds'),
    rateLimit: options.rateLimit
      ? {
          windowMs: positiveInt(options.rateLimit.windowMs ?? 60_000, 'rateLimit.windowMs'),
          guarded: positiveInt(options.rateLimit.guarded ?? Number.MAX_SAFE_INTEGER, 'rateLimit.guarded'),
          checkout: positiveInt(options.rateLimit.checkout ?? Number.MAX_SAFE_INTEGER, 'rateLimit.checkout'),
        }
      : undefined,
    bodyLimit: nonEmptyString(options.bodyLimit ?? '16kb', 'bodyLimit'),
    onWebhook: optionalFunction(options.onWebhook, 'onWebhook'),
    hooks: options.hooks ?? {},
    fault: faultsOf(options),
  };
}

export function resolvePricing(pricing: PricingOptions, env: NodeJS.ProcessEnv): ResolvedPricing {
  const creditPriceCents =
    pricing.creditPriceCents !== undefined
      ? positiveInt(pricing.creditPriceCents, 'pricing.creditPriceCents')
      : env.CREDIT_PRICE_USD !== undefined && env.CREDIT_PRICE_USD !== ''
        ? centsFromUsd(env.CREDIT_PRICE_USD)
        : 10;
  const currency = pricing.currency ?? 'usd';
  if (!/^[a-z]{3}$/.test(currency)) {
    throw new CreditsConfigError(`createCredits: \`pricing.currency\` must be a three-letter ISO code in lower case, such as 'usd', got ${JSON.stringify(currency)}.`);
  }
  const minQuantity = positiveInt(pricing.minQuantity ?? 1, 'pricing.minQuantity');
  const maxQuantity = positiveInt(pricing.maxQuantity ?? 100_000, 'pricing.maxQuantity');
  const minimumChargeCents = positiveInt(pricing.minimumChargeCents ?? 50, 'pricing.minimumChargeCents');
  if (minQuantity > maxQuantity) {
    throw new CreditsConfigError(`createCredits: \`pricing.minQuantity\` (${minQuantity}) is above \`pricing.maxQuantity\` (${maxQuantity}).`);
  }
  if (maxQuantity * creditPriceCents > STRIPE_MAX_AMOUNT) {
    throw new CreditsConfigError(
      `createCredits: ${maxQuantity} credits at ${creditPriceCents} cents is above Stripe's largest charge (${STRIPE_MAX_AMOUNT} cents); lower \`pricing.maxQuantity\`.`,
    );
  }
  if (maxQuantity * creditPriceCents < minimumChargeCents) {
    throw new CreditsConfigError(
      `createCredits: even the largest purchase (${maxQuantity} credits at ${creditPriceCents} cents) is below the minimum charge of ${minimumChargeCents} cents.`,
    );
  }

  const bundles = new Map<string, CreditBundle>();
  for (const b of pricing.bundles ?? []) {
    if (typeof b?.id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(b.id)) {
      throw new CreditsConfigError(`createCredits: a bundle id must be 1-64 letters, digits, '-' or '_', got ${JSON.stringify(b?.id)}.`);
    }
    if (bundles.has(b.id)) throw new CreditsConfigError(`createCredits: bundle id '${b.id}' is used twice.`);
    positiveInt(b.credits, `bundle '${b.id}' credits`);
    positiveInt(b.price, `bundle '${b.id}' price`);
    if (b.price < minimumChargeCents) {
      throw new CreditsConfigError(`createCredits: bundle '${b.id}' costs ${b.price} cents, below the minimum charge of ${minimumChargeCents} cents.`);
    }
    if (b.price > STRIPE_MAX_AMOUNT) throw new CreditsConfigError(`createCredits: bundle '${b.id}' is above Stripe's largest charge.`);
    bundles.set(b.id, { ...b });
  }
  return { creditPriceCents, currency, minQuantity, maxQuantity, minimumChargeCents, bundles };
}

/** "0.10" → 10. A price that is not a whole number of cents is refused: Stripe's unit_amount is an integer. */
export function centsFromUsd(text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text.trim())) {
    throw new CreditsConfigError(`CREDIT_PRICE_USD must be a price in dollars such as 0.10, got ${JSON.stringify(text)}.`);
  }
  const [whole, frac = ''] = text.trim().split('.');
  if (frac.replace(/0+$/, '').length > 2) {
    throw new CreditsConfigError(
      `CREDIT_PRICE_USD=${text} is not a whole number of cents; Stripe charges whole cents. Use for example 0.12 or 0.13.`,
    );
  }
  const cents = Number(whole) * 100 + Number(frac.padEnd(2, '0').slice(0, 2));
  if (!Number.isSafeInteger(cents) || cents <= 0) throw new CreditsConfigError(`CREDIT_PRICE_USD must be above 0, got ${text}.`);
  return cents;
}

function resolveRefundRule(rule: RefundRule): (outcome: { status: number }) => boolean {
  if (typeof rule === 'function') return rule;
  switch (rule) {
    case 'server-error':
      return ({ status }) => status >= 500;
    case 'error':
      return ({ status }) => status >= 400;
    case 'never':
      return () => false;
    default:
      throw new CreditsConfigError(`createCredits: \`refundOn\` must be 'server-error', 'error', 'never' or a function, got ${JSON.stringify(rule)}.`);
  }
}

function optionalFunction<T>(value: T | undefined, name: string): T | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be a function.`);
  }
  return value;
}

function positiveInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be a positive integer, got ${JSON.stringify(value)}.`);
  }
  return value;
}

function nonEmptyString(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be a non-empty string.`);
  }
  return value;
}

function path(value: unknown, name: string): string {
  if (typeof value !== 'string' || !value.startsWith('/')) {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be a path starting with '/', got ${JSON.stringify(value)}.`);
  }
  return value;
}
