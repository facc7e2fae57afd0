/**
 * createCredits' options: declared, defaulted and validated once, at start-up. Nothing here runs per request.
 */
import type { Connection } from 'mongoose';
import type Stripe from 'stripe';
import { CreditsConfigError } from './errors';
import type { LedgerHooks, LowBalanceWatch } from './ledger';
import type { LowBalanceAlert } from './domain/types';
import { resolveAutoRecharge, type AutoRechargeOptions, type ResolvedAutoRecharge } from './stripe/recharge-options';
import { consoleLog, logFailure, toLog, type CreditsLogFunction, type CreditsLogger, type Log } from './log';
import { CREDIT_STORE_METHODS, type CreditStore } from './store/types';
import type { StripeClientLike, StripeEventLike } from './stripe/types';
import type { WebhookOutcome } from './stripe/webhook';
import { resolvePlans, type PlanOptions, type ResolvedPlans } from './stripe/plans';

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

/**
 * Token prices of one model, in whole credits for `per` tokens: `{ input: 1, output: 4, per: 1000 }` is 1 credit
 * per 1000 input (prompt) tokens and 4 per 1000 output (completion) tokens. Integers, so the arithmetic is exact.
 */
export interface TokenPrice {
  /** Credits for `per` input tokens: a whole number, 0 or more. */
  input: number;
  /** Credits for `per` output tokens: a whole number, 0 or more. */
  output: number;
  /** How many tokens `input` and `output` are the price of: a positive integer such as 1000 or 1000000. */
  per: number;
}

/** A named cost every request pays in full: `{ credits: 20, label: 'Summarize' }`. */
export interface FixedCost {
  credits: number;
  /** What the history shows for the charge. Default: the cost's name. */
  label?: string;
  metered?: false;
}

/**
 * A named metered cost: `reserve` is charged up front, and the route settles what it really used with
 * `settle(credits)` or, priced per model, `settleUsage(usage, model)`.
 */
export interface MeteredCost {
  metered: true;
  reserve: number;
  /** What the history shows for the charge and its settlement. Default: the cost's name. */
  label?: string;
  /** Token prices by model name, for `settleUsage(usage, 'gpt-4o')`. */
  perModel?: Record<string, TokenPrice>;
}

export type NamedCost = FixedCost | MeteredCost;

/** createCredits' `costs`: the price list of the app's guarded actions, by the name `requireCredits('summarize')` uses. */
export type NamedCosts = Record<string, NamedCost>;

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

/**
 * The options of both factories, over the request type their `getUserId` reads: `createCredits` (an
 * Express request: `CreateCreditsOptions`, server/index.ts) and `createFetchCredits` (the Fetch API's
 * `Request`, credit-kit/fetch). No framework's types are imported here.
 */
export interface CreditsOptions<Req> {
  /** The app's mongoose connection. The kit's collections are created in its database. */
  connection?: Connection;
  /**
   * Another storage for the ledger, instead of the MongoDB store on `connection`: anything that passes the
   * CreditStore conformance suite (server/store/conformance.ts). It is wrapped in the same fail-closed bound.
   */
  store?: CreditStore;
  /** The signed-in user's id, or null/undefined when nobody is signed in. Never read from the body or query. */
  getUserId: (req: Req) => string | null | undefined | Promise<string | null | undefined>;
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
   * How long a guarded route's Idempotency-Key, and the answer kept for its retries, are kept after its
   * first request, in ms; a key used again after that is a new request. Keys of grants, deductions and
   * purchases are kept for good. Default 86400000 (24 hours, as Stripe keeps them).
   */
  idempotencyKeyTtlMs?: number;
  /**
   * How long a metered guarded route (`requireCredits(cost, { metered: true })`) has to settle its
   * reservation, in ms. Past it, `reconcile()` gives back a reservation nobody settled (its process died or
   * stalled mid-answer), once, and a `settle()` that comes later changes nothing. Default 600000 (10 minutes):
   * longer than any answer a route streams.
   */
  settleWithinMs?: number;

  /**
   * A Stripe client the app constructs (keys, API version and, in tests, the mock's host):
   * `new Stripe(process.env.STRIPE_SECRET_KEY)` from stripe-node.
   */
  stripe?: StripeClientLike;
  /** The webhook endpoint's signing secret (`whsec_…`). Required with `stripe`. */
  webhookSecret?: string;
  pricing?: PricingOptions;
  /**
   * Subscription plans by id: `{ pro: { price: 'price_…', credits: 1000, rollover: { max: 500 } } }`, each a
   * recurring Stripe Price you created and the credits each paid billing period grants (README "Subscriptions").
   */
  plans?: PlanOptions;
  /**
   * Costs by name, for `requireCredits('summarize')` and `withCredits('summarize', handler)`: each fixed
   * (`{ credits, label }`) or metered (`{ metered: true, reserve, label, perModel }`). The history shows the
   * label of each charge; GET /credits/pricing lists them. Default: none.
   */
  costs?: NamedCosts;
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
  /** `onBackgroundError`: told of errors in work done after an answer, instead of the logger. */
  hooks?: LedgerHooks;
  /**
   * Low-balance alerts: `onLowBalance(alert)` is called once when a user's balance falls below one of
   * `levels`, and again only after it has been back at that level or above. At least once, with a stable
   * `alert.id` (a hook that throws is called again later; dedupe on the id if it must not act twice).
   */
  lowBalance?: LowBalanceOptions;
  /**
   * Auto-recharge from a saved card (README "Auto-recharge"): when a spend takes a user's balance below the
   * threshold they chose, the kit charges their saved card once, off-session, within `monthlyCap`.
   */
  autoRecharge?: AutoRechargeOptions;
  /**
   * Where the kit's few log lines go: an object with `warn(line, record)` and `error(line, record)` (winston's
   * logger takes them as they are), or a function `(level, line, record)`. Default: one line on stderr. Expected
   * conditions (bad input, 401, 402, 404, 409, 429, not configured) log nothing; anything else logs one line
   * with the error's code, and the stack only for an error the kit did not expect.
   */
  logger?: CreditsLogger | CreditsLogFunction;
}

export interface LowBalanceOptions {
  /** One level or several (positive integers): an alert when the balance goes from the level or more to below it. */
  levels: number | number[];
  onLowBalance: (alert: LowBalanceAlert) => void | Promise<void>;
}

export interface WebhookReport {
  /** The HTTP status the delivery got: 200 handled or ignored, 400 refused, 5xx Stripe will retry. */
  status: number;
  /** The verified event; absent when the delivery was refused before verification succeeded. */
  event?: StripeEventLike;
  /**
   * What the kit did: `{ status, creditsAdded }` for a checkout, `{ clawedBack, restored }` for a refund,
   * dispute or charge event, `{ subscription, creditsGranted, revoked }` for a subscription's session,
   * invoice, state or payment, `{ ignored: true }` otherwise; `reason` says why an event changed nothing.
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

/** One named cost as the guards use it. */
export interface ResolvedCost {
  name: string;
  label: string;
  metered: boolean;
  /** What a request is charged up front: the fixed cost, or the metered reservation. */
  amount: number;
  perModel: ReadonlyMap<string, TokenPrice>;
}

export interface ResolvedOptions<Req = unknown> {
  connection: Connection | undefined;
  store: CreditStore | undefined;
  getUserId: CreditsOptions<Req>['getUserId'];
  creditName: string;
  collectionPrefix: string;
  timeoutMs: number;
  refundOn: (outcome: { status: number }) => boolean;
  overage: OveragePolicy;
  claimLeaseMs: number;
  idempotencyKeyTtlMs: number;
  settleWithinMs: number;
  stripe: Stripe | undefined;
  webhookSecret: string | undefined;
  pricing: ResolvedPricing;
  plans: ResolvedPlans;
  costs: ReadonlyMap<string, ResolvedCost>;
  publicUrl: string | undefined;
  successPath: string;
  cancelPath: string;
  webhookToleranceSeconds: number;
  rateLimit: Required<RateLimitOptions> | undefined;
  bodyLimit: string;
  onWebhook: ((report: WebhookReport) => void) | undefined;
  /** `onBackgroundError` is always set: the app's hook, or the logger. */
  hooks: Required<LedgerHooks>;
  lowBalance: LowBalanceWatch | undefined;
  autoRecharge: ResolvedAutoRecharge | undefined;
  logger: Log;
}

/** The resolved options without the framework's `getUserId`: what the framework-neutral code reads. */
export type NeutralOptions = Omit<ResolvedOptions<unknown>, 'getUserId'>;

const KNOWN_KEYS: ReadonlyArray<keyof CreditsOptions<unknown>> = [
  'connection',
  'store',
  'getUserId',
  'creditName',
  'collectionPrefix',
  'timeoutMs',
  'refundOn',
  'overage',
  'claimLeaseMs',
  'idempotencyKeyTtlMs',
  'settleWithinMs',
  'stripe',
  'webhookSecret',
  'pricing',
  'plans',
  'costs',
  'publicUrl',
  'successPath',
  'cancelPath',
  'webhookToleranceSeconds',
  'rateLimit',
  'bodyLimit',
  'onWebhook',
  'hooks',
  'lowBalance',
  'autoRecharge',
  'logger',
];

/** Stripe's upper bound for one Checkout amount: $999,999.99. */
const STRIPE_MAX_AMOUNT = 99_999_999;

/** The longest a request key is kept: far below where a Date stops being valid. */
const TEN_YEARS_MS = 3650 * 86_400_000;

/** setTimeout's largest delay: a longer one fires at once (Node clamps it to 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

export function resolveOptions<Req>(options: CreditsOptions<Req>, env: NodeJS.ProcessEnv = process.env): ResolvedOptions<Req> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new CreditsConfigError('createCredits(options) needs an options object: { connection, getUserId, ... }.');
  }
  onlyKnownKeys(options, KNOWN_KEYS, 'option', '');
  const c = options.connection as Partial<Connection> | undefined;
  if (options.store !== undefined) {
    const store: unknown = options.store;
    const missing = typeof store === 'object' && store !== null ? CREDIT_STORE_METHODS.filter((m) => typeof Reflect.get(store, m) !== 'function') : CREDIT_STORE_METHODS;
    if (missing.length > 0) {
      throw new CreditsConfigError(
        `createCredits: \`store\` must implement CreditStore (server/store/types.ts); it lacks ${missing.join(', ')}. server/store/conformance.ts says what each must do.`,
      );
    }
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

  const creditName = nonEmptyString(options.creditName ?? 'credits', 'creditName');
  const refundOn = resolveRefundRule(options.refundOn ?? 'server-error');
  const overage = options.overage ?? 'cap';
  if (overage !== 'cap' && overage !== 'debt') {
    throw new CreditsConfigError(`createCredits: \`overage\` must be 'cap' or 'debt', got ${JSON.stringify(overage)}.`);
  }
  const timeoutMs = positiveInt(options.timeoutMs ?? 3000, 'timeoutMs', MAX_TIMER_MS);
  const claimLeaseMs = positiveInt(options.claimLeaseMs ?? 60_000, 'claimLeaseMs', MAX_TIMER_MS);
  const logger = resolveLogger(options.logger);
  const stripe = resolveStripe(options);
  const publicUrl = resolvePublicUrl(options.publicUrl, env.NEXT_PUBLIC_URL, stripe !== undefined);
  const hooks = plainObject(options.hooks ?? {}, 'hooks');
  const lowBalance = options.lowBalance === undefined ? undefined : resolveLowBalance(options.lowBalance);
  onlyKnownKeys(hooks, ['onBackgroundError'], 'key', 'hooks.');

  return {
    connection: options.connection,
    store: options.store,
    getUserId: options.getUserId,
    creditName,
    collectionPrefix: collectionPrefix(options.collectionPrefix ?? 'credit_'),
    timeoutMs,
    refundOn,
    overage,
    claimLeaseMs,
    idempotencyKeyTtlMs: positiveInt(options.idempotencyKeyTtlMs ?? 86_400_000, 'idempotencyKeyTtlMs', TEN_YEARS_MS),
    settleWithinMs: positiveInt(options.settleWithinMs ?? 600_000, 'settleWithinMs', TEN_YEARS_MS),
    stripe: stripe?.client,
    webhookSecret: stripe?.webhookSecret,
    pricing: resolvePricing(options.pricing ?? {}, env),
    plans: resolvePlans(options.plans),
    costs: resolveCosts(options.costs ?? {}),
    publicUrl,
    successPath: path(options.successPath ?? '/success?session_id={CHECKOUT_SESSION_ID}', 'successPath'),
    cancelPath: path(options.cancelPath ?? '/cancel', 'cancelPath'),
    webhookToleranceSeconds: positiveInt(options.webhookToleranceSeconds ?? 300, 'webhookToleranceSeconds'),
    rateLimit: resolveRateLimit(options.rateLimit),
    bodyLimit: bodyLimit(options.bodyLimit ?? '16kb'),
    onWebhook: optionalFunction(options.onWebhook, 'onWebhook'),
    hooks: { onBackgroundError: optionalFunction(hooks.onBackgroundError, 'hooks.onBackgroundError') ?? ((err) => logFailure(logger, err, 'background work')) },
    lowBalance,
    autoRecharge: options.autoRecharge === undefined ? undefined : resolveAutoRecharge(options.autoRecharge, stripe !== undefined),
    logger,
  };
}

/** Most levels one app may watch: each is a comparison per spend in the journal mover. */
const MAX_LOW_BALANCE_LEVELS = 10;

function resolveLowBalance(value: LowBalanceOptions): LowBalanceWatch {
  const given = plainObject(value, 'lowBalance');
  onlyKnownKeys(given, ['levels', 'onLowBalance'], 'key', 'lowBalance.');
  if (typeof given.onLowBalance !== 'function') {
    throw new CreditsConfigError('createCredits: `lowBalance.onLowBalance` must be a function (alert) => void, called once per fall below a level.');
  }
  const list = typeof given.levels === 'number' ? [given.levels] : given.levels;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_LOW_BALANCE_LEVELS) {
    throw new CreditsConfigError(
      `createCredits: \`lowBalance.levels\` must be a positive integer or an array of 1 to ${MAX_LOW_BALANCE_LEVELS} of them, got ${shown(given.levels)}.`,
    );
  }
  const levels = list.map((level, i) => positiveInt(level, `lowBalance.levels[${i}]`));
  if (new Set(levels).size !== levels.length) {
    throw new CreditsConfigError(`createCredits: \`lowBalance.levels\` lists a level twice: ${JSON.stringify(levels)}.`);
  }
  return { levels: [...levels].sort((a, b) => a - b), onLowBalance: given.onLowBalance };
}

/** `stripe` and `webhookSecret` go together; an API key passed as the webhook secret is caught here. */
function resolveStripe(options: Pick<CreditsOptions<unknown>, 'stripe' | 'webhookSecret'>): { client: Stripe; webhookSecret: string } | undefined {
  if (options.stripe === undefined || options.stripe === null) {
    if (options.webhookSecret !== undefined) {
      throw new CreditsConfigError('createCredits: `webhookSecret` is set but `stripe` is not: pass the Stripe client too, or drop the secret.');
    }
    return undefined;
  }
  const secret = options.webhookSecret;
  if (typeof secret !== 'string' || secret.trim() === '') {
    throw new CreditsConfigError(
      'createCredits: `webhookSecret` is required with `stripe`: the endpoint secret (whsec_…) from the Stripe dashboard or `stripe listen`.',
    );
  }
  if (typeof (options.stripe as Partial<StripeClientLike>).checkout?.sessions?.create !== 'function' || typeof (options.stripe as Partial<StripeClientLike>).webhooks?.constructEvent !== 'function') {
    throw new CreditsConfigError('createCredits: `stripe` must be a Stripe client: `new Stripe(process.env.STRIPE_SECRET_KEY)`.');
  }
  if (/^(sk|rk|pk)_/.test(secret)) {
    throw new CreditsConfigError(
      'createCredits: `webhookSecret` looks like a Stripe API key (sk_/rk_/pk_…); it must be the webhook endpoint\'s signing secret (whsec_…).',
    );
  }
  // The public type is structural so that the declarations need no 'stripe' module; the object is a
  // stripe-node client (checked above), and inside the kit stripe-node's own types check every call.
  return { client: options.stripe as unknown as Stripe, webhookSecret: secret };
}

/** An absolute http(s) origin, maybe with a path; required with Stripe, which needs it for every return URL. */
function resolvePublicUrl(option: unknown, fromEnv: string | undefined, withStripe: boolean): string | undefined {
  const name = option !== undefined ? '`publicUrl`' : 'NEXT_PUBLIC_URL';
  const value = option ?? (fromEnv === '' ? undefined : fromEnv);
  if (value === undefined) {
    if (!withStripe) return undefined;
    throw new CreditsConfigError(
      "createCredits: `publicUrl` (or NEXT_PUBLIC_URL) is required with `stripe`: Checkout's success and cancel URLs are built on it, for example publicUrl: 'https://myapp.example'.",
    );
  }
  let url: URL | undefined;
  try {
    url = typeof value === 'string' ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new CreditsConfigError(`createCredits: ${name} must be an absolute http(s) URL such as 'https://myapp.example', got ${JSON.stringify(value)}.`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new CreditsConfigError(`createCredits: ${name} must be an origin (optionally with a path), without a query, fragment or credentials, got ${JSON.stringify(value)}.`);
  }
  return (value as string).replace(/\/+$/, '');
}

function resolveRateLimit(option: RateLimitOptions | undefined): Required<RateLimitOptions> | undefined {
  if (option === undefined) return undefined;
  const rl = plainObject(option, 'rateLimit');
  onlyKnownKeys(rl, ['windowMs', 'guarded', 'checkout'], 'key', 'rateLimit.');
  return {
    windowMs: positiveInt(rl.windowMs ?? 60_000, 'rateLimit.windowMs', MAX_TIMER_MS),
    guarded: positiveInt(rl.guarded ?? Number.MAX_SAFE_INTEGER, 'rateLimit.guarded'),
    checkout: positiveInt(rl.checkout ?? Number.MAX_SAFE_INTEGER, 'rateLimit.checkout'),
  };
}

function resolveLogger(logger: CreditsOptions<unknown>['logger']): Log {
  if (logger === undefined) return consoleLog;
  if (typeof logger === 'function') return toLog(logger);
  if (typeof logger === 'object' && logger !== null && typeof logger.warn === 'function' && typeof logger.error === 'function') {
    return toLog(logger);
  }
  throw new CreditsConfigError(
    'createCredits: `logger` must be an object with warn(line, record) and error(line, record) methods, or a function (level, line, record).',
  );
}

const PRICING_KEYS: ReadonlyArray<keyof PricingOptions> = ['creditPriceCents', 'currency', 'minQuantity', 'maxQuantity', 'minimumChargeCents', 'bundles'];
const BUNDLE_KEYS: ReadonlyArray<keyof CreditBundle> = ['id', 'credits', 'price', 'name'];

export function resolvePricing(option: PricingOptions, env: NodeJS.ProcessEnv): ResolvedPricing {
  const pricing = plainObject(option, 'pricing');
  onlyKnownKeys(pricing, PRICING_KEYS, 'key', 'pricing.');
  const creditPriceCents =
    pricing.creditPriceCents !== undefined
      ? positiveInt(pricing.creditPriceCents, 'pricing.creditPriceCents')
      : env.CREDIT_PRICE_USD !== undefined && env.CREDIT_PRICE_USD !== ''
        ? centsFromUsd(env.CREDIT_PRICE_USD)
        : 10;
  const currency = pricing.currency ?? 'usd';
  if (typeof currency !== 'string' || !/^[a-z]{3}$/.test(currency)) {
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
  if (pricing.bundles !== undefined && !Array.isArray(pricing.bundles)) {
    throw new CreditsConfigError("createCredits: `pricing.bundles` must be an array such as [{ id: 'starter', credits: 500, price: 4000 }].");
  }
  for (const [i, b] of (pricing.bundles ?? []).entries()) {
    if (typeof b !== 'object' || b === null || Array.isArray(b)) {
      throw new CreditsConfigError(`createCredits: each of \`pricing.bundles\` must be an object { id, credits, price, name? }, got ${JSON.stringify(b)}.`);
    }
    onlyKnownKeys(b, BUNDLE_KEYS, 'key', `pricing.bundles[${i}].`);
    if (typeof b.id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(b.id)) {
      throw new CreditsConfigError(`createCredits: a bundle id must be 1-64 letters, digits, '-' or '_', got ${JSON.stringify(b?.id)}.`);
    }
    if (bundles.has(b.id)) throw new CreditsConfigError(`createCredits: bundle id '${b.id}' is used twice.`);
    positiveInt(b.credits, `bundle '${b.id}' credits`);
    positiveInt(b.price, `bundle '${b.id}' price`);
    if (b.name !== undefined && (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 250)) {
      throw new CreditsConfigError(`createCredits: bundle '${b.id}' name must be a non-empty string of at most 250 characters (Stripe's product name), got ${JSON.stringify(b.name)}.`);
    }
    if (b.price < minimumChargeCents) {
      throw new CreditsConfigError(`createCredits: bundle '${b.id}' costs ${b.price} cents, below the minimum charge of ${minimumChargeCents} cents.`);
    }
    if (b.price > STRIPE_MAX_AMOUNT) throw new CreditsConfigError(`createCredits: bundle '${b.id}' is above Stripe's largest charge.`);
    bundles.set(b.id, { ...b });
  }
  return { creditPriceCents, currency, minQuantity, maxQuantity, minimumChargeCents, bundles };
}

const FIXED_COST_KEYS: ReadonlyArray<keyof FixedCost> = ['credits', 'label', 'metered'];
const METERED_COST_KEYS: ReadonlyArray<keyof MeteredCost> = ['metered', 'reserve', 'label', 'perModel'];
const TOKEN_PRICE_KEYS: ReadonlyArray<keyof TokenPrice> = ['input', 'output', 'per'];
const COST_SHAPES = "{ credits, label? } (fixed) or { metered: true, reserve, label?, perModel? } (metered)";

/** The price list: every name, rule, label and model price checked here, so a guard only looks names up. */
export function resolveCosts(option: NamedCosts): ReadonlyMap<string, ResolvedCost> {
  const list = plainObject(option, 'costs');
  const costs = new Map<string, ResolvedCost>();
  for (const [name, value] of Object.entries(list)) {
    const at = `costs.${name}`;
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(name)) {
      throw new CreditsConfigError(`createCredits: a cost name must be 1-64 letters, digits, '-', '_', '.' or ':', got ${JSON.stringify(name)}.`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const hint = typeof value === 'number' ? ` Write { credits: ${value} } for a fixed cost.` : '';
      throw new CreditsConfigError(`createCredits: \`${at}\` must be ${COST_SHAPES}, got ${shown(value)}.${hint}`);
    }
    const entry: { [K in keyof FixedCost | keyof MeteredCost]?: unknown } = value;
    if (entry.metered !== undefined && typeof entry.metered !== 'boolean') {
      throw new CreditsConfigError(`createCredits: \`${at}.metered\` must be true or false, got ${shown(entry.metered)}.`);
    }
    const metered = entry.metered === true;
    if (!metered && (entry.reserve !== undefined || entry.perModel !== undefined)) {
      throw new CreditsConfigError(
        `createCredits: \`${at}\` has \`${entry.reserve !== undefined ? 'reserve' : 'perModel'}\` but not \`metered: true\`; a cost is ${COST_SHAPES}.`,
      );
    }
    if (metered && entry.credits !== undefined) {
      throw new CreditsConfigError(`createCredits: \`${at}\` is metered: it reserves \`reserve\` up front and settles the rest, so it has no \`credits\`.`);
    }
    onlyKnownKeys(entry, metered ? METERED_COST_KEYS : FIXED_COST_KEYS, 'key', `${at}.`);
    const amount = positiveInt(metered ? entry.reserve : entry.credits, `${at}.${metered ? 'reserve' : 'credits'}`);
    const label = entry.label ?? name;
    if (typeof label !== 'string' || label.trim() === '' || label.length > 100 || /[\u0000-\u001f]/.test(label)) {
      throw new CreditsConfigError(`createCredits: \`${at}.label\` must be a non-empty line of at most 100 characters, got ${shown(label)}.`);
    }
    const perModel = new Map<string, TokenPrice>();
    for (const [model, price] of Object.entries(plainObject((entry.perModel ?? {}) as object, `${at}.perModel`))) {
      if (model.trim() === '' || model.length > 100 || /[\u0000-\u001f]/.test(model)) {
        throw new CreditsConfigError(`createCredits: a model name in \`${at}.perModel\` must be a non-empty line of at most 100 characters, got ${JSON.stringify(model)}.`);
      }
      perModel.set(model, checkTokenPrice(price, `createCredits: \`${at}.perModel['${model}']\``));
    }
    costs.set(name, { name, label, metered, amount, perModel });
  }
  return costs;
}

/**
 * A model's token prices, checked (at start-up for `perModel`, on the call for one passed to `settleUsage`):
 * `input` and `output` whole credits, 0 or more and not both 0, for `per` tokens, a positive integer.
 */
export function checkTokenPrice(value: unknown, where: string): TokenPrice {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CreditsConfigError(`${where} must be a token price { input, output, per } such as { input: 1, output: 4, per: 1000 }, got ${shown(value)}.`);
  }
  const price: Partial<TokenPrice> = value;
  const unknown = Object.keys(price).find((k) => !TOKEN_PRICE_KEYS.includes(k as keyof TokenPrice));
  if (unknown !== undefined) {
    const hint = suggest(unknown, TOKEN_PRICE_KEYS);
    throw new CreditsConfigError(`${where} has an unknown key \`${unknown}\`.${hint ? ` Did you mean \`${hint}\`?` : ''} Known: ${TOKEN_PRICE_KEYS.join(', ')}.`);
  }
  for (const side of ['input', 'output'] as const) {
    const n = price[side];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new CreditsConfigError(`${where}.${side} must be a whole number of credits, 0 or more (for \`per\` tokens), got ${shown(n)}.`);
    }
  }
  if (price.input === 0 && price.output === 0) throw new CreditsConfigError(`${where} makes every call free: give \`input\` or \`output\` a price.`);
  const per = price.per;
  if (typeof per !== 'number' || !Number.isSafeInteger(per) || per <= 0) {
    throw new CreditsConfigError(`${where}.per must be a positive integer, the number of tokens the prices are for (such as 1000), got ${shown(per)}.`);
  }
  return { input: price.input!, output: price.output!, per };
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

function positiveInt(value: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be a positive integer, got ${shown(value)}.`);
  }
  if (value > max) {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be at most ${max}${max === MAX_TIMER_MS ? ' ms (about 24.8 days, the longest timer Node keeps)' : max === TEN_YEARS_MS ? ' ms (ten years)' : ''}, got ${value}.`);
  }
  return value;
}

/** JSON.stringify turns NaN and Infinity into null: show them as they are. */
function shown(value: unknown): string {
  return typeof value === 'number' ? String(value) : JSON.stringify(value) ?? String(value);
}

function plainObject<T extends object>(value: T, name: string): Partial<T> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be an object, got ${JSON.stringify(value)}.`);
  }
  return value;
}

/** Refuses keys nobody reads: a misspelt option would otherwise be ignored in silence. */
function onlyKnownKeys(value: object, known: ReadonlyArray<string>, what: string, prefix: string): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const hint = suggest(key, known);
    throw new CreditsConfigError(
      `createCredits: unknown ${what} \`${prefix}${key}\`.${hint ? ` Did you mean \`${prefix}${hint}\`?` : ''} Known: ${known.join(', ')}.`,
    );
  }
}

/** The known name closest to a misspelt one: same letters in another case, one inside the other, or two edits away. */
export function suggest(key: string, known: ReadonlyArray<string>): string | undefined {
  const k = key.toLowerCase();
  return (
    known.find((n) => n.toLowerCase() === k) ??
    known.find((n) => k.length >= 4 && (n.toLowerCase().startsWith(k) || k.startsWith(n.toLowerCase()))) ??
    closest(known, k)
  );
}

/** The known name fewest edits away, if that is at most two (the first of equals). */
function closest(known: ReadonlyArray<string>, key: string): string | undefined {
  let best: string | undefined;
  let distance = 3;
  for (const n of known) {
    const d = editDistance(n.toLowerCase(), key);
    if (d < distance) [best, distance] = [n, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** A prefix MongoDB accepts in a collection name and that cannot reach its system collections. */
function collectionPrefix(value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(value) || value.startsWith('system.')) {
    throw new CreditsConfigError(
      `createCredits: \`collectionPrefix\` must be 1-64 letters, digits, '_', '-' or '.', not starting with '.', '-' or 'system.', got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

/** The size syntax express.json reads: a number of bytes with an optional unit, such as '16kb' or '1mb'. */
function bodyLimit(value: unknown): string {
  const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(value) : null;
  if (!m || Number(m[1]) <= 0) {
    throw new CreditsConfigError(`createCredits: \`bodyLimit\` must be a size such as '16kb' or '1mb', got ${JSON.stringify(value)}.`);
  }
  return value as string;
}

function nonEmptyString(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new CreditsConfigError(`createCredits: \`${name}\` must be a non-empty string.`);
  }
  return value;
}

function path(value: unknown, name: string): string {
  if (typeof value !== 'string' || !value.startsWith('/') || value.startsWith('//') || /[\s\u0000-\u001f]/.test(value)) {
    throw new CreditsConfigError(
      `createCredits: \`${name}\` must be a path on publicUrl starting with one '/', without spaces, got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}
