/**
 * POST /api/stripe/webhook with events signed by stripe-node's own generateTestHeaderString: crediting
 * exactly once under duplicates, concurrency and reordering; refunds and disputes; forged deliveries.
 */
import express from 'express';
import { createCredits, type WebhookReport } from 'credit-kit/server';
import type Stripe from 'stripe';
import {
  audit,
  checkoutSession,
  connect,
  get,
  harness,
  headerUser,
  listen,
  recordedSession,
  signedDelivery,
  stripeMockClient,
  WEBHOOK_SECRET,
  type Harness,
} from './helpers';

let h: Harness;
const stripe = stripeMockClient();
const reports: WebhookReport[] = [];

beforeAll(async () => {
  h = await harness(() => undefined, {
    stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    onWebhook: (r) => reports.push(r),
  });
});
afterAll(() => h.close());

const bought = (user: string, credits: number, overrides: Record<string, unknown> = {}) => recordedSession(h.url, user, credits, overrides);

function deliver(event: { type: string; object: unknown; id?: string }, opts: Parameters<typeof signedDelivery>[2] = {}) {
  const { body, headers } = signedDelivery(stripe, event, opts);
  return fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers, body });
}

async function settled(user: string) {
  await h.credits.flush();
  const a = await audit(h.credits, user);
  expect(a.sum).toBe(a.balance);
  return a;
}

it('credits a paid checkout once when the same event is delivered 30 times concurrently', async () => {
  const session = await bought('w-buyer', 100);
  const event = { id: 'evt_same', type: 'checkout.session.completed', object: session };
  const responses = await Promise.all(Array.from({ length: 30 }, () => deliver(event)));
  expect(responses.map((r) => r.status)).toEqual(Array(30).fill(200));
  const bodies = await Promise.all(responses.map((r) => r.json()));
  expect(bodies.filter((b) => b.creditsAdded === 100)).toHaveLength(1);
  expect(await h.credits.getBalance('w-buyer')).toBe(100);
  // Sequential replays, and a new event id for the same session, change nothing either.
  for (let i = 0; i < 5; i++) expect((await deliver({ ...event, id: `evt_replay_${i}` })).status).toBe(200);
  const a = await settled('w-buyer');
  expect(a).toMatchObject({ balance: 100, kinds: { purchase: 1 } });
  const [entry] = (await h.credits.listTransactions('w-buyer')).transactions;
  expect(entry).toMatchObject({ kind: 'purchase', amount: 100, ref: { checkoutSessionId: session.id, paymentIntentId: session.payment_intent } });
});

it('credits once when the success page races the webhook', async () => {
  const session = await bought('w-race', 50);
  const results = await Promise.all([
    ...Array.from({ length: 5 }, () => deliver({ type: 'checkout.session.completed', object: session })),
    ...Array.from({ length: 5 }, () => h.credits.fulfillCheckoutSession(session as unknown as Stripe.Checkout.Session)),
  ]);
  expect(results).toHaveLength(10);
  expect((await settled('w-race')).balance).toBe(50);
});

it('waits for delayed payments: unpaid records, async success credits once, async failure credits nothing', async () => {
  const session = await bought('w-async', 40, { payment_status: 'unpaid' });
  const pending = await deliver({ type: 'checkout.session.completed', object: session });
  expect(await pending.json()).toMatchObject({ status: 'awaiting_payment', creditsAdded: 0 });
  expect(await h.credits.getBalance('w-async')).toBe(0);
  expect((await h.credits.store.getPurchase(session.id as string))?.status).toBe('awaiting_payment');

  const paid = { ...session, payment_status: 'paid' };
  for (let i = 0; i < 3; i++) await deliver({ type: 'checkout.session.async_payment_succeeded', object: paid });
  expect((await settled('w-async')).balance).toBe(40);

  const failing = await bought('w-async-fail', 40, { payment_status: 'unpaid' });
  await deliver({ type: 'checkout.session.completed', object: failing });
  for (let i = 0; i < 3; i++) {
    const res = await deliver({ type: 'checkout.session.async_payment_failed', object: failing });
    expect(await res.json()).toMatchObject({ status: 'failed', creditsAdded: 0 });
  }
  expect(await h.credits.getBalance('w-async-fail')).toBe(0);
  expect((await h.credits.store.getPurchase(failing.id as string))?.status).toBe('failed');
});

it('credits once when async success arrives before completed', async () => {
  const session = await bought('w-order', 30);
  await deliver({ type: 'checkout.session.async_payment_succeeded', object: session });
  await deliver({ type: 'checkout.session.completed', object: { ...session, payment_status: 'unpaid' } });
  await deliver({ type: 'checkout.session.completed', object: session });
  expect((await settled('w-order')).balance).toBe(30);
  expect((await h.credits.store.getPurchase(session.id as string))?.status).toBe('paid');
});

function charge(session: Record<string, unknown>, amountRefunded: number) {
  return {
    id: `ch_${(session.id as string).slice(8, 30)}`,
    object: 'charge',
    amount: session.amount_total,
    amount_refunded: amountRefunded,
    refunded: amountRefunded === session.amount_total,
    payment_intent: session.payment_intent,
  };
}

it('claws back refunds in proportion, each cumulative change once, replays changing nothing', async () => {
  const session = await bought('w-refund', 100); // $10.00
  await deliver({ type: 'checkout.session.completed', object: session });
  await h.credits.grantCredits('w-refund', 5, { idempotencyKey: 'other' });

  const partial = { type: 'charge.refunded', object: charge(session, 250) }; // 25%
  await Promise.all(Array.from({ length: 10 }, () => deliver(partial)));
  expect(await h.credits.getBalance('w-refund')).toBe(80);

  const full = { type: 'charge.refunded', object: charge(session, 1000) };
  await Promise.all([deliver(full), deliver(full), deliver(partial)]);
  await deliver(full);
  const a = await settled('w-refund');
  expect(a.balance).toBe(5);
  expect(a.kinds).toEqual({ purchase: 1, grant: 1, clawback: 2 });
});

it('lets a clawback take the balance below zero, and then refuses spending until topped up', async () => {
  const session = await bought('w-spent', 100);
  await deliver({ type: 'checkout.session.completed', object: session });
  expect(await h.credits.deductCredits('w-spent', 90)).toBe(true);
  await deliver({ type: 'charge.refunded', object: charge(session, 1000) });
  expect(await h.credits.getBalance('w-spent')).toBe(-90);
  expect(await h.credits.deductCredits('w-spent', 1)).toBe(false);
  await h.credits.grantCredits('w-spent', 91, { idempotencyKey: 'top-up' });
  expect(await h.credits.deductCredits('w-spent', 1)).toBe(true);
  expect((await settled('w-spent')).balance).toBe(0);
});

it('claws back a disputed purchase and gives it back when the dispute is won', async () => {
  const session = await bought('w-dispute', 60);
  await deliver({ type: 'checkout.session.completed', object: session });
  const dispute = { id: 'dp_test_1', object: 'dispute', payment_intent: session.payment_intent, status: 'needs_response', amount: 600 };
  await Promise.all(Array.from({ length: 5 }, () => deliver({ type: 'charge.dispute.created', object: dispute })));
  expect(await h.credits.getBalance('w-dispute')).toBe(0);
  const won = { ...dispute, status: 'won' };
  await Promise.all(Array.from({ length: 5 }, () => deliver({ type: 'charge.dispute.closed', object: won })));
  const a = await settled('w-dispute');
  expect(a.balance).toBe(60);
  expect(a.kinds).toEqual({ purchase: 1, clawback: 1, reversal: 1 });
});

it('refuses forged, foreign, stale, missing and tampered signatures with 400 and changes nothing', async () => {
  const session = await bought('w-forged', 1000);
  const recorded = await h.credits.store.getPurchase(session.id as string); // as the checkout route left it
  const event = { type: 'checkout.session.completed', object: session };
  const url = `${h.url}/api/stripe/webhook`;
  const good = signedDelivery(stripe, event);

  const attempts: Array<[string, RequestInit]> = [
    ['forged signature', { headers: { ...good.headers, 'stripe-signature': 't=1,v1=deadbeef' }, body: good.body }],
    ['another secret', signedRequest(signedDelivery(stripe, event, { secret: 'whsec_someone_else' }))],
    ['stale timestamp', signedRequest(signedDelivery(stripe, event, { timestamp: Math.floor(Date.now() / 1000) - 3600 }))],
    ['missing signature', { headers: { 'content-type': 'application/json' }, body: good.body }],
    [
      'credits changed after signing',
      { headers: good.headers, body: good.body.replace('"credit_kit_credits":"1000"', '"credit_kit_credits":"9999"') },
    ],
  ];
  for (const [what, init] of attempts) {
    const res = await fetch(url, { method: 'POST', ...init });
    expect([what, res.status]).toEqual([what, 400]);
    expect((await res.json()).error.code).toBe('invalid_signature');
  }
  expect(await h.credits.getBalance('w-forged')).toBe(0);
  expect(await h.credits.store.getPurchase(session.id as string)).toEqual(recorded);
  expect(recorded).toMatchObject({ status: 'open', granted: 0, creditedAt: null });
});

function signedRequest(d: { body: string; headers: Record<string, string> }): RequestInit {
  return { headers: d.headers, body: d.body };
}

it('acknowledges events it does not handle, and sessions it did not create', async () => {
  const other = await deliver({ type: 'customer.created', object: { id: 'cus_1', object: 'customer' } });
  expect(await other.json()).toMatchObject({ received: true, ignored: true });
  const foreign = await deliver({ type: 'checkout.session.completed', object: { ...checkoutSession('x', 1), metadata: {} } });
  expect(await foreign.json()).toMatchObject({ status: 'ignored', creditsAdded: 0 });
});

it('answers the success page only for the signed-in owner (stripe-mock sessions have no owner: 404)', async () => {
  const res = await get(`${h.url}/api/stripe/checkout/session/cs_test_a1b2c3`, 'w-buyer');
  expect(res.status).toBe(404);
  expect((await get(`${h.url}/api/stripe/checkout/session/not-a-session`, 'w-buyer')).status).toBe(400);
  expect((await get(`${h.url}/api/stripe/checkout/session/cs_test_a1b2c3`, null)).status).toBe(401);
});

it('tells onWebhook of each delivery once answered: the event and outcome, or why it was refused', async () => {
  reports.length = 0;
  const session = await bought('w-reported', 20);
  await deliver({ id: 'evt_reported', type: 'checkout.session.completed', object: session });
  const good = signedDelivery(stripe, { type: 'checkout.session.completed', object: session });
  await fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers: { ...good.headers, 'stripe-signature': 't=1,v1=00' }, body: good.body });
  expect(reports).toEqual([
    { status: 200, event: expect.objectContaining({ id: 'evt_reported', type: 'checkout.session.completed' }), outcome: { status: 'paid', creditsAdded: 20 } },
    { status: 400, error: { code: 'invalid_signature', message: expect.any(String) } },
  ]);
});

describe('an app that parses JSON before the router', () => {
  /** Delivers a signed purchase to an app whose global express.json() runs before the kit's router. */
  async function deliverToJsonFirstApp(user: string, keepRawBody: boolean) {
    const connection = await connect();
    const logged: string[] = [];
    const logger = (level: string, line: string) => void logged.push(`${level} ${line}`);
    const credits = createCredits({ connection, getUserId: headerUser, stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com', logger });
    const app = express();
    app.use(keepRawBody ? express.json({ verify: credits.keepRawBody }) : express.json());
    app.use('/api', credits.router());
    const server = await listen(app);
    try {
      const session = await recordedSession(server.url, user, 10);
      const { body, headers } = signedDelivery(stripe, { type: 'checkout.session.completed', object: session });
      const res = await fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers, body });
      await credits.flush();
      return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } }, balance: await credits.getBalance(user), logged };
    } finally {
      await server.close();
      await connection.close();
    }
  }

  it('refuses to verify a re-serialized body, saying how to mount it', async () => {
    const r = await deliverToJsonFirstApp('w-json', false);
    expect(r.status).toBe(500);
    expect(r.body.error).toMatchObject({ code: 'misconfigured', message: expect.stringMatching(/keepRawBody/) });
    expect(r.balance).toBe(0);
    // The app's mistake is logged once, as one line that says how to fix it.
    expect(r.logged).toEqual([expect.stringMatching(/^error \[credit-kit\] misconfigured \(POST \/api\/stripe\/webhook\): The webhook body was parsed before credit-kit could verify its signature\./)]);
  });

  it('verifies the original bytes with express.json({ verify: credits.keepRawBody })', async () => {
    const r = await deliverToJsonFirstApp('w-json2', true);
    expect(r.status).toBe(200);
    expect(r.balance).toBe(10);
    expect(r.logged).toEqual([]);
  });
});
