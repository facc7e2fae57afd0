/**
 * credit-kit/fetch's route handlers over real HTTP (node:http and a Fetch bridge, no Express): checkout
 * through stripe-mock, webhooks signed by stripe-node, the success page, balance, history and pricing, and
 * hostile input. The same requests go to an Express app on createCredits, and the answers must be the same.
 */
import { randomUUID } from 'node:crypto';
import { createFetchCredits, type WebhookReport } from 'credit-kit/fetch';
import { checkoutCompleted, signEvent } from 'credit-kit/testing';
import { audit, connect, get, harness, post, recordedSession, signedDelivery, stripeMockClient, WEBHOOK_SECRET, type Harness } from './helpers';
import { fetchHarness, fetchHeaderUser, serveFetch, type FetchHarness } from './fetch-helpers';

const stripe = stripeMockClient();
const reports: WebhookReport[] = [];
const stripeOptions = {
  stripe,
  webhookSecret: WEBHOOK_SECRET,
  publicUrl: 'https://app.example.com',
  pricing: { bundles: [{ id: 'starter', credits: 500, price: 4000 }] },
};
let h: FetchHarness;
let express: Harness;

beforeAll(async () => {
  [h, express] = await Promise.all([
    fetchHarness(() => ({}), { ...stripeOptions, onWebhook: (r) => reports.push(r) }),
    harness(() => undefined, stripeOptions),
  ]);
}, 60_000);
afterAll(() => Promise.all([h.close(), express.close()]));

async function unchanged(user: string) {
  await h.credits.flush();
  const a = await audit(h.credits, user);
  expect(a).toEqual({ balance: 0, sum: 0, entries: 0, kinds: {} });
}

describe('the Fetch routes', () => {
  it('creates a hosted and an embedded Checkout Session through stripe-mock and records them', async () => {
    const hosted = await post(`${h.url}/api/stripe/checkout/credits`, 'buyer', { quantity: 100 });
    expect(hosted.status).toBe(201);
    const body = (await hosted.json()) as { id: string; url: string; credits: number; amount: number };
    expect(body).toEqual({ id: expect.stringMatching(/^cs_/), url: expect.any(String), credits: 100, amount: 1000 });
    expect(await h.credits.store.getPurchase(body.id)).toMatchObject({ userId: 'buyer', credits: 100, amountTotal: 1000 });
    const embedded = await post(`${h.url}/api/stripe/checkout/credits`, 'buyer', { bundle: 'starter', ui: 'embedded' });
    expect(embedded.status).toBe(201);
    const session = (await embedded.json()) as Record<string, unknown>;
    expect(Object.keys(session).sort()).toEqual(['amount', 'clientSecret', 'credits', 'id']);
    expect(session).toMatchObject({ id: expect.stringMatching(/^cs_/), credits: 500, amount: 4000 });
  });

  it('credits a purchase once under 20 concurrent duplicate deliveries, and tells onWebhook', async () => {
    const session = await recordedSession(h.url, 'payer', 100);
    const delivery = signedDelivery(stripe, { id: `evt_${randomUUID().slice(0, 8)}`, type: 'checkout.session.completed', object: session });
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers: delivery.headers, body: delivery.body })),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as Array<{ creditsAdded: number; type: string }>;
    expect(bodies.reduce((sum, b) => sum + b.creditsAdded, 0)).toBe(100);
    expect(bodies.every((b) => b.type === 'checkout.session.completed')).toBe(true);
    await h.credits.flush();
    const a = await audit(h.credits, 'payer');
    expect(a).toMatchObject({ balance: 100, sum: 100, kinds: { purchase: 1 } });
    expect(reports.filter((r) => r.event?.id === JSON.parse(delivery.body).id).map((r) => r.status)).toEqual(Array(20).fill(200));
  });

  it('verifies signatures: missing, forged and stale deliveries are 400 and change nothing', async () => {
    const session = await recordedSession(h.url, 'forger', 50);
    const event = { type: 'checkout.session.completed', object: session };
    const good = signedDelivery(stripe, event);
    const forged = signedDelivery(stripe, event, { secret: 'whsec_someone_else' });
    const stale = signedDelivery(stripe, event, { timestamp: Math.floor(Date.now() / 1000) - 3600 });
    const send = (body: string, headers: Record<string, string>) => fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers, body });
    const { 'stripe-signature': _omitted, ...unsigned } = Object.fromEntries(Object.entries(good.headers).map(([k, v]) => [k.toLowerCase(), v]));
    for (const res of [await send(good.body, unsigned), await send(forged.body, forged.headers), await send(stale.body, stale.headers), await send(good.body.replace('50', '5000'), good.headers)]) {
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_signature');
    }
    await unchanged('forger');
  });

  it('works with credit-kit/testing: signEvent and checkoutCompleted take the Fetch kit too', async () => {
    const created = await post(`${h.url}/api/stripe/checkout/credits`, 'tester', { quantity: 70 });
    const { id } = (await created.json()) as { id: string };
    const paid = signEvent(await checkoutCompleted(h.credits, id), WEBHOOK_SECRET);
    expect((await fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers: paid.headers, body: paid.body })).status).toBe(200);
    expect(await h.credits.getBalance('tester')).toBe(70);
  });

  it('answers the success page at both paths as Express does (stripe-mock sessions have no owner: 404)', async () => {
    for (const path of ['/api/stripe/checkout/session/cs_test_a1b2c3', '/api/stripe/session?session_id=cs_test_a1b2c3']) {
      for (const user of ['w-buyer', null]) {
        const [viaFetch, viaExpress] = await Promise.all([get(`${h.url}${path}`, user), get(`${express.url}/api/stripe/checkout/session/cs_test_a1b2c3`, user)]);
        expect(viaFetch.status).toBe(user ? 404 : 401);
        expect({ status: viaFetch.status, body: await viaFetch.json() }).toEqual({ status: viaExpress.status, body: await viaExpress.json() });
      }
    }
    // The handler alone, as app/api/stripe/session/route.ts exports it.
    const alone = await h.credits.handlers.session(new Request('http://app.test/api/stripe/session?session_id=cs_test_a1b2c3', { headers: { 'x-test-user': 'w-buyer' } }));
    expect(alone.status).toBe(404);
    expect((await get(`${h.url}/api/stripe/checkout/session/not-a-session`, 'owner')).status).toBe(400);
  });

  it('answers balance, history and pricing', async () => {
    await h.credits.grantCredits('reader', 30, { idempotencyKey: 'g-reader' });
    await h.credits.deductCredits('reader', 5);
    expect(await (await get(`${h.url}/api/credits/balance`, 'reader')).json()).toEqual({ balance: 25, creditName: 'credits' });
    const page = (await (await get(`${h.url}/api/credits/transactions?limit=1`, 'reader')).json()) as { transactions: Array<{ kind: string }>; nextCursor: string };
    expect(page.transactions.map((t) => t.kind)).toEqual(['usage']);
    const older = (await (await get(`${h.url}/api/credits/transactions?limit=1&cursor=${page.nextCursor}`, 'reader')).json()) as { transactions: Array<{ kind: string }> };
    expect(older.transactions.map((t) => t.kind)).toEqual(['grant']);
    expect(await (await get(`${h.url}/api/credits/pricing`, null)).json()).toEqual({
      creditName: 'credits',
      currency: 'usd',
      creditPriceCents: 10,
      minQuantity: 5,
      maxQuantity: 100000,
      bundles: [{ id: 'starter', credits: 500, price: 4000, name: null }],
      costs: [],
    });
  });

  it('dispatches by the path after basePath, and answers 404 JSON elsewhere', async () => {
    const res = await get(`${h.url}/api/credits/nothing`, 'reader');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
    expect((await get(`${h.url}/elsewhere/credits/balance`, 'reader')).status).toBe(404);
    expect((await post(`${h.url}/api/credits/balance`, 'reader')).status).toBe(404);

    const connection = await connect();
    const rooted = createFetchCredits({ connection, getUserId: fetchHeaderUser, basePath: '/billing/' });
    const server = await serveFetch((request) => rooted.routes.GET(request));
    try {
      expect(await (await get(`${server.url}/billing/credits/balance`, 'x')).json()).toEqual({ balance: 0, creditName: 'credits' });
    } finally {
      await server.close();
      await connection.close();
    }
    expect(() => createFetchCredits({ connection, getUserId: fetchHeaderUser, basePath: 'api' })).toThrow(/basePath/);
    expect(() => createFetchCredits({ connection, getUserId: fetchHeaderUser, getClientAddress: 'x-forwarded-for' as never })).toThrow(/getClientAddress/);
    expect(() => createFetchCredits({ connection, getUserId: fetchHeaderUser, rateLimit: { guarded: 0 } })).toThrow(/rateLimit/);
    expect(() => createFetchCredits({ connection, getUserId: fetchHeaderUser, timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => createFetchCredits(null as never)).toThrow(/needs an options object/);
    expect(() => createFetchCredits({ connection } as never)).toThrow(/getUserId/);
  });

  /**
   * Hostile requests, each sent to the Fetch app and to the Express app: the same status and JSON, and
   * nothing changes. Express 4's default query parser (qs, extended) reads `cursor[$gt]=0` as an object
   * where Express 5's and the Fetch side read a key named `cursor[$gt]`: both refused as invalid_request,
   * with another message, so only that one compares status and code.
   */
  const parserDependent = new Set(['history with an operator cursor']);
  const hostile: Array<[string, (base: string) => Promise<Response>]> = [
    ['checkout without a user', (b) => post(`${b}/api/stripe/checkout/credits`, null, { quantity: 100 })],
    ['checkout as a form (the CSRF defence)', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', undefined, { 'content-type': 'application/x-www-form-urlencoded', body: 'quantity=100' })],
    ['checkout as text/plain', (b) => fetch(`${b}/api/stripe/checkout/credits`, { method: 'POST', headers: { 'x-test-user': 'hostile', 'content-type': 'text/plain' }, body: '{"quantity":100}' })],
    ['checkout with bad JSON', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', '{"quantity":')],
    ['checkout with a JSON string', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', '"quantity"')],
    ['checkout with a huge body', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', JSON.stringify({ quantity: 100, pad: 'x'.repeat(40_000) }))],
    ['checkout with an empty object', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', {})],
    ['checkout with a price', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', { quantity: 100, price: 1 })],
    ['checkout with an operator', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', { quantity: { $gt: 0 } })],
    ['checkout of too few', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', { quantity: 1 })],
    ['checkout of an unknown bundle', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', { bundle: 'gold' })],
    ['checkout with a bad Idempotency-Key', (b) => post(`${b}/api/stripe/checkout/credits`, 'hostile', { quantity: 100 }, { 'idempotency-key': ' ' })],
    ['webhook with a huge body', (b) => fetch(`${b}/api/stripe/webhook`, { method: 'POST', headers: { 'stripe-signature': 't=1,v1=00' }, body: 'x'.repeat(1_100_000) })],
    ['balance without a user', (b) => get(`${b}/api/credits/balance`, null)],
    ['balance asking for another user', (b) => get(`${b}/api/credits/balance?userId=victim`, 'hostile')],
    ['history with a bad cursor', (b) => get(`${b}/api/credits/transactions?cursor=abc`, 'hostile')],
    ['history with an operator cursor', (b) => get(`${b}/api/credits/transactions?cursor[$gt]=0`, 'hostile')],
    ['history with a repeated limit', (b) => get(`${b}/api/credits/transactions?limit=1&limit=2`, 'hostile')],
    ['history with too large a limit', (b) => get(`${b}/api/credits/transactions?limit=101`, 'hostile')],
    ['a session that is not one', (b) => get(`${b}/api/stripe/checkout/session/cs_$where`, 'hostile')],
  ];

  it.each(hostile)('%s: 4xx JSON, as on Express, and nothing changes', async (name, send) => {
    const [viaFetch, viaExpress] = await Promise.all([send(h.url), send(express.url)]);
    expect(viaFetch.status).toBeGreaterThanOrEqual(400);
    expect(viaFetch.status).toBeLessThan(500);
    expect(viaFetch.headers.get('content-type')).toMatch(/^application\/json/);
    const [fetched, expressed] = [{ status: viaFetch.status, body: (await viaFetch.json()) as { error: { code: string } } }, { status: viaExpress.status, body: (await viaExpress.json()) as { error: { code: string } } }];
    if (parserDependent.has(name)) expect([fetched.status, fetched.body.error.code]).toEqual([expressed.status, expressed.body.error.code]);
    else expect(fetched).toEqual(expressed);
    await unchanged('hostile');
  });
});
