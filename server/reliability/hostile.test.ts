/**
 * Hostile input on every route, webhook forgeries and replays, the CSRF defence and per-user rate limits.
 * Every hostile request must get the right 4xx with a JSON error, reach no Stripe API and change nothing in
 * the database. The number of cases tried is printed and stated in the README.
 */
import express from 'express';
import { createCredits } from 'credit-kit/server';
import type { Connection } from 'mongoose';
import {
  recordedSession,
  connect,
  harness,
  headerUser,
  listen,
  recordingStripe,
  signedDelivery,
  WEBHOOK_SECRET,
  type Harness,
} from '../test/helpers';

let h: Harness;
let rec: Awaited<ReturnType<typeof recordingStripe>>;
let tried = 0;
let replays = 0;

beforeAll(async () => {
  rec = await recordingStripe();
  h = await harness(
    (app, credits) => {
      // The cost comes straight from the body, unchecked: the kit itself must refuse anything but a positive integer.
      app.post('/ai', express.json(), credits.requireCredits((req) => (req.body as { tokens: number }).tokens), (_req, res) => {
        res.json({ ok: true });
      });
    },
    {
      stripe: rec.stripe,
      webhookSecret: WEBHOOK_SECRET,
      publicUrl: 'https://app.example.com',
      pricing: { bundles: [{ id: 'starter', credits: 500, price: 4000 }] },
    },
  );
  await h.credits.grantCredits('victim', 1000, { idempotencyKey: 'start' });
  await h.credits.flush();
});
afterAll(async () => {
  await h.close();
  await rec.close();
  console.log(
    `hostile: ${tried} hostile requests (${cases.length} input cases on every route, webhook forgeries, rate-limited calls) ` +
      `refused with a 4xx JSON error; ${replays} replays of one valid event credited once`,
  );
});

/** Everything the kit stores, to compare before and after a hostile request. */
async function snapshot(connection: Connection): Promise<string> {
  const db = connection.getClient().db(connection.name);
  const out: Record<string, unknown[]> = {};
  for (const name of ['credit_accounts', 'credit_books', 'credit_ledger', 'credit_claims', 'credit_purchases']) {
    out[name] = await db.collection(name).find({}).sort({ _id: 1 }).toArray();
  }
  return JSON.stringify(out);
}

interface Case {
  name: string;
  method?: 'GET' | 'POST';
  path: string;
  user?: string | null;
  contentType?: string | null;
  body?: string;
  headers?: Record<string, string>;
  status: number;
}

const json = (v: unknown) => JSON.stringify(v);
const checkout = '/api/stripe/checkout/credits';
const bodyCases: Array<[string, unknown]> = [
  ['operator object as quantity', { quantity: { $gt: 0 } }],
  ['operator object as bundle', { bundle: { $ne: null } }],
  ['operator object as ui', { quantity: 100, ui: { $ne: 'hosted' } }],
  ['operator key at top level', { $where: 'sleep(1000)', quantity: 100 }],
  ['array as quantity', { quantity: [100] }],
  ['array as bundle', { bundle: ['starter'] }],
  ['array body', [{ quantity: 100 }]],
  ['huge quantity', { quantity: 1e308 }],
  ['quantity above the maximum', { quantity: 100_001 }],
  ['unsafe integer quantity', { quantity: 2 ** 53 + 2 }],
  ['negative quantity', { quantity: -100 }],
  ['zero quantity', { quantity: 0 }],
  ['fractional quantity', { quantity: 99.5 }],
  ['string of a number', { quantity: '100' }],
  ['string with exponent', { quantity: '1e3' }],
  ['boolean quantity', { quantity: true }],
  ['null quantity', { quantity: null }],
  ['below the minimum charge', { quantity: 1 }],
  ['unknown bundle id', { bundle: 'enterprise' }],
  ['bundle id with a dollar sign', { bundle: '$starter' }],
  ['prototype key as bundle', { bundle: '__proto__' }],
  ['extra price field', { quantity: 100, price: 1 }],
  ['extra unit_amount', { quantity: 100, unit_amount: 1 }],
  ['extra currency', { quantity: 100, currency: 'jpy' }],
  ['extra metadata', { quantity: 100, metadata: { credit_kit_credits: '99999' } }],
  ['extra success_url', { quantity: 100, success_url: 'https://evil.example/steal' }],
  ['extra cancel_url', { quantity: 100, cancel_url: 'https://evil.example' }],
  ['extra user id', { quantity: 100, userId: 'someone-else' }],
  ['both quantity and bundle', { quantity: 100, bundle: 'starter' }],
  ['empty object', {}],
];

const cases: Case[] = [
  ...bodyCases.map(([name, body]): Case => ({ name: `checkout: ${name}`, path: checkout, body: json(body), status: 400 })),
  { name: 'checkout: JSON null', path: checkout, body: 'null', status: 400 },
  { name: 'checkout: JSON string', path: checkout, body: '"100"', status: 400 },
  { name: 'checkout: JSON number', path: checkout, body: '100', status: 400 },
  { name: 'checkout: invalid JSON', path: checkout, body: '{"quantity": 100', status: 400 },
  { name: 'checkout: empty body', path: checkout, body: '', status: 400 },
  { name: 'checkout: body over the size limit', path: checkout, body: json({ quantity: 100, pad: 'x'.repeat(64_000) }), status: 413 },
  { name: 'checkout: form urlencoded (cross-site form)', path: checkout, contentType: 'application/x-www-form-urlencoded', body: 'quantity=100', status: 415 },
  { name: 'checkout: multipart (cross-site form)', path: checkout, contentType: 'multipart/form-data; boundary=x', body: '--x\r\nContent-Disposition: form-data; name="quantity"\r\n\r\n100\r\n--x--', status: 415 },
  { name: 'checkout: text/plain (cross-site form)', path: checkout, contentType: 'text/plain', body: json({ quantity: 100 }), status: 415 },
  { name: 'checkout: no content type', path: checkout, contentType: null, body: json({ quantity: 100 }), status: 415 },
  { name: 'checkout: missing auth', path: checkout, user: null, body: json({ quantity: 100 }), status: 401 },
  { name: 'checkout: user id too long', path: checkout, user: 'u'.repeat(300), body: json({ quantity: 100 }), status: 400 },
  { name: 'balance: missing auth', method: 'GET', path: '/api/credits/balance', user: null, status: 401 },
  { name: 'transactions: missing auth', method: 'GET', path: '/api/credits/transactions', user: null, status: 401 },
  { name: 'transactions: negative limit', method: 'GET', path: '/api/credits/transactions?limit=-1', status: 400 },
  { name: 'transactions: huge limit', method: 'GET', path: '/api/credits/transactions?limit=1000000', status: 400 },
  { name: 'transactions: text limit', method: 'GET', path: '/api/credits/transactions?limit=all', status: 400 },
  { name: 'transactions: repeated limit (array)', method: 'GET', path: '/api/credits/transactions?limit=1&limit=2', status: 400 },
  { name: 'transactions: operator in cursor', method: 'GET', path: '/api/credits/transactions?cursor[$gt]=0', status: 400 },
  { name: 'transactions: unknown parameter', method: 'GET', path: '/api/credits/transactions?userId=victim', status: 400 },
  { name: 'balance: user id in the query', method: 'GET', path: '/api/credits/balance?userId=someone-else', status: 400 },
  { name: 'transactions: fractional cursor', method: 'GET', path: '/api/credits/transactions?cursor=1.5', status: 400 },
  { name: 'grants: missing auth', method: 'GET', path: '/api/credits/grants', user: null, status: 401 },
  { name: 'grants: user id in the query', method: 'GET', path: '/api/credits/grants?userId=someone-else', status: 400 },
  { name: 'grants: operator in the query', method: 'GET', path: '/api/credits/grants?source[$ne]=x', status: 400 },
  { name: 'session: missing auth', method: 'GET', path: '/api/stripe/checkout/session/cs_test_abc', user: null, status: 401 },
  { name: 'session: not a session id', method: 'GET', path: '/api/stripe/checkout/session/pi_123', status: 400 },
  { name: 'session: operator-looking id', method: 'GET', path: '/api/stripe/checkout/session/%24ne', status: 400 },
  { name: 'session: over-long id', method: 'GET', path: `/api/stripe/checkout/session/cs_${'a'.repeat(400)}`, status: 400 },
  { name: 'guarded: missing auth', path: '/ai', user: null, body: json({ tokens: 5 }), status: 401 },
  { name: 'guarded: operator object as cost input', path: '/ai', body: json({ tokens: { $gt: 0 } }), status: 400 },
  { name: 'guarded: negative cost input', path: '/ai', body: json({ tokens: -50 }), status: 400 },
  { name: 'guarded: fractional cost input', path: '/ai', body: json({ tokens: 0.5 }), status: 400 },
  { name: 'guarded: array cost input', path: '/ai', body: json({ tokens: [5] }), status: 400 },
  { name: 'guarded: huge cost input', path: '/ai', body: json({ tokens: 1e300 }), status: 400 },
  { name: 'guarded: more than the balance', path: '/ai', body: json({ tokens: 1001 }), status: 402 },
  { name: 'guarded: Idempotency-Key with spaces', path: '/ai', body: json({ tokens: 1 }), headers: { 'idempotency-key': 'a b' }, status: 400 },
  { name: 'guarded: over-long Idempotency-Key', path: '/ai', body: json({ tokens: 1 }), headers: { 'idempotency-key': 'k'.repeat(256) }, status: 400 },
  { name: 'webhook: no signature', path: '/api/stripe/webhook', body: json({ type: 'checkout.session.completed' }), status: 400 },
  { name: 'webhook: garbage signature', path: '/api/stripe/webhook', body: json({}), headers: { 'stripe-signature': 'garbage' }, status: 400 },
  { name: 'webhook: body over the size limit', path: '/api/stripe/webhook', body: 'x'.repeat(1_100_000), headers: { 'stripe-signature': 't=1,v1=x' }, status: 413 },
];

it.each(cases)('$name → $status', async (c) => {
  await h.credits.flush();
  const before = await snapshot(h.connection);
  rec.requests.length = 0;
  const headers: Record<string, string> = { ...(c.headers ?? {}) };
  const user = c.user === undefined ? 'victim' : c.user;
  if (user) headers['x-test-user'] = user;
  const contentType = c.contentType === undefined ? (c.body !== undefined ? 'application/json' : null) : c.contentType;
  if (contentType) headers['content-type'] = contentType;
  const res = await fetch(`${h.url}${c.path}`, { method: c.method ?? 'POST', headers, ...(c.body !== undefined ? { body: c.body } : {}) });
  tried++;
  expect(res.status).toBe(c.status);
  expect(res.headers.get('content-type')).toMatch(/application\/json/);
  const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
  expect(typeof body.error?.code).toBe('string');
  expect(typeof body.error?.message).toBe('string');
  expect(rec.requests).toHaveLength(0);
  await h.credits.flush();
  expect(await snapshot(h.connection)).toBe(before);
});

describe('webhook attacks', () => {
  const deliver = (d: { body: string; headers: Record<string, string> }) =>
    fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers: d.headers, body: d.body });

  it('credits a valid event replayed 50 times concurrently and 50 times in a row exactly once', async () => {
    const session = await recordedSession(h.url, 'replayed', 100);
    const d = signedDelivery(rec.stripe, { type: 'checkout.session.completed', object: session });
    const concurrent = await Promise.all(Array.from({ length: 50 }, () => deliver(d)));
    expect(concurrent.every((r) => r.status === 200)).toBe(true);
    for (let i = 0; i < 50; i++) expect((await deliver(d)).status).toBe(200);
    replays += 100;
    await h.credits.flush();
    expect(await h.credits.getBalance('replayed')).toBe(100);
    expect((await h.credits.listTransactions('replayed')).transactions).toHaveLength(1);
  });

  it('credits nothing for forged, foreign-secret, stale or tampered deliveries', async () => {
    const session = await recordedSession(h.url, 'forgery-target', 100);
    const event = { type: 'checkout.session.completed', object: session };
    const good = signedDelivery(rec.stripe, event);
    const tampered = good.body.replace('"credit_kit_credits":"100"', '"credit_kit_credits":"100000"');
    expect(tampered).not.toBe(good.body);
    const attempts = [
      { body: good.body, headers: { ...good.headers, 'stripe-signature': `t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}` } },
      signedDelivery(rec.stripe, event, { secret: 'whsec_attacker' }),
      signedDelivery(rec.stripe, event, { timestamp: Math.floor(Date.now() / 1000) - 600 }),
      { body: tampered, headers: good.headers },
      { body: good.body.replace('"paid"', '"unpaid"'), headers: good.headers },
      { body: good.body, headers: { 'content-type': 'application/json' } },
    ];
    const statuses = [];
    for (const a of attempts) {
      statuses.push((await deliver(a)).status);
      tried++;
    }
    expect(statuses).toEqual(attempts.map(() => 400));
    await h.credits.flush();
    expect(await h.credits.getBalance('forgery-target')).toBe(0);
  });

  it('credits a signed session for a user the app has never seen only what was paid', async () => {
    const session = await recordedSession(h.url, 'brand-new-user', 30);
    const res = await deliver(signedDelivery(rec.stripe, { type: 'checkout.session.completed', object: session }));
    expect(res.status).toBe(200);
    await h.credits.flush();
    expect(await h.credits.getBalance('brand-new-user')).toBe(30);
  });
});

describe('rate limits (per user)', () => {
  it('limits guarded routes and checkout per user with 429 JSON, charging nothing and calling no Stripe API', async () => {
    const connection = await connect();
    const credits = createCredits({
      connection,
      getUserId: headerUser,
      stripe: rec.stripe,
      webhookSecret: WEBHOOK_SECRET,
      publicUrl: 'https://app.example.com',
      rateLimit: { windowMs: 60_000, guarded: 3, checkout: 2 },
    });
    const app = express();
    app.use('/api', credits.router());
    app.post('/ai', credits.requireCredits(1), (_req, res) => res.json({ ok: true }));
    const server = await listen(app);
    try {
      await credits.grantCredits('busy', 100, { idempotencyKey: 'start' });
      await credits.grantCredits('calm', 100, { idempotencyKey: 'start' });
      const post = (path: string, user: string, body?: unknown) =>
        fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: { 'x-test-user': user, 'content-type': 'application/json' },
          body: JSON.stringify(body ?? {}),
        });
      const guarded = [];
      for (let i = 0; i < 5; i++) guarded.push((await post('/ai', 'busy')).status);
      expect(guarded).toEqual([200, 200, 200, 429, 429]);
      const limited = await post('/ai', 'busy');
      expect((await limited.json()).error.code).toBe('rate_limited');
      expect((await post('/ai', 'calm')).status).toBe(200);
      await credits.flush();
      expect(await credits.getBalance('busy')).toBe(97);

      rec.requests.length = 0;
      const checkouts = [];
      for (let i = 0; i < 4; i++) checkouts.push((await post('/api/stripe/checkout/credits', 'busy', { quantity: 100 })).status);
      expect(checkouts).toEqual([201, 201, 429, 429]);
      expect(rec.requests).toHaveLength(2);
      tried += 5; // the limited requests: 3 guarded, 2 checkout
    } finally {
      await server.close();
      await connection.close();
    }
  });
});
