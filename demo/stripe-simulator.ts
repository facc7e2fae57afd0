/**
 * A Stripe Checkout simulator, so the demo sells credits with no Stripe account and no network.
 *
 * - An HTTP server on loopback that speaks the Stripe API calls the kit makes, with the form-encoded
 *   parameters stripe-node sends: POST /v1/checkout/sessions, GET /v1/checkout/sessions/:id, GET /v1/prices/:id
 *   and POST /v1/billing_portal/sessions. The kit's
 *   Stripe client is pointed at it with `new Stripe(key, { host, port, protocol: 'http' })`.
 * - A page that stands in for Stripe's hosted checkout (`pages`, mounted by the demo): line items, total,
 *   a card that pays and a card that is declined, Pay and Cancel. It says plainly that it is a simulation.
 * - Pay delivers a `checkout.session.completed` event, signed with the webhook secret, to the app's webhook
 *   route over HTTP, as Stripe does (retrying a failed delivery), then redirects to the success URL.
 * - Subscriptions: a session in `mode=subscription` for one of the `prices` the demo names; paying it starts a
 *   subscription (a customer, a 30-day period) and delivers `checkout.session.completed`, `invoice.paid` and
 *   `customer.subscription.created`. `advanceMonth(userId)` is the demo's simulated clock: the period ends,
 *   and the next one is invoiced (`invoice.paid`, `customer.subscription.updated`) or, when it was
 *   cancelled at the period's end, the subscription ends (`customer.subscription.deleted`). The customer
 *   portal (POST /v1/billing_portal/sessions) is a page with a cancel button.
 *
 * - Auto-recharge: the calls the kit makes for it too. POST /v1/customers; setup-mode sessions, whose page
 *   saves one of three test cards (one that pays, one that needs authentication, one that is declined) and
 *   delivers the completion; GET /v1/setup_intents/:id and /v1/payment_methods/:id, POST …/detach; and
 *   POST /v1/payment_intents off-session, answered as Stripe does for each card (succeeded, or a 402 card
 *   error) with the payment_intent.succeeded / payment_failed event after it. A simulated bank step
 *   (`POST …/authenticate`, what the demo's stand-in for Stripe.js calls) completes a payment that needs it.
 *
 * Sessions live in memory: they are gone after a restart, while the credits they bought stay in the database.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Router } from 'express';
import Stripe from 'stripe';

export interface StripeSimulatorOptions {
  /** The API key stripe-node must send (any `sk_test_…` string the demo makes up). */
  secretKey: string;
  /** Signs the events, as the `whsec_…` of a Stripe webhook endpoint does. */
  webhookSecret: string;
  /** Where events are delivered: the app's `…/api/stripe/webhook`. */
  webhookUrl: string;
  /** Public address of `pages`, without a trailing slash: sessions' `url` is `${checkoutUrl}/${id}`. */
  checkoutUrl: string;
  /** Recurring prices the demo's plans name: `price_…` → what the page shows and the invoice charges. */
  prices?: Record<string, { name: string; unitAmount: number; currency: string }>;
  log: (line: string) => void;
}

/** What a simulated month did to a user's subscription. */
export interface SimulatedMonth {
  /** The simulated clock after it: the new period's first second (or the end, when it ended). */
  now: Date;
  /** `renewed` (the next period is invoiced and paid), `ended` (it was cancelled at the period's end), or `none`. */
  outcome: 'renewed' | 'ended' | 'none';
}

export interface StripeSimulator {
  /** host, port and protocol for `new Stripe(secretKey, { ... })`. */
  clientOptions: { host: string; port: number; protocol: 'http' };
  /** The simulated hosted checkout pages; mount them where `checkoutUrl` points. */
  pages: Router;
  /** A month passes for this user's subscription (see above). */
  advanceMonth(userId: string): Promise<SimulatedMonth>;
  close(): Promise<void>;
}

/** A subscription as the simulator keeps it: what its events carry. */
interface SimSubscription {
  id: string;
  customer: string;
  price: string;
  status: 'active' | 'canceled';
  metadata: Record<string, string>;
  start: number;
  end: number;
  cancelAtPeriodEnd: boolean;
  endedAt: number | null;
}

interface LineItem {
  name: string;
  description: string | null;
  currency: string;
  unitAmount: number;
  quantity: number;
}

/** The fields of a Checkout Session that the kit reads, plus what the page shows. */
interface SimSession {
  id: string;
  object: 'checkout.session';
  mode: 'payment' | 'subscription' | 'setup';
  setup_intent: string | null;
  ui_mode: 'hosted';
  status: 'open' | 'complete' | 'expired';
  payment_status: 'unpaid' | 'paid';
  amount_subtotal: number;
  amount_total: number;
  currency: string;
  client_reference_id: string | null;
  customer_email: string | null;
  metadata: Record<string, string>;
  payment_intent: string | null;
  subscription: string | null;
  customer: string | null;
  client_secret: null;
  url: string | null;
  success_url: string;
  cancel_url: string | null;
  created: number;
  expires_at: number;
  livemode: false;
}

interface Stored {
  session: SimSession;
  lineItems: LineItem[];
  /** The last declined attempt, shown on the page. */
  declined: boolean;
  /** A subscription checkout: the price, and the metadata the subscription gets. */
  subscription?: { price: string; metadata: Record<string, string> };
}

/** A Stripe API error: `{ error: { type, code, message, param } }` with an HTTP status. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | undefined = undefined,
    readonly param: string | undefined = undefined,
    readonly type = 'invalid_request_error',
  ) {
    super(message);
  }
}

const KNOWN_PARAMS = new Set([
  'mode',
  'line_items',
  'success_url',
  'cancel_url',
  'client_reference_id',
  'customer_email',
  'metadata',
  'payment_intent_data',
  'ui_mode',
  'expand',
  'subscription_data',
  'customer',
  'currency',
  'setup_intent_data',
  'expires_at',
]);

/** The simulated month: 30 days. */
const PERIOD_SECONDS = 30 * 86_400;

/** The three test cards a setup page offers, and what an off-session payment with each meets. */
type CardBehaviour = 'pay' | 'authenticate' | 'decline';
const CARDS: Record<CardBehaviour, { last4: string; label: string }> = {
  pay: { last4: '4242', label: 'Test card that pays' },
  authenticate: { last4: '3184', label: 'Test card that needs authentication (3-D Secure)' },
  decline: { last4: '0002', label: 'Test card that is declined' },
};

interface SimPaymentMethod {
  id: string;
  object: 'payment_method';
  type: 'card';
  customer: string | null;
  card: { brand: string; last4: string; exp_month: number; exp_year: number };
  behaviour: CardBehaviour;
}

interface SimPaymentIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  currency: string;
  customer: string | null;
  payment_method: string;
  metadata: Record<string, string>;
  status: 'succeeded' | 'requires_action' | 'requires_payment_method' | 'canceled';
  client_secret: string;
  livemode: false;
  created: number;
  last_payment_error: { code: string; decline_code?: string; message: string } | null;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;
const now = () => Math.floor(Date.now() / 1000);

export async function startStripeSimulator(options: StripeSimulatorOptions): Promise<StripeSimulator> {
  const { log } = options;
  const sessions = new Map<string, Stored>();
  /** Stripe answers a repeated Idempotency-Key with the first answer (and refuses other parameters). */
  const idempotent = new Map<string, { paramsHash: string; sessionId: string }>();
  const retries = new Set<NodeJS.Timeout>();
  const subscriptions = new Map<string, SimSubscription>();
  const portals = new Map<string, { customer: string; returnUrl: string }>();
  // Only for signing events (generateTestHeaderString); this client never makes a request.
  const signer = new Stripe(options.secretKey);

  function lookup(sessionId: string): Stored | undefined {
    const stored = sessions.get(sessionId);
    if (stored && stored.session.status === 'open' && stored.session.expires_at <= now()) {
      stored.session.status = 'expired';
      stored.session.url = null;
    }
    return stored;
  }

  function createSession(body: string, idempotencyKey: string | undefined): { stored: Stored; replayed: boolean } {
    const params = parseForm(body);
    const paramsHash = createHash('sha256').update(body).digest('hex');
    if (idempotencyKey) {
      const previous = idempotent.get(idempotencyKey);
      if (previous) {
        if (previous.paramsHash !== paramsHash) {
          throw new ApiError(400, `Keys for idempotent requests can only be used with the same parameters they were first used with.`, 'idempotency_key_in_use', undefined, 'idempotency_error');
        }
        const stored = sessions.get(previous.sessionId);
        if (stored) return { stored, replayed: true };
      }
    }
    for (const key of Object.keys(params)) {
      if (!KNOWN_PARAMS.has(key)) {
        throw new ApiError(400, `Received unknown parameter: ${key} (the demo's Stripe simulator implements the parameters credit-kit sends).`, 'parameter_unknown', key);
      }
    }
    const mode = text(params, 'mode');
    if (mode !== 'payment' && mode !== 'subscription' && mode !== 'setup') {
      throw new ApiError(400, 'The simulator supports mode=payment, mode=subscription and mode=setup.', 'parameter_invalid_string', 'mode');
    }
    const uiMode = text(params, 'ui_mode') ?? 'hosted';
    if (uiMode !== 'hosted' && uiMode !== 'hosted_page') {
      throw new ApiError(400, `The demo's Stripe simulator serves hosted Checkout only, not ui_mode=${uiMode}; set STRIPE_SECRET_KEY to use Stripe's test mode.`, 'parameter_invalid_string', 'ui_mode');
    }
    const success = requiredUrl(params, 'success_url');
    const cancel = optionalUrl(params, 'cancel_url');
    if (mode === 'setup') return { stored: setupSession(params, success, cancel, paramsHash, idempotencyKey), replayed: false };

    const items = list(params, 'line_items');
    if (items.length === 0) throw new ApiError(400, 'line_items must contain at least one item.', 'parameter_missing', 'line_items');
    let subscription: Stored['subscription'];
    if (mode === 'subscription') {
      const price = items.length === 1 ? text(items[0]!, 'price') : undefined;
      const known = price ? options.prices?.[price] : undefined;
      if (!price || !known) throw new ApiError(400, `No such price: '${price ?? ''}' (the simulator knows ${Object.keys(options.prices ?? {}).join(', ') || 'none'}).`, 'resource_missing', 'line_items[0][price]');
      const data = params.subscription_data;
      subscription = { price, metadata: typeof data === 'object' ? strings(data, 'metadata') : {} };
      items[0] = { price_data: { currency: known.currency, unit_amount: String(known.unitAmount), product_data: { name: known.name, description: 'Billed every 30 days (simulated)' } }, quantity: '1' };
    }
    const lineItems = items.map((item, i): LineItem => {
      const at = `line_items[${i}]`;
      if (text(item, 'price') !== undefined) throw new ApiError(400, 'The simulator supports price_data, not Price ids.', 'parameter_invalid_string', `${at}[price]`);
      const priceData = object(item, 'price_data', `${at}[price_data]`);
      const product = object(priceData, 'product_data', `${at}[price_data][product_data]`);
      const name = text(product, 'name');
      if (!name) throw new ApiError(400, `Missing required param: ${at}[price_data][product_data][name].`, 'parameter_missing', `${at}[price_data][product_data][name]`);
      const currency = text(priceData, 'currency') ?? '';
      if (!/^[a-z]{3}$/.test(currency)) throw new ApiError(400, `Invalid currency: ${currency}.`, 'parameter_invalid_string', `${at}[price_data][currency]`);
      return {
        name,
        description: text(product, 'description') ?? null,
        currency,
        unitAmount: integer(priceData, 'unit_amount', `${at}[price_data][unit_amount]`, 0),
        quantity: integer(item, 'quantity', `${at}[quantity]`, 1),
      };
    });
    const currency = lineItems[0]!.currency;
    if (lineItems.some((l) => l.currency !== currency)) throw new ApiError(400, 'All line items must use the same currency.', 'parameter_invalid_string', 'line_items');
    const total = lineItems.reduce((sum, l) => sum + l.unitAmount * l.quantity, 0);
    if (total > 99_999_999) throw new ApiError(400, 'The total is above the largest amount Stripe charges.', 'amount_too_large');

    const sessionId = id('cs_test_sim');
    const created = now();
    const session: SimSession = {
      id: sessionId,
      object: 'checkout.session',
      mode: mode,
      setup_intent: null,
      ui_mode: 'hosted',
      status: 'open',
      payment_status: 'unpaid',
      amount_subtotal: total,
      amount_total: total,
      currency,
      client_reference_id: text(params, 'client_reference_id') ?? null,
      customer_email: text(params, 'customer_email') ?? null,
      metadata: strings(params, 'metadata'),
      payment_intent: null,
      subscription: null,
      customer: text(params, 'customer') ?? null,
      client_secret: null,
      url: `${options.checkoutUrl}/${sessionId}`,
      success_url: success,
      cancel_url: cancel ?? null,
      created,
      expires_at: Number(text(params, 'expires_at') ?? created + 24 * 60 * 60),
      livemode: false,
    };
    const stored: Stored = { session, lineItems, declined: false, ...(subscription ? { subscription } : {}) };
    sessions.set(sessionId, stored);
    if (idempotencyKey) idempotent.set(idempotencyKey, { paramsHash, sessionId });
    return { stored, replayed: false };
  }

  // ---- auto-recharge: customers, saved cards, off-session payments ----------------------------------------

  const customers = new Map<string, { id: string; object: 'customer'; metadata: Record<string, string> }>();
  const paymentMethods = new Map<string, SimPaymentMethod>();
  const setupIntents = new Map<string, { id: string; object: 'setup_intent'; customer: string | null; payment_method: string; status: 'succeeded' }>();
  const paymentIntents = new Map<string, SimPaymentIntent>();
  /** A repeated Idempotency-Key gets the first answer again, status and body. */
  const replies = new Map<string, { paramsHash: string; status: number; body: unknown }>();

  function setupSession(params: ReturnType<typeof parseForm>, success: string, cancel: string | undefined, paramsHash: string, key: string | undefined): Stored {
    const customer = text(params, 'customer');
    if (!customer || !customers.has(customer)) throw new ApiError(400, `No such customer: '${customer ?? ''}'`, 'resource_missing', 'customer');
    const sessionId = id('cs_test_sim');
    const created = now();
    const session: SimSession = {
      id: sessionId,
      object: 'checkout.session',
      mode: 'setup',
      customer,
      subscription: null,
      setup_intent: null,
      ui_mode: 'hosted',
      status: 'open',
      payment_status: 'unpaid',
      amount_subtotal: 0,
      amount_total: 0,
      currency: text(params, 'currency') ?? 'usd',
      client_reference_id: text(params, 'client_reference_id') ?? null,
      customer_email: null,
      metadata: strings(params, 'metadata'),
      payment_intent: null,
      client_secret: null,
      url: `${options.checkoutUrl}/${sessionId}`,
      success_url: success,
      cancel_url: cancel ?? null,
      created,
      expires_at: created + 24 * 60 * 60,
      livemode: false,
    };
    const stored: Stored = { session, lineItems: [], declined: false };
    sessions.set(sessionId, stored);
    if (key) idempotent.set(key, { paramsHash, sessionId });
    return stored;
  }

  /** The card chosen on a setup page: saved for the session's customer, the completion delivered. */
  async function saveCard(stored: Stored, behaviour: CardBehaviour): Promise<void> {
    const s = stored.session;
    const pm: SimPaymentMethod = {
      id: id('pm_sim'),
      object: 'payment_method',
      type: 'card',
      customer: s.customer,
      card: { brand: 'visa', last4: CARDS[behaviour].last4, exp_month: 12, exp_year: new Date().getUTCFullYear() + 3 },
      behaviour,
    };
    paymentMethods.set(pm.id, pm);
    const si = { id: id('seti_sim'), object: 'setup_intent' as const, customer: s.customer, payment_method: pm.id, status: 'succeeded' as const };
    setupIntents.set(si.id, si);
    Object.assign(s, { status: 'complete', setup_intent: si.id, url: null });
    log(`${s.id}: saved card •••• ${pm.card.last4} (${CARDS[behaviour].label.toLowerCase()}) for ${s.customer}`);
    await deliver(eventFor('checkout.session.completed', s), 1);
  }

  function publicPm(pm: SimPaymentMethod): Omit<SimPaymentMethod, 'behaviour'> {
    const { behaviour: _b, ...rest } = pm;
    return rest;
  }

  /** An off-session, confirmed payment: what Stripe answers for the card, and the event after it. */
  function createPaymentIntent(params: ReturnType<typeof parseForm>): { status: number; body: unknown; event?: Record<string, unknown> } {
    const pmId = text(params, 'payment_method') ?? '';
    const pm = paymentMethods.get(pmId);
    if (!pm) throw new ApiError(400, `No such PaymentMethod: '${pmId}'`, 'resource_missing', 'payment_method');
    if (text(params, 'off_session') !== 'true' || text(params, 'confirm') !== 'true') {
      throw new ApiError(400, 'The simulator takes off-session, confirmed payments only (off_session=true, confirm=true).', 'parameter_invalid_string', 'off_session');
    }
    const customer = text(params, 'customer') ?? null;
    if (customer !== pm.customer) throw new ApiError(400, 'The payment method does not belong to this customer.', 'payment_method_invalid_parameter', 'payment_method');
    const piId = id('pi_sim');
    const pi: SimPaymentIntent = {
      id: piId,
      object: 'payment_intent',
      amount: integer(params, 'amount', 'amount', 1),
      currency: text(params, 'currency') ?? 'usd',
      customer,
      payment_method: pm.id,
      metadata: strings(params, 'metadata'),
      status: pm.behaviour === 'pay' ? 'succeeded' : pm.behaviour === 'authenticate' ? 'requires_action' : 'requires_payment_method',
      client_secret: `${piId}_secret_${randomBytes(8).toString('hex')}`,
      livemode: false,
      created: now(),
      last_payment_error:
        pm.behaviour === 'pay'
          ? null
          : pm.behaviour === 'authenticate'
            ? { code: 'authentication_required', message: 'This payment requires authentication by the card holder.' }
            : { code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
    };
    paymentIntents.set(pi.id, pi);
    log(`POST /v1/payment_intents → ${pi.id}: ${money(pi.amount, pi.currency)} off-session with •••• ${pm.card.last4}: ${pi.status}`);
    if (pm.behaviour === 'pay') return { status: 200, body: pi, event: piEvent('payment_intent.succeeded', pi) };
    const e = pi.last_payment_error!;
    return {
      status: 402,
      body: { error: { type: 'card_error', code: e.code, ...(e.decline_code ? { decline_code: e.decline_code } : {}), message: e.message, payment_intent: pi } },
      event: piEvent('payment_intent.payment_failed', pi),
    };
  }

  function piEvent(type: string, pi: SimPaymentIntent): Record<string, unknown> {
    return { ...eventFor(type, pi as unknown as SimSession), data: { object: structuredClone(pi) } };
  }

  // ---- the API, for stripe-node -----------------------------------------------------------------------

  const api = createServer((req, res) => {
    void handleApi(req, res).catch((err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(500, 'The simulator failed: ' + String(err), undefined, undefined, 'api_error');
      sendJson(res, e.status, { error: { type: e.type, message: e.message, ...(e.code ? { code: e.code } : {}), ...(e.param ? { param: e.param } : {}) } });
    });
  });

  async function handleApi(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://simulator').pathname;
    if (req.headers.authorization !== `Bearer ${options.secretKey}`) {
      throw new ApiError(401, 'Invalid API Key provided to the Stripe simulator.', 'api_key_invalid', undefined, 'invalid_request_error');
    }
    if (req.method === 'POST' && path === '/v1/checkout/sessions') {
      const body = await readBody(req, 64 * 1024);
      const key = header(req, 'idempotency-key');
      const { stored, replayed } = createSession(body, key);
      const s = stored.session;
      if (!replayed) {
        log(`POST /v1/checkout/sessions → ${s.id}: ${describeItems(stored)} for ${s.client_reference_id ?? 'nobody'}`);
      }
      sendJson(res, 200, s, replayed ? { 'idempotent-replayed': 'true' } : {});
      return;
    }
    // A subscription checkout replaced by another plan's: Stripe expires an open one, refuses a complete one.
    const expire = /^\/v1\/checkout\/sessions\/([^/]+)\/expire$/.exec(path);
    if (req.method === 'POST' && expire) {
      const stored = lookup(decodeURIComponent(expire[1]!));
      if (!stored) throw new ApiError(404, `No such checkout.session: '${expire[1]}'`, 'resource_missing', 'id');
      if (stored.session.status !== 'open') throw new ApiError(400, `Only Checkout Sessions with a status of open can be expired; this one is ${stored.session.status}.`, 'checkout_session_not_open');
      stored.session.status = 'expired';
      stored.session.url = null;
      log(`POST /v1/checkout/sessions/${stored.session.id}/expire`);
      sendJson(res, 200, stored.session);
      return;
    }
    const price = /^\/v1\/prices\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && price) {
      const known = options.prices?.[decodeURIComponent(price[1]!)];
      if (!known) throw new ApiError(404, `No such price: '${price[1]}'`, 'resource_missing', 'id');
      sendJson(res, 200, { id: decodeURIComponent(price[1]!), object: 'price', active: true, currency: known.currency, unit_amount: known.unitAmount, type: 'recurring', recurring: { interval: 'day', interval_count: 30, usage_type: 'licensed' }, livemode: false });
      return;
    }
    if (req.method === 'POST' && path === '/v1/billing_portal/sessions') {
      const params = parseForm(await readBody(req, 16 * 1024));
      const customer = text(params, 'customer');
      if (!customer || ![...subscriptions.values()].some((x) => x.customer === customer)) throw new ApiError(400, `No such customer: '${customer ?? ''}'`, 'resource_missing', 'customer');
      const portalId = id('bps_sim');
      portals.set(portalId, { customer, returnUrl: requiredUrl(params, 'return_url') });
      log(`POST /v1/billing_portal/sessions → ${portalId} for ${customer}`);
      sendJson(res, 200, { id: portalId, object: 'billing_portal.session', customer, livemode: false, return_url: portals.get(portalId)!.returnUrl, url: `${options.checkoutUrl}/portal/${portalId}` });
      return;
    }
    if (req.method === 'POST' && (path === '/v1/customers' || path === '/v1/payment_intents')) {
      const body = await readBody(req, 64 * 1024);
      const key = header(req, 'idempotency-key');
      const paramsHash = createHash('sha256').update(`${path}\n${body}`).digest('hex');
      const previous = key ? replies.get(key) : undefined;
      if (previous) {
        if (previous.paramsHash !== paramsHash) {
          throw new ApiError(400, 'Keys for idempotent requests can only be used with the same parameters they were first used with.', 'idempotency_key_in_use', undefined, 'idempotency_error');
        }
        log(`POST ${path}: Idempotency-Key seen before, the first answer again (no second ${path === '/v1/customers' ? 'customer' : 'payment'})`);
        sendJson(res, previous.status, previous.body, { 'idempotent-replayed': 'true' });
        return;
      }
      const params = parseForm(body);
      let answer: { status: number; body: unknown; event?: Record<string, unknown> };
      if (path === '/v1/customers') {
        const customer = { id: id('cus_sim'), object: 'customer' as const, metadata: strings(params, 'metadata') };
        customers.set(customer.id, customer);
        log(`POST /v1/customers → ${customer.id} for ${customer.metadata.credit_kit_user_id ?? 'nobody'}`);
        answer = { status: 200, body: customer };
      } else {
        answer = createPaymentIntent(params);
      }
      if (key) replies.set(key, { paramsHash, status: answer.status, body: answer.body });
      sendJson(res, answer.status, answer.body);
      // As Stripe does: the event follows the answer.
      if (answer.event) setTimeout(() => void deliver(answer.event!, 1), 50);
      return;
    }
    const object = /^\/v1\/(setup_intents|payment_methods|payment_intents)\/([^/]+)(\/detach|\/cancel)?$/.exec(path);
    if (object && (req.method === 'GET' || (req.method === 'POST' && object[3]))) {
      const [, kind, rawId, detach] = object;
      const oid = decodeURIComponent(rawId!);
      if (kind === 'setup_intents' && !detach) {
        const si = setupIntents.get(oid);
        if (!si) throw new ApiError(404, `No such setupintent: '${oid}'`, 'resource_missing', 'id');
        const expand = new URL(req.url ?? '/', 'http://simulator').searchParams.getAll('expand[]');
        const pm = paymentMethods.get(si.payment_method)!;
        sendJson(res, 200, { ...si, payment_method: expand.includes('payment_method') ? publicPm(pm) : pm.id });
        return;
      }
      if (kind === 'payment_methods') {
        const pm = paymentMethods.get(oid);
        if (!pm) throw new ApiError(404, `No such PaymentMethod: '${oid}'`, 'resource_missing', 'id');
        if (detach) {
          pm.customer = null;
          log(`POST /v1/payment_methods/${pm.id}/detach: card •••• ${pm.card.last4} removed`);
        }
        sendJson(res, 200, publicPm(pm));
        return;
      }
      if (kind === 'payment_intents' && detach !== '/detach') {
        const pi = paymentIntents.get(oid);
        if (!pi) throw new ApiError(404, `No such payment_intent: '${oid}'`, 'resource_missing', 'id');
        if (detach === '/cancel') {
          // As Stripe does: a succeeded (or canceled) PaymentIntent cannot be canceled.
          if (pi.status === 'succeeded' || pi.status === 'canceled') {
            throw new ApiError(400, `This PaymentIntent could not be canceled because it has a status of ${pi.status}.`, 'payment_intent_unexpected_state');
          }
          pi.status = 'canceled';
          log(`POST /v1/payment_intents/${pi.id}/cancel: canceled`);
        }
        sendJson(res, 200, pi);
        return;
      }
    }
    const match = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && match) {
      const stored = lookup(decodeURIComponent(match[1]!));
      if (!stored) throw new ApiError(404, `No such checkout.session: '${match[1]}'`, 'resource_missing', 'id');
      sendJson(res, 200, stored.session);
      return;
    }
    throw new ApiError(
      404,
      `Unrecognized request URL (${req.method}: ${path}). The demo's Stripe simulator implements POST /v1/checkout/sessions, GET /v1/checkout/sessions/:id, POST /v1/checkout/sessions/:id/expire, GET /v1/prices/:id and POST /v1/billing_portal/sessions.`,
    );
  }

  // ---- webhook delivery, as Stripe does it ---------------------------------------------------------

  async function deliver(event: Record<string, unknown>, attempt: number): Promise<boolean> {
    const payload = JSON.stringify(event, null, 2);
    const signature = signer.webhooks.generateTestHeaderString({ payload, secret: options.webhookSecret });
    const label = `${String(event.type)} ${String(event.id)}`;
    try {
      const res = await fetch(options.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature, 'user-agent': 'Stripe/1.0 (credit-kit demo simulator)' },
        body: payload,
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      log(`webhook ${label} → ${options.webhookUrl} answered ${res.status}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
      if (res.ok) return true;
    } catch (err) {
      log(`webhook ${label} → ${options.webhookUrl} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    // Stripe retries for days with backoff; the simulator tries a few more times, a few seconds apart.
    if (attempt < 4) {
      const timer = setTimeout(() => {
        retries.delete(timer);
        void deliver(event, attempt + 1);
      }, 2_000 * attempt);
      retries.add(timer);
    }
    return false;
  }

  /** Events of one moment in order; each later one a second newer, so "newest wins" reads them right. */
  let lastCreated = 0;
  function eventFor(type: string, object: unknown): Record<string, unknown> {
    lastCreated = Math.max(now(), lastCreated + 1);
    return {
      id: id('evt_sim'),
      object: 'event',
      api_version: Stripe.API_VERSION,
      created: lastCreated,
      data: { object: structuredClone(object) },
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
    };
  }

  // ---- subscriptions ----------------------------------------------------------------------------------

  function subscriptionObject(sub: SimSubscription): Record<string, unknown> {
    return {
      id: sub.id,
      object: 'subscription',
      livemode: false,
      customer: sub.customer,
      status: sub.status,
      cancel_at_period_end: sub.cancelAtPeriodEnd,
      canceled_at: sub.endedAt,
      ended_at: sub.endedAt,
      metadata: sub.metadata,
      items: { object: 'list', has_more: false, data: [{ id: `si_${sub.id.slice(4)}`, object: 'subscription_item', price: { id: sub.price, object: 'price' }, current_period_start: sub.start, current_period_end: sub.end }] },
    };
  }

  /** The paid invoice of the subscription's current period, with the payment that paid it. */
  function paidInvoice(sub: SimSubscription, billingReason: string): Record<string, unknown> {
    const price = options.prices![sub.price]!;
    const invoiceId = id('in_sim');
    return {
      id: invoiceId,
      object: 'invoice',
      livemode: false,
      status: 'paid',
      customer: sub.customer,
      currency: price.currency,
      amount_paid: price.unitAmount,
      billing_reason: billingReason,
      parent: { type: 'subscription_details', quote_details: null, subscription_details: { subscription: sub.id, metadata: sub.metadata } },
      lines: {
        object: 'list',
        has_more: false,
        data: [{ id: id('il_sim'), object: 'line_item', amount: price.unitAmount, currency: price.currency, period: { start: sub.start, end: sub.end }, pricing: { type: 'price_details', price_details: { price: sub.price, product: 'prod_sim' } } }],
      },
      payments: {
        object: 'list',
        has_more: false,
        data: [{ id: id('inpay_sim'), object: 'invoice_payment', invoice: invoiceId, is_default: true, status: 'paid', amount_paid: price.unitAmount, payment: { type: 'payment_intent', payment_intent: id('pi_sim') } }],
      },
    };
  }

  async function startSubscription(stored: Stored): Promise<void> {
    const s = stored.session;
    const start = now();
    const sub: SimSubscription = {
      id: id('sub_sim'),
      customer: s.customer ?? id('cus_sim'),
      price: stored.subscription!.price,
      status: 'active',
      metadata: stored.subscription!.metadata,
      start,
      end: start + PERIOD_SECONDS,
      cancelAtPeriodEnd: false,
      endedAt: null,
    };
    subscriptions.set(sub.id, sub);
    s.subscription = sub.id;
    s.customer = sub.customer;
    log(`${s.id}: subscription ${sub.id} started for ${sub.customer}, period ${day(sub.start)} to ${day(sub.end)}`);
    await deliver(eventFor('checkout.session.completed', s), 1);
    await deliver(eventFor('invoice.paid', paidInvoice(sub, 'subscription_create')), 1);
    await deliver(eventFor('customer.subscription.created', subscriptionObject(sub)), 1);
  }

  async function advanceMonth(userId: string): Promise<SimulatedMonth> {
    const sub = [...subscriptions.values()].find((x) => x.metadata.credit_kit_user_id === userId && x.status === 'active');
    if (!sub) return { now: new Date(), outcome: 'none' };
    if (sub.cancelAtPeriodEnd) {
      sub.status = 'canceled';
      sub.endedAt = sub.end;
      log(`a month passes: ${sub.id} was cancelled at the period's end; it ends ${day(sub.end)}`);
      await deliver(eventFor('customer.subscription.deleted', subscriptionObject(sub)), 1);
      return { now: new Date((sub.end + 1) * 1000), outcome: 'ended' };
    }
    sub.start = sub.end;
    sub.end = sub.start + PERIOD_SECONDS;
    log(`a month passes: ${sub.id} renews, period ${day(sub.start)} to ${day(sub.end)}`);
    await deliver(eventFor('invoice.paid', paidInvoice(sub, 'subscription_cycle')), 1);
    await deliver(eventFor('customer.subscription.updated', subscriptionObject(sub)), 1);
    return { now: new Date((sub.start + 1) * 1000), outcome: 'renewed' };
  }

  // ---- the hosted checkout page ------------------------------------------------------------------------

  const pages = express.Router();
  // The customer portal: the subscription and a button that cancels it at the period's end.
  pages.get('/portal/:id', (req, res) => {
    const portal = portals.get(req.params.id);
    const sub = portal && [...subscriptions.values()].find((x) => x.customer === portal.customer && x.status === 'active');
    if (!portal) return void res.status(404).type('html').send(page('Portal not found', '<p>No such portal session.</p>'));
    const plan = sub ? options.prices?.[sub.price] : undefined;
    const body = sub
      ? `<p><strong>${escape(plan?.name ?? sub.price)}</strong>, ${money(plan?.unitAmount ?? 0, plan?.currency ?? 'usd')} every 30 days.</p>
         <p>${sub.cancelAtPeriodEnd ? `Cancelled: it ends on ${day(sub.end)}.` : `Renews on ${day(sub.end)}.`}</p>
         ${sub.cancelAtPeriodEnd ? '' : `<form method="post" action="${escape(`${req.baseUrl}/portal/${req.params.id}/cancel`)}"><button type="submit" class="pay">Cancel plan</button></form>`}`
      : '<p>No active subscription.</p>';
    res.type('html').send(page('Manage billing', `<section class="payment"><h2>Manage billing (simulated portal)</h2>${body}<p><a class="back" href="${escape(portal.returnUrl)}">← Return to the demo</a></p></section>`));
  });
  pages.post('/portal/:id/cancel', async (req, res) => {
    const portal = portals.get(req.params.id);
    const sub = portal && [...subscriptions.values()].find((x) => x.customer === portal.customer && x.status === 'active');
    if (!portal || !sub) return void res.status(404).type('html').send(page('Portal not found', '<p>Nothing to cancel.</p>'));
    if (!sub.cancelAtPeriodEnd) {
      sub.cancelAtPeriodEnd = true;
      log(`${sub.id}: cancelled at the period's end (${day(sub.end)}) in the portal`);
      await deliver(eventFor('customer.subscription.updated', subscriptionObject(sub)), 1);
    }
    res.redirect(303, `${req.baseUrl}/portal/${req.params.id}`);
  });
  // The demo's stand-in for Stripe.js handleNextAction: the simulated bank approves the payment.
  pages.post('/authenticate', express.json({ limit: '2kb' }), (req, res) => {
    const secret: unknown = (req.body as { clientSecret?: unknown } | undefined)?.clientSecret;
    const pi = [...paymentIntents.values()].find((p) => p.client_secret === secret);
    if (!pi) {
      res.status(404).json({ error: { type: 'invalid_request_error', message: 'No payment with this client secret.' } });
      return;
    }
    if (pi.status === 'requires_action') {
      pi.status = 'succeeded';
      pi.last_payment_error = null;
      log(`${pi.id}: the card holder authenticated (simulated 3-D Secure); ${money(pi.amount, pi.currency)} paid`);
      setTimeout(() => void deliver(piEvent('payment_intent.succeeded', pi), 1), 50);
    }
    res.json({ paymentIntent: { id: pi.id, status: pi.status } });
  });
  pages.post('/:id/save', express.urlencoded({ extended: false, limit: '2kb' }), async (req, res) => {
    const stored = lookup(req.params.id);
    if (!stored || stored.session.mode !== 'setup') {
      res.status(404).type('html').send(page('Checkout not found', '<p>This card-saving session does not exist.</p>'));
      return;
    }
    const card: unknown = (req.body as Record<string, unknown> | undefined)?.card;
    if (stored.session.status === 'open' && (card === 'pay' || card === 'authenticate' || card === 'decline')) await saveCard(stored, card);
    res.redirect(303, successUrl(stored.session));
  });
  pages.get('/:id', (req, res) => {
    const stored = lookup(req.params.id);
    if (!stored) {
      res.status(404).type('html').send(page('Checkout not found', `<p>No checkout session ${escape(req.params.id)}. Sessions of the simulator last until the demo restarts.</p>`));
      return;
    }
    res.type('html').send(checkoutPage(stored, req.baseUrl));
  });
  pages.post('/:id/pay', express.urlencoded({ extended: false, limit: '2kb' }), async (req, res) => {
    const stored = lookup(req.params.id);
    if (!stored) {
      res.status(404).type('html').send(page('Checkout not found', '<p>This checkout session does not exist.</p>'));
      return;
    }
    const s = stored.session;
    if (s.status === 'complete') {
      res.redirect(303, successUrl(s)); // paid already: a second click lands where the first did
      return;
    }
    if (s.status !== 'open') {
      res.type('html').send(checkoutPage(stored, req.baseUrl));
      return;
    }
    const card: unknown = (req.body as Record<string, unknown> | undefined)?.card;
    if (card !== 'pay') {
      stored.declined = true;
      log(`${s.id}: card 4000 0000 0000 0002 declined (card_declined); nothing charged, no event sent`);
      res.status(402).type('html').send(checkoutPage(stored, req.baseUrl));
      return;
    }
    s.status = 'complete';
    s.payment_status = 'paid';
    s.payment_intent = s.mode === 'payment' ? id('pi_sim') : null;
    s.url = null;
    stored.declined = false;
    log(`${s.id}: paid ${money(s.amount_total, s.currency)} with card 4242 4242 4242 4242`);
    // Stripe does not hold the redirect for the webhook; the simulator waits for the first delivery
    // attempt so the demo's console reads in order. The success page confirms the payment either way.
    if (stored.subscription) await startSubscription(stored);
    else await deliver(eventFor('checkout.session.completed', s), 1);
    res.redirect(303, successUrl(s));
  });

  await new Promise<void>((resolve, reject) => {
    api.once('error', reject);
    api.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = api.address() as AddressInfo;

  return {
    clientOptions: { host: '127.0.0.1', port, protocol: 'http' },
    pages,
    advanceMonth,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of retries) clearTimeout(t);
        api.closeAllConnections();
        api.close(() => resolve());
      }),
  };
}

const successUrl = (s: SimSession) => s.success_url.replace('{CHECKOUT_SESSION_ID}', encodeURIComponent(s.id));

function describeItems(stored: Stored): string {
  const credits = stored.session.metadata.credit_kit_credits;
  return `${credits ? `${credits} credits, ` : ''}${money(stored.session.amount_total, stored.session.currency)}`;
}

const day = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 10);

function money(amount: number, currency: string): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() }).format(amount / 100);
}

// ---- form-encoded parameters, as stripe-node writes them: a[b][0][c]=v ---------------------------------

type FormValue = string | FormObject;
interface FormObject {
  [key: string]: FormValue;
}

export function parseForm(body: string): FormObject {
  const root: FormObject = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
    if (!m) throw new ApiError(400, `Invalid parameter name: ${key}`, 'parameter_invalid');
    const path = [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
    let node = root;
    for (let i = 0; i < path.length - 1; i++) {
      const seg = path[i]!;
      const next = node[seg] ?? {};
      if (typeof next === 'string') throw new ApiError(400, `Parameter ${key} conflicts with ${path.slice(0, i + 1).join('.')}.`, 'parameter_invalid', key);
      node[seg] = next;
      node = next;
    }
    const last = path[path.length - 1]!;
    if (typeof node[last] === 'object') throw new ApiError(400, `Parameter ${key} conflicts with a nested parameter.`, 'parameter_invalid', key);
    node[last] = value;
  }
  return root;
}

function text(o: FormObject, key: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ApiError(400, `Invalid ${key}: expected a string.`, 'parameter_invalid_string', key);
  return v;
}

function object(o: FormObject, key: string, param: string): FormObject {
  const v = o[key];
  if (v === undefined) throw new ApiError(400, `Missing required param: ${param}.`, 'parameter_missing', param);
  if (typeof v === 'string') throw new ApiError(400, `Invalid ${param}: expected an object.`, 'parameter_invalid', param);
  return v;
}

/** `a[0]=…&a[1]=…` arrives as { '0': …, '1': … }: read it as an array, in index order. */
function list(o: FormObject, key: string): FormObject[] {
  const v = o[key];
  if (v === undefined) return [];
  if (typeof v === 'string') throw new ApiError(400, `Invalid ${key}: expected an array.`, 'parameter_invalid', key);
  const keys = Object.keys(v);
  if (!keys.every((k, i) => k === String(i))) throw new ApiError(400, `Invalid array ${key}.`, 'parameter_invalid', key);
  return keys.map((k) => object(v, k, `${key}[${k}]`));
}

function strings(o: FormObject, key: string): Record<string, string> {
  const v = o[key];
  if (v === undefined) return {};
  if (typeof v === 'string') throw new ApiError(400, `Invalid ${key}: expected an object of strings.`, 'parameter_invalid', key);
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(v)) {
    if (typeof value !== 'string') throw new ApiError(400, `Invalid ${key}[${k}]: expected a string.`, 'parameter_invalid', `${key}[${k}]`);
    out[k] = value;
  }
  return out;
}

function integer(o: FormObject, key: string, param: string, min: number): number {
  const v = text(o, key);
  if (v === undefined) throw new ApiError(400, `Missing required param: ${param}.`, 'parameter_missing', param);
  if (!/^\d{1,15}$/.test(v) || Number(v) < min) throw new ApiError(400, `Invalid integer: ${v} for ${param}.`, 'parameter_invalid_integer', param);
  return Number(v);
}

function optionalUrl(o: FormObject, key: string): string | undefined {
  const v = text(o, key);
  if (v !== undefined && !/^https?:\/\/\S+$/.test(v)) throw new ApiError(400, `Not a valid URL: ${key}.`, 'url_invalid', key);
  return v;
}

function requiredUrl(o: FormObject, key: string): string {
  const v = optionalUrl(o, key);
  if (v === undefined) throw new ApiError(400, `Missing required param: ${key}.`, 'parameter_missing', key);
  return v;
}

// ---- HTTP plumbing ---------------------------------------------------------------------------------------

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new ApiError(413, 'The request body is too large.'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': id('req_sim'), ...headers });
  res.end(JSON.stringify(body));
}

// ---- HTML ------------------------------------------------------------------------------------------------

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function setupPage(stored: Stored, base: string): string {
  const s = stored.session;
  const form =
    s.status === 'open'
      ? `<form method="post" action="${escape(`${base}/${s.id}/save`)}" onsubmit="this.querySelector('button').disabled = true">
        <fieldset>
          <legend>Card to save for automatic top-ups (test cards only; nothing is charged)</legend>
          ${(Object.keys(CARDS) as CardBehaviour[])
            .map(
              (k, i) => `<label class="card"><input type="radio" name="card" value="${k}" ${i === 0 ? 'checked' : ''}>
            <span><strong>Visa •••• ${CARDS[k].last4}</strong><br><span class="muted">${escape(CARDS[k].label)}</span></span></label>`,
            )
            .join('')}
        </fieldset>
        <button type="submit" class="pay">Save card</button>
      </form>`
      : `<p class="ok" role="status">This card is saved.</p><a class="pay" href="${escape(successUrl(s))}">Return to the demo</a>`;
  return page(
    'Save a card',
    `<div class="layout">
      <section class="summary" aria-label="What this is">
        ${s.cancel_url && s.status === 'open' ? `<a class="back" href="${escape(s.cancel_url)}">← Cancel and go back</a>` : ''}
        <p class="merchant">credit-kit demo</p>
        <p class="amount">Save a card</p>
        <p class="muted">For automatic top-ups: the app charges it when your balance falls below the threshold you choose.</p>
      </section>
      <section class="payment" aria-label="Card">
        <h2>Card details</h2>
        ${form}
        <p class="muted small">Session ${escape(s.id)}</p>
      </section>
    </div>`,
  );
}

function checkoutPage(stored: Stored, base: string): string {
  const s = stored.session;
  if (s.mode === 'setup') return setupPage(stored, base);
  const rows = stored.lineItems
    .map(
      (l) => `<tr>
        <td><strong>${escape(l.name)}</strong>${l.description ? `<br><span class="muted">${escape(l.description)}</span>` : ''}
          ${l.quantity > 1 ? `<br><span class="muted">Qty ${l.quantity} × ${money(l.unitAmount, l.currency)}</span>` : ''}</td>
        <td class="num">${money(l.unitAmount * l.quantity, l.currency)}</td>
      </tr>`,
    )
    .join('');
  const total = money(s.amount_total, s.currency);
  let form: string;
  if (s.status === 'complete') {
    form = `<p class="ok" role="status">This checkout is paid.</p><a class="pay" href="${escape(successUrl(s))}">Return to the demo</a>`;
  } else if (s.status === 'expired') {
    form = `<p class="declined" role="alert">This checkout expired.</p>`;
  } else {
    form = `
      <form method="post" action="${escape(`${base}/${s.id}/pay`)}" onsubmit="this.querySelector('button').disabled = true">
        <fieldset>
          <legend>Card (test cards only; nothing is charged)</legend>
          <label class="card"><input type="radio" name="card" value="pay" ${stored.declined ? '' : 'checked'}>
            <span><strong>Visa •••• 4242</strong><br><span class="muted">Test card that pays</span></span></label>
          <label class="card"><input type="radio" name="card" value="decline" ${stored.declined ? 'checked' : ''}>
            <span><strong>Visa •••• 0002</strong><br><span class="muted">Test card that is declined</span></span></label>
        </fieldset>
        ${stored.declined ? '<p class="declined" role="alert">Your card was declined. Nothing was charged; try another card.</p>' : ''}
        <button type="submit" class="pay">Pay ${total}</button>
      </form>`;
  }
  const back = s.cancel_url && s.status === 'open' ? `<a class="back" href="${escape(s.cancel_url)}">← Cancel and go back</a>` : '';
  return page(
    `Pay ${total}`,
    `<div class="layout">
      <section class="summary" aria-label="Order summary">
        ${back}
        <p class="merchant">credit-kit demo</p>
        <p class="muted">Pay</p>
        <p class="amount">${total}</p>
        <table>${rows}<tr class="total"><td>Total due</td><td class="num">${total}</td></tr></table>
      </section>
      <section class="payment" aria-label="Payment">
        <h2>Pay with card</h2>
        ${form}
        <p class="muted small">Session ${escape(s.id)}</p>
      </section>
    </div>`,
  );
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)} · Simulated Stripe Checkout</title><link rel="icon" href="data:,">
<style>
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1f36; background: #fff; }
  .banner { margin: 0; background: #fff4d6; border-bottom: 1px solid #f0c36d; color: #6b4b00; padding: 0.6rem 1rem; text-align: center; font-size: 0.95rem; }
  .layout { display: grid; grid-template-columns: 1fr 1fr; min-height: calc(100vh - 3rem); }
  .summary { background: #f6f9fc; padding: 3rem 3rem 2rem max(2rem, calc(50vw - 28rem)); }
  .payment { padding: 3rem max(2rem, calc(50vw - 28rem)) 2rem 3rem; box-shadow: -1px 0 0 #e3e8ee; }
  .merchant { font-weight: 600; margin: 1.5rem 0 0.25rem; }
  .amount { font-size: 2.25rem; font-weight: 600; margin: 0 0 1.5rem; }
  .muted { color: #697386; } .small { font-size: 0.8rem; margin-top: 2rem; }
  table { width: 100%; border-collapse: collapse; } td { padding: 0.6rem 0; vertical-align: top; border-bottom: 1px solid #e3e8ee; }
  .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } .total td { font-weight: 600; border: 0; }
  h2 { font-size: 1.1rem; margin: 0 0 1rem; }
  fieldset { border: 0; padding: 0; margin: 0 0 1rem; } legend { font-size: 0.9rem; color: #697386; margin-bottom: 0.5rem; }
  .card { display: flex; gap: 0.75rem; align-items: flex-start; padding: 0.75rem 1rem; border: 1px solid #e3e8ee; border-radius: 6px; margin-bottom: 0.5rem; cursor: pointer; }
  .card:has(input:checked) { border-color: #635bff; box-shadow: 0 0 0 1px #635bff; }
  .pay { display: block; width: 100%; text-align: center; padding: 0.8rem; border: 0; border-radius: 6px; background: #635bff; color: #fff; font: inherit; font-weight: 600; cursor: pointer; text-decoration: none; }
  .pay:disabled { opacity: 0.6; }
  .declined { color: #c0123c; background: #fff0f3; padding: 0.6rem 0.8rem; border-radius: 6px; }
  .ok { color: #0e6245; }
  .back { color: #697386; text-decoration: none; font-size: 0.95rem; }
  @media (max-width: 720px) { .layout { grid-template-columns: 1fr; } .summary, .payment { padding: 1.5rem; } }
</style></head>
<body>
<p class="banner" role="note"><strong>Simulated Stripe Checkout.</strong> This page stands in for Stripe's hosted checkout so the demo runs offline: no card is charged and no data leaves this machine. Set STRIPE_SECRET_KEY to use Stripe's test mode instead.</p>
${body}
</body></html>`;
}
