/**
 * The `rateLimit` option on the Fetch side, over real HTTP: the same fixed window as Express's, per
 * signed-in user, and per `getClientAddress(request)` for signed-out requests; a refused request gets 429
 * JSON with Retry-After, never runs and charges nothing.
 */
import type { Connection } from 'mongoose';
import { createFetchCredits, type FetchCredits } from 'credit-kit/fetch';
import { connect, consistentAudit, post } from './helpers';
import { fetchHeaderUser, serveFetch } from './fetch-helpers';

let connection: Connection;
let credits: FetchCredits;
let server: { url: string; close(): Promise<void> };
let runs = 0;

beforeAll(async () => {
  connection = await connect();
  credits = createFetchCredits({
    connection,
    getUserId: fetchHeaderUser,
    getClientAddress: (request) => request.headers.get('x-test-address'),
    rateLimit: { windowMs: 60_000, guarded: 3, checkout: 2 },
  });
  await credits.init();
  const guarded = credits.withCredits(1, () => {
    runs++;
    return Response.json({ ok: true });
  });
  server = await serveFetch((request) => (new URL(request.url).pathname === '/ai' ? guarded(request) : credits.routes.POST(request)));
});
afterAll(async () => {
  await credits.flush();
  await server.close();
  await connection.close();
});

describe('createFetchCredits({ rateLimit })', () => {
  it('lets a user make `guarded` requests a window, refuses the next with 429 and Retry-After, runs and charges nothing for it', async () => {
    await credits.grantCredits('limited', 10, { idempotencyKey: 'limited-10' });
    runs = 0;
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await post(`${server.url}/ai`, 'limited'));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
    expect(runs).toBe(3);
    expect(answers[0]!.headers.get('ratelimit-policy')).toBe('"3-in-60sec"; q=3; w=60');
    expect(answers[2]!.headers.get('ratelimit')).toMatch(/^"3-in-60sec"; r=0; t=\d+$/);
    expect(Number(answers[3]!.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await answers[3]!.json()).toMatchObject({ error: { code: 'rate_limited' } });
    expect((await consistentAudit(credits, 'limited')).balance).toBe(7);
    // Another user has a window of their own.
    await credits.grantCredits('other', 1, { idempotencyKey: 'other-1' });
    expect((await post(`${server.url}/ai`, 'other')).status).toBe(200);
  });

  it('counts signed-out requests per client address (they are refused 401 until the limit, then 429)', async () => {
    const from = (address: string) => post(`${server.url}/ai`, null, undefined, { 'x-test-address': address });
    const a = [];
    for (let i = 0; i < 4; i++) a.push((await from('203.0.113.7')).status);
    expect(a).toEqual([401, 401, 401, 429]);
    expect((await from('203.0.113.8')).status).toBe(401);
    // An IPv6 client is counted by its /56: another address in it shares the window.
    const v6 = [];
    for (let i = 0; i < 3; i++) v6.push((await from(`2001:db8:0:1${i}::1`)).status);
    v6.push((await from('2001:db8:0:ff::1')).status);
    expect(v6).toEqual([401, 401, 401, 429]);
  });

  it('limits checkouts per user with `checkout`', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await post(`${server.url}/api/stripe/checkout/credits`, 'buyer', { quantity: 10 })).status);
    // Stripe is not configured here: the allowed ones answer 501, the third is refused before it.
    expect(statuses).toEqual([501, 501, 429]);
  });
});
