/**
 * One subscription checkout per user, atomically: concurrent subscribe requests, on one instance or two
 * sharing the database, create exactly one Stripe session (counted at the recording proxy in front of
 * stripe-mock) and all answer it; an expired or abandoned checkout frees the slot; a holder that died
 * between its two writes is taken over.
 */
import { randomUUID } from 'node:crypto';
import mongoose from 'mongoose';
import { harness, mongoUri, post, postWebhook, recordingStripe, WEBHOOK_SECRET, type Harness } from './helpers';
import { delivery, newSub, sessionCompleted } from './subscription-events';

let a: Harness;
let b: Harness;
let rec: Awaited<ReturnType<typeof recordingStripe>>;
let shared: mongoose.Connection;

const PLANS = {
  basic: { price: 'price_basic_monthly', credits: 100, label: 'Basic' },
  pro: { price: 'price_pro_monthly', credits: 300, label: 'Pro' },
};

beforeAll(async () => {
  rec = await recordingStripe();
  const options = { stripe: rec.stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com', plans: PLANS };
  a = await harness(() => undefined, options);
  // A second instance: its own connection (pool) to the same database.
  shared = mongoose.createConnection(mongoUri(), { dbName: a.connection.name, serverSelectionTimeoutMS: 2000 });
  await shared.asPromise();
  b = await harness(() => undefined, { ...options, connection: shared });
});
afterAll(async () => {
  await a.close();
  await b.close();
  await shared.close();
  await rec.close();
});
beforeEach(() => {
  rec.requests.length = 0;
});

const user = () => `u-${randomUUID()}`;
const sessionsCreated = (userId: string) =>
  rec.requests.filter((r) => r.method === 'POST' && r.path === '/v1/checkout/sessions' && r.form.get('client_reference_id') === userId);

async function subscribe(h: Harness, userId: string, plan: string) {
  const res = await post(`${h.url}/api/credits/subscribe`, userId, { plan });
  return { status: res.status, body: (await res.json()) as { id?: string; url?: string; plan?: string; error?: { message: string } } };
}

describe('one subscription checkout per user', () => {
  it('20 concurrent subscribe requests over two instances create one Stripe session, and all answer it', async () => {
    const u = user();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => subscribe(i % 2 ? a : b, u, 'basic')));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(201));
    expect(sessionsCreated(u)).toHaveLength(1);
    const ids = new Set(results.map((r) => r.body.id));
    expect(ids.size).toBe(1);
    const records = await a.credits.store.findSubscriptions({ userId: u }, 50);
    expect(records).toEqual([expect.objectContaining({ userId: u, plan: 'basic', status: 'checkout', slot: 0, checkoutSessionId: [...ids][0] })]);
    // Asked again later (a retried click, another tab): the same open session, still one at Stripe.
    expect((await subscribe(b, u, 'basic')).body.id).toBe([...ids][0]);
    expect(sessionsCreated(u)).toHaveLength(1);
  });

  it('20 concurrent requests for two plans: one session survives; the loser of each round is a 409 or the same session', async () => {
    const u = user();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => subscribe(i % 2 ? a : b, u, i % 4 < 2 ? 'basic' : 'pro')));
    expect(results.every((r) => r.status === 201 || r.status === 409)).toBe(true);
    const records = await a.credits.store.findSubscriptions({ userId: u }, 50);
    const open = records.filter((r) => r.status === 'checkout');
    expect(open).toHaveLength(1);
    // Every other session the kit created was expired at Stripe before the next slot was taken (two requests
    // may both expire the same one: stripe-mock keeps no state, Stripe would refuse the second), never the open one.
    const expired = new Set(rec.requests.flatMap((r) => (r.method === 'POST' ? (/^\/v1\/checkout\/sessions\/([^/]+)\/expire$/.exec(r.path)?.slice(1) ?? []) : [])));
    expect(sessionsCreated(u).length).toBe(records.length);
    expect(expired.has(open[0]!.checkoutSessionId!)).toBe(false);
    for (const r of records) {
      if (r.status === 'checkout') continue;
      expect(r.status).toBe('incomplete_expired');
      expect(expired.has(r.checkoutSessionId!)).toBe(true);
    }
  });

  it('another plan while a checkout is open expires that checkout at Stripe, then opens the new one', async () => {
    const u = user();
    const first = await subscribe(a, u, 'basic');
    rec.requests.length = 0;
    const second = await subscribe(b, u, 'pro');
    expect(second).toEqual({ status: 201, body: expect.objectContaining({ plan: 'pro' }) });
    expect(rec.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`POST /v1/checkout/sessions/${first.body.id!}/expire`, 'POST /v1/checkout/sessions']);
    const records = await a.credits.store.findSubscriptions({ userId: u }, 50);
    expect(records.map((r) => [r.plan, r.status, r.slot])).toEqual([
      ['pro', 'checkout', 1],
      ['basic', 'incomplete_expired', 0],
    ]);
  });

  it('a live subscription is a 409 and creates nothing', async () => {
    const u = user();
    const first = await subscribe(a, u, 'basic');
    const [record] = await a.credits.store.findSubscriptions({ userId: u }, 1);
    await deliverTo(a, delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(newSub(record!.id, u, 'basic', first.body.id!))));
    rec.requests.length = 0;
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => subscribe(i % 2 ? a : b, u, i % 3 ? 'pro' : 'basic')));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(409));
    expect(results[0]!.body.error!.message).toMatch(/already subscribe to the Basic plan/);
    expect(rec.requests).toHaveLength(0);
  });

  it('checkout.session.expired frees the slot: the next subscribe is a new session', async () => {
    const u = user();
    const first = await subscribe(a, u, 'basic');
    const [record] = await a.credits.store.findSubscriptions({ userId: u }, 1);
    const expired = { ...sessionCompleted(newSub(record!.id, u, 'basic', first.body.id!)), status: 'expired', payment_status: 'unpaid', subscription: null, customer: null };
    expect((await deliverTo(b, delivery(rec.stripe, 'checkout.session.expired', expired))).status).toBe(200);
    rec.requests.length = 0;
    const again = await subscribe(b, u, 'basic');
    expect(again.status).toBe(201);
    expect(sessionsCreated(u)).toHaveLength(1);
    expect((await a.credits.store.findSubscriptions({ userId: u }, 50)).map((r) => [r.status, r.slot])).toEqual([
      ['checkout', 1],
      ['incomplete_expired', 0],
    ]);
  });

  it("a checkout past the expires_at the kit set frees the slot, with no event", async () => {
    const u = user();
    await subscribe(a, u, 'basic');
    const sent = Number(sessionsCreated(u)[0]!.form.get('expires_at'));
    expect(sent).toBeGreaterThan(Date.now() / 1000 + 30 * 60);
    const [record] = await a.credits.store.findSubscriptions({ userId: u }, 1);
    expect(record!.checkoutExpiresAt).toBe(sent);
    expect(await a.credits.store.replaceSubscription({ ...record!, checkoutExpiresAt: Math.floor(Date.now() / 1000) - 1, version: record!.version + 1 })).toBe(true);
    rec.requests.length = 0;
    expect((await subscribe(b, u, 'basic')).status).toBe(201);
    expect(sessionsCreated(u)).toHaveLength(1);
    expect((await a.credits.store.findSubscriptions({ userId: u }, 50)).map((r) => r.slot)).toEqual([1, 0]);
  });

  it('a holder that died before recording its session is taken over with the same Stripe idempotency key', async () => {
    const u = user();
    await subscribe(a, u, 'basic');
    const [record] = await a.credits.store.findSubscriptions({ userId: u }, 1);
    const key = sessionsCreated(u)[0]!.headers['idempotency-key'];
    // As if the session's creation had not been recorded, 40 s ago.
    const dead = { ...record!, checkoutSessionId: null, checkoutUrl: null, livemode: null, createdAt: new Date(Date.now() - 40_000), version: record!.version + 1 };
    expect(await a.credits.store.replaceSubscription(dead)).toBe(true);
    rec.requests.length = 0;
    const res = await subscribe(b, u, 'basic');
    expect(res.status).toBe(201);
    expect(sessionsCreated(u).map((r) => r.headers['idempotency-key'])).toEqual([key]);
    expect(await a.credits.store.getSubscription(record!.id)).toEqual(expect.objectContaining({ checkoutSessionId: res.body.id, livemode: false }));
  });

  it('a young slot with no session yet is a 409 after the wait, creating nothing', async () => {
    const u = user();
    await subscribe(a, u, 'basic');
    const [record] = await a.credits.store.findSubscriptions({ userId: u }, 1);
    expect(await a.credits.store.replaceSubscription({ ...record!, checkoutSessionId: null, checkoutUrl: null, createdAt: new Date(), version: record!.version + 1 })).toBe(true);
    rec.requests.length = 0;
    const res = await subscribe(b, u, 'basic');
    expect(res.status).toBe(409);
    expect(res.body.error!.message).toMatch(/being created/);
    expect(rec.requests).toHaveLength(0);
  });
});

function deliverTo(h: Harness, d: { body: string; headers: Record<string, string> }) {
  return postWebhook(h.url, d);
}
