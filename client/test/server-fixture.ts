/**
 * The real server the client tests talk to, run as a child process (`node -r tsx/cjs`) because mongoose
 * does not run well inside jsdom: an Express app with credit-kit/server's router at /api, the embedded
 * database (MONGODB_URI, a fresh database per process) and stripe-mock (STRIPE_MOCK_URL), exactly as
 * server/test/helpers.ts wires them.
 *
 * stripe-mock keeps no state: emulateCheckoutState() below lays what Stripe would remember over its answers.
 * Sign-in stand-in: the user id comes from the `x-test-user` header or the `ck_user` cookie.
 * Test-only routes under /test: grant credits, count checkout POSTs, complete a checkout as the customer
 * would on Stripe's page, and a route that always fails with 500.
 * Prints `LISTENING <url>` on stdout once ready.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import express, { type Request, type RequestHandler } from 'express';
import mongoose from 'mongoose';
import Stripe from 'stripe';
import { BALANCE_HEADERS, createCredits } from '../../server';
import { stripeMockClient } from '../../tools/stripe-mock-client';

/** The jsdom document's origin (jest's default testEnvironmentOptions.url is http://localhost/). */
const ALLOWED_ORIGIN = process.env.CK_FIXTURE_ORIGIN ?? 'http://localhost';

function userOf(req: Request): string | null {
  const header = req.get('x-test-user');
  if (header) return header;
  const cookie = /(?:^|;\s*)ck_user=([^;]+)/.exec(req.get('cookie') ?? '');
  return cookie?.[1] ? decodeURIComponent(cookie[1]) : null;
}

const cors: RequestHandler = (req, res, next) => {
  if (req.get('origin') === ALLOWED_ORIGIN) {
    res.set({
      'Access-Control-Allow-Origin': ALLOWED_ORIGIN,
      'Access-Control-Allow-Credentials': 'true',
      'Access-Control-Allow-Headers': 'content-type, idempotency-key, x-test-user',
      'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE',
      // What the kit's fetch helper reads of a guarded answer, for a browser on another origin.
      'Access-Control-Expose-Headers': BALANCE_HEADERS.join(', '),
      Vary: 'Origin',
    });
  }
  if (req.method === 'OPTIONS') {
    res.sendStatus(204);
    return;
  }
  next();
};

/** This fixture's own origin, once it listens (the auto-recharge test routes call the kit's routes through HTTP). */
let self = (): string => {
  throw new Error('not listening yet');
};

async function main(): Promise<void> {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('MONGODB_URI is not set: start this fixture from a jest run, whose global setup starts the database.');

  const connection = mongoose.createConnection(uri, {
    dbName: `ck_client_${randomUUID().replace(/-/g, '').slice(0, 12)}`,
    serverSelectionTimeoutMS: 2000,
  });
  await connection.asPromise();

  const stripe = stripeMockClient();
  const payments = emulateCheckoutState(stripe);

  const credits = createCredits({
    connection,
    getUserId: userOf,
    stripe,
    webhookSecret: 'whsec_test',
    publicUrl: 'http://localhost:3000',
    pricing: { bundles: [{ id: 'starter', credits: 100, price: 900, name: 'Starter pack' }] },
    costs: { summarize: { credits: 5, label: 'Summarize' }, chat: { metered: true, reserve: 20, label: 'Chat' } },
    plans: { pro: { price: 'price_pro', credits: 1000, label: 'Pro', rollover: { max: 200 } }, team: { price: 'price_team', credits: 5000, label: 'Team' } },
    autoRecharge: { monthlyCap: 1000, cooldownMs: 0 },
  });
  await credits.init();

  const checkoutPosts = new Map<string, number>();
  let port = 0;
  const app = express();
  app.use(cors);
  app.post('/api/stripe/checkout/credits', (req, _res, next) => {
    const user = userOf(req) ?? '';
    checkoutPosts.set(user, (checkoutPosts.get(user) ?? 0) + 1);
    next();
  });
  app.use('/api', credits.router());

  // A guarded app route, as an AI app would have.
  app.post('/api/ai', credits.requireCredits(10), (req, res) => {
    res.json({ answer: 42, balance: req.credits?.balance });
  });
  // Named costs: a fixed one, and a metered one that settles `?used=` credits, or fails with `?fail=1`.
  app.post('/api/summarize', credits.requireCredits('summarize'), (_req, res) => {
    res.json({ summary: 'short' });
  });
  app.post('/api/chat', credits.requireCredits('chat', async (req, res) => {
    if (req.query.fail) return void res.status(500).json({ error: { code: 'internal', message: 'The model failed.' } });
    await req.credits!.settle(Number(req.query.used ?? 0));
    res.json({ text: 'hello' });
  }));

  // Test-only routes.
  app.post('/test/grant', express.json(), async (req, res) => {
    const { user, amount, expiresAt, source } = req.body as { user: string; amount: number; expiresAt?: string; source?: string };
    const terms = { ...(expiresAt ? { expiresAt } : {}), ...(source ? { source } : {}) };
    res.json(await credits.grantCredits(user, amount, { idempotencyKey: randomUUID(), reason: 'test grant', ...terms }));
  });
  app.get('/test/checkout-posts', (req, res) => {
    res.json({ count: checkoutPosts.get(String(req.query.user)) ?? 0 });
  });
  // What the customer does on Stripe's page: pays (or the payment is still processing).
  app.post('/test/pay/:id', express.json(), (req, res) => {
    const { outcome } = req.body as { outcome?: 'paid' | 'processing' };
    res.status(payments.complete(req.params.id, outcome ?? 'paid') ? 204 : 404).end();
  });
  // What Stripe sends once the customer has paid a subscription checkout: the session's completion and the
  // first invoice, signed as Stripe signs them, delivered to the kit's own webhook.
  app.post('/test/subscribed', express.json(), async (req, res) => {
    const { user } = req.body as { user: string };
    const [record] = await credits.store.findSubscriptions({ userId: user }, 1);
    if (!record) return void res.status(404).end();
    const subscription = `sub_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
    const customer = `cus_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
    const metadata = { credit_kit_user_id: user, credit_kit_plan: record.plan, credit_kit_subscription: record.id };
    const start = Math.floor(Date.now() / 1000);
    const send = async (type: string, object: unknown) => {
      const payload = JSON.stringify({ id: `evt_${randomUUID()}`, object: 'event', created: start, livemode: false, type, data: { object } });
      const signature = stripe.webhooks.generateTestHeaderString({ payload, secret: 'whsec_test' });
      const r = await fetch(`http://127.0.0.1:${port}/api/stripe/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body: payload });
      if (!r.ok) throw new Error(`webhook answered ${r.status}`);
    };
    await send('checkout.session.completed', { id: record.checkoutSessionId, object: 'checkout.session', mode: 'subscription', livemode: false, status: 'complete', payment_status: 'paid', customer, subscription, metadata });
    const price = record.plan === 'team' ? 'price_team' : 'price_pro';
    await send('invoice.paid', {
      id: `in_${randomUUID().slice(0, 8)}`, object: 'invoice', livemode: false, customer, amount_paid: 0, billing_reason: 'subscription_create',
      parent: { type: 'subscription_details', subscription_details: { subscription, metadata } },
      lines: { object: 'list', data: [{ amount: 0, period: { start, end: start + 30 * 86_400 }, pricing: { price_details: { price } } }] },
    });
    res.status(204).end();
  });
  // Auto-recharge: what Stripe does after the kit's requests, as signed events to the kit's own webhook.
  const deliver = async (type: string, object: unknown) => {
    const payload = JSON.stringify({ id: `evt_${randomUUID()}`, object: 'event', api_version: '2026-10-28', created: Math.floor(Date.now() / 1000), livemode: false, type, data: { object } });
    const signature = stripe.webhooks.generateTestHeaderString({ payload, secret: 'whsec_test' });
    const res = await fetch(`${self()}/api/stripe/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body: payload });
    if (!res.ok) throw new Error(`the webhook answered ${res.status}`);
  };
  // The card saved on Stripe's page: the kit's card route, then the signed completion of its setup session.
  app.post('/test/save-card', express.json(), async (req, res) => {
    const { user } = req.body as { user: string };
    const created = await fetch(`${self()}/api/credits/auto-recharge/card`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-test-user': user }, body: '{}' });
    const { id } = (await created.json()) as { id: string };
    const record = await credits.store.getRecharge(user);
    const metadata = { credit_kit_user_id: user, credit_kit_purpose: 'auto_recharge_card' };
    await deliver('checkout.session.completed', { id, object: 'checkout.session', mode: 'setup', status: 'complete', livemode: false, customer: record!.customerId, setup_intent: 'seti_123', metadata });
    res.status(204).end();
  });
  // A spend, and the journal moved (where the kit sees a crossing of the threshold).
  app.post('/test/spend', express.json(), async (req, res) => {
    const { user, amount } = req.body as { user: string; amount: number };
    await credits.deductCredits(user, amount);
    await credits.flush();
    res.status(204).end();
  });
  // Stripe's verdict on the user's current attempt: succeeded, or failed (`code`: authentication_required, card_declined).
  app.post('/test/recharge-outcome', express.json(), async (req, res) => {
    const { user, outcome, code } = req.body as { user: string; outcome: 'succeeded' | 'failed'; code?: string };
    const r = await credits.store.getRecharge(user);
    const a = r?.attempt;
    if (!a?.paymentIntentId) return void res.status(404).end();
    const metadata = { credit_kit_user_id: user, credit_kit_credits: String(a.credits), credit_kit_recharge_attempt: a.id };
    // As Stripe sends it: the PaymentIntent names the customer the kit created for the user (the kit checks it).
    const pi = { id: a.paymentIntentId, object: 'payment_intent', amount: a.amount, currency: a.currency, livemode: false, customer: r!.customerId, metadata };
    await (outcome === 'succeeded'
      ? deliver('payment_intent.succeeded', { ...pi, status: 'succeeded' })
      : deliver('payment_intent.payment_failed', { ...pi, status: 'requires_payment_method', last_payment_error: { code: code ?? 'card_declined' } }));
    await credits.flush();
    res.status(204).end();
  });
  app.use('/test/broken', (_req, res) => {
    res.status(500).json({ error: { code: 'internal', message: 'The server failed on purpose.' } });
  });

  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  port = (server.address() as AddressInfo).port;
  self = () => `http://127.0.0.1:${port}`;
  process.stdout.write(`LISTENING http://127.0.0.1:${port}\n`);

  const stop = async () => {
    server.closeAllConnections();
    server.close();
    await credits.flush();
    await connection.dropDatabase().catch(() => undefined);
    await connection.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  // The parent (a jest worker) going away closes stdin: stop then too, so no fixture is ever orphaned.
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
}

/**
 * stripe-mock is stateless: every session it creates is the same fixture with a fresh id, a null
 * client_secret (even for ui_mode embedded_page, where real Stripe always returns one) and, on retrieval,
 * no trace of what was created. This layer makes the Stripe client behave as Stripe does for the two
 * calls the kit makes: create answers with a client secret for embedded sessions, and retrieve answers
 * with what the kit wrote on the session (metadata, client_reference_id, amount) and with what happened
 * on Stripe's page, which a test sets through /test/pay/:id. Sessions not created here (an id made up
 * by a test) are answered by stripe-mock alone.
 */
function emulateCheckoutState(stripe: Stripe) {
  const sessions = stripe.checkout.sessions;
  const create = sessions.create.bind(sessions);
  const retrieve = sessions.retrieve.bind(sessions);
  const state = new Map<string, Partial<Stripe.Checkout.Session>>();

  sessions.create = (async (params: Stripe.Checkout.SessionCreateParams = {}, options?: Stripe.RequestOptions) => {
    const session = await create(params, options);
    if (params.ui_mode === 'embedded_page' && !session.client_secret) {
      session.client_secret = `${session.id}_secret_${randomUUID().replace(/-/g, '')}`;
    }
    const item = params.line_items?.[0];
    state.set(session.id, {
      // As Stripe stores it: strings only, empty values unset.
      metadata: Object.fromEntries(
        Object.entries(params.metadata ?? {}).flatMap(([k, v]) => (v === null || v === '' ? [] : [[k, String(v)]])),
      ),
      client_reference_id: params.client_reference_id ?? null,
      amount_total: (item?.price_data?.unit_amount ?? 0) * (item?.quantity ?? 1),
      currency: item?.price_data?.currency ?? 'usd',
      status: 'open',
      payment_status: 'unpaid',
    });
    return session;
  }) as typeof sessions.create;

  sessions.retrieve = (async (id: string, params?: Stripe.Checkout.SessionRetrieveParams, options?: Stripe.RequestOptions) => {
    const session = await retrieve(id, params, options);
    return Object.assign(session, state.get(id) ?? {});
  }) as typeof sessions.retrieve;

  return {
    complete(id: string, outcome: 'paid' | 'processing'): boolean {
      const s = state.get(id);
      if (!s) return false;
      Object.assign(s, { status: 'complete', payment_status: outcome === 'paid' ? 'paid' : 'unpaid' });
      return true;
    },
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`server-fixture failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
