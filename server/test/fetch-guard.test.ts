/**
 * credit-kit/fetch's withCredits over real HTTP (node:http and a Fetch bridge, no Express) against the
 * embedded database: the same semantics as requireCredits.
 */
import { CreditsConfigError, type CreditsContext } from 'credit-kit/fetch';
import { consistentAudit, crowdThrough, get, post } from './helpers';
import { fetchHarness, type FetchHarness } from './fetch-helpers';

let h: FetchHarness;
const calls: string[] = [];
const seen: Array<{ params?: unknown; credits: CreditsContext }> = [];

beforeAll(async () => {
  h = await fetchHarness((credits) => ({
    'POST /ai/one': credits.withCredits(1, async () => {
      calls.push('one');
      return Response.json({ ok: true });
    }),
    'POST /ai/context': credits.withCredits(2, async (_request, context: { params?: unknown; credits: CreditsContext }) => {
      seen.push(context);
      return Response.json({ charged: context.credits.charged, balance: context.credits.balance });
    }),
    'POST /ai/throws': credits.withCredits(3, async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('model crashed');
    }),
    'POST /ai/500': credits.withCredits(3, () => Response.json({ error: 'model overloaded' }, { status: 500 })),
    'POST /ai/400': credits.withCredits(3, () => Response.json({ error: 'bad prompt' }, { status: 400 })),
    'POST /ai/not-a-response': credits.withCredits(3, (() => ({ text: 'oops' })) as never),
    'POST /ai/metered': credits.withCredits(10, async (request, { credits: c }) => {
      const settled = await c.settle(Number(request.headers.get('x-used')));
      return Response.json({ ...settled, ctx: { charged: c.charged, balance: c.balance } });
    }),
    'POST /ai/settle-twice': credits.withCredits(10, async (_request, { credits: c }) => {
      await c.settle(4);
      await c.settle(5); // throws 409
      return Response.json({});
    }),
    'POST /ai/dynamic': credits.withCredits((request) => Number(request.headers.get('x-cost')), (_r, { credits: c }) => Response.json({ charged: c.charged })),
    'POST /ai/echo': credits.withCredits(2, async (request) => {
      calls.push('echo');
      await new Promise((r) => setTimeout(r, Number(request.headers.get('x-delay') ?? 0)));
      return Response.json({ got: await request.json(), n: calls.length });
    }),
    'GET /ai/empty': credits.withCredits(1, () => new Response(null, { status: 204 })),
  }));
}, 60_000);
afterAll(() => h.close());

const consistent = (user: string) => consistentAudit(h.credits, user);
const grant = (user: string, amount: number) => h.credits.grantCredits(user, amount, { idempotencyKey: `grant-${user}-${amount}` });

describe('withCredits', () => {
  it('lets exactly 137 of 500 concurrent requests through for a user holding 137', async () => {
    await grant('crowd', 137);
    calls.length = 0;
    await crowdThrough(`${h.url}/ai/one`, 'crowd', 500, 137); // 137 answered 200, 363 answered 402
    expect(calls).toHaveLength(137);
    const a = await consistent('crowd');
    expect(a.balance).toBe(0);
    expect(a.kinds).toEqual({ grant: 1, usage: 137 });
  }, 120_000);

  it('answers 401 without a user and 402 with the balance when it is too low, charging nothing', async () => {
    const anon = await post(`${h.url}/ai/one`, null);
    expect(anon.status).toBe(401);
    expect(await anon.json()).toEqual({ error: { code: 'unauthenticated', message: 'Sign in to use credits.' } });
    await grant('poor', 2);
    const poor = await post(`${h.url}/ai/500`, 'poor');
    expect(poor.status).toBe(402);
    expect(await poor.json()).toEqual({
      error: { code: 'insufficient_credits', message: 'This action needs 3 credits; the balance is 2.', required: 3, balance: 2 },
    });
    expect((await consistent('poor')).kinds).toEqual({ grant: 1 });
  });

  it("hands the handler the framework's context with credits added", async () => {
    await grant('ctx', 10);
    const params = Promise.resolve({ slug: 'x' });
    const handler = h.credits.withCredits(2, (_request, context: { params: Promise<{ slug: string }>; credits: CreditsContext }) =>
      Response.json({ same: context.params === params, balance: context.credits.balance, userId: context.credits.userId }),
    );
    const res = await handler(new Request('http://app.test/api/x', { method: 'POST', headers: { 'x-test-user': 'ctx' } }), { params });
    expect(await res.json()).toEqual({ same: true, balance: 8, userId: 'ctx' });
    const over = await post(`${h.url}/ai/context`, 'ctx');
    expect(await over.json()).toEqual({ charged: 2, balance: 6 });
    expect(seen.at(-1)!.credits.chargeId).toEqual(expect.any(String));
  });

  it('gives back the charge once when the handler throws, answering 500 in the kit shape', async () => {
    await grant('thrower', 10);
    const res = await post(`${h.url}/ai/throws`, 'thrower');
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: { code: 'internal', message: 'Something went wrong with credits.' } });
    // Given back before the answer: the balance is whole at once.
    expect(await h.credits.getBalance('thrower')).toBe(10);
    const a = await consistent('thrower');
    expect(a.kinds).toEqual({ grant: 1, usage: 1, refund: 1 });
  });

  it('gives back a 500 Response once, keeps a 400 charged, and refunds a handler that returns no Response', async () => {
    await grant('fivehundred', 10);
    const five = await post(`${h.url}/ai/500`, 'fivehundred');
    expect(five.status).toBe(500);
    expect(await five.json()).toEqual({ error: 'model overloaded' });
    expect(await h.credits.getBalance('fivehundred')).toBe(10);
    const four = await post(`${h.url}/ai/400`, 'fivehundred');
    expect(four.status).toBe(400);
    expect(await h.credits.getBalance('fivehundred')).toBe(7);
    const odd = await post(`${h.url}/ai/not-a-response`, 'fivehundred');
    expect(odd.status).toBe(500);
    expect(((await odd.json()) as { error: { code: string } }).error.code).toBe('misconfigured');
    const a = await consistent('fivehundred');
    expect(a.balance).toBe(7);
    expect(a.kinds).toEqual({ grant: 1, usage: 3, refund: 2 });
  });

  it('settles metered work below and above the reservation, once', async () => {
    await grant('meter', 30);
    const below = await post(`${h.url}/ai/metered`, 'meter', undefined, { 'x-used': '4' });
    expect(await below.json()).toEqual({ charged: 4, balance: 26, ctx: { charged: 4, balance: 26 } });
    const above = await post(`${h.url}/ai/metered`, 'meter', undefined, { 'x-used': '15' });
    expect(await above.json()).toEqual({ charged: 15, balance: 11, ctx: { charged: 15, balance: 11 } });
    // Above what the balance holds: `cap` takes what there is, never below zero.
    const capped = await post(`${h.url}/ai/metered`, 'meter', undefined, { 'x-used': '40' });
    expect(((await capped.json()) as { balance: number }).balance).toBe(0);
    const a = await consistent('meter');
    expect(a.balance).toBe(0);
    expect(a.kinds).toEqual({ grant: 1, usage: 3, settle: 3 });
  });

  it('refuses a second settle with 409 (and, as a failure of the route, gives nothing back twice)', async () => {
    await grant('twice', 20);
    const res = await post(`${h.url}/ai/settle-twice`, 'twice');
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('conflict');
    const a = await consistent('twice');
    expect(a.balance).toBe(16); // reserved 10, settled at 4; a 409 is not a refunded failure
  });

  it('checks a cost function per request: 400 invalid_amount charges nothing', async () => {
    await grant('dyn', 10);
    expect(await (await post(`${h.url}/ai/dynamic`, 'dyn', undefined, { 'x-cost': '7' })).json()).toEqual({ charged: 7 });
    const bad = await post(`${h.url}/ai/dynamic`, 'dyn', undefined, { 'x-cost': '1.5' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_amount');
    expect((await consistent('dyn')).balance).toBe(3);
  });

  it('answers a body-less 204 and charges it', async () => {
    await grant('empty', 1);
    const res = await get(`${h.url}/ai/empty`, 'empty');
    expect(res.status).toBe(204);
    expect(await h.credits.getBalance('empty')).toBe(0);
  });

  describe('Idempotency-Key', () => {
    it('replays the first answer for a retry: same status and bytes, not run or charged again', async () => {
      await grant('idem', 10);
      calls.length = 0;
      const first = await post(`${h.url}/ai/echo`, 'idem', { prompt: 'hi' }, { 'idempotency-key': 'k-1' });
      const body = await first.text();
      await h.credits.flush(); // the answer is kept from the background queue
      const retry = await post(`${h.url}/ai/echo`, 'idem', { prompt: 'hi' }, { 'idempotency-key': 'k-1' });
      expect(retry.status).toBe(200);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await retry.text()).toBe(body);
      expect(calls).toEqual(['echo']);
      expect((await consistent('idem')).balance).toBe(8);
    });

    it('answers 422 for the key reused on another body, and 409 while the first is running', async () => {
      await grant('idem2', 10);
      const slow = post(`${h.url}/ai/echo`, 'idem2', { prompt: 'a' }, { 'idempotency-key': 'k-2', 'x-delay': '400' });
      await new Promise((r) => setTimeout(r, 150));
      const running = await post(`${h.url}/ai/echo`, 'idem2', { prompt: 'a' }, { 'idempotency-key': 'k-2' });
      expect(running.status).toBe(409);
      expect(await running.json()).toMatchObject({ error: { code: 'conflict', idempotencyKey: 'k-2' } });
      expect((await slow).status).toBe(200);
      const other = await post(`${h.url}/ai/echo`, 'idem2', { prompt: 'b' }, { 'idempotency-key': 'k-2' });
      expect(other.status).toBe(422);
      expect(await other.json()).toMatchObject({ error: { code: 'idempotency_key_reused', idempotencyKey: 'k-2' } });
      expect((await consistent('idem2')).balance).toBe(8);
    });

    it('refuses a malformed key with 400 before charging', async () => {
      await grant('idem3', 5);
      const res = await post(`${h.url}/ai/one`, 'idem3', undefined, { 'idempotency-key': 'x'.repeat(300) });
      expect(res.status).toBe(400);
      expect((await consistent('idem3')).kinds).toEqual({ grant: 1 });
    });

    it('keeps no answer that is not JSON: a retry gets 409 reply_not_kept, once charged', async () => {
      await grant('idem4', 5);
      const handler = h.credits.withCredits(1, () => new Response('plain text', { headers: { 'content-type': 'text/plain' } }));
      const request = () => new Request('http://app.test/ai/text', { method: 'POST', headers: { 'x-test-user': 'idem4', 'idempotency-key': 'k-4' } });
      expect(await (await handler(request())).text()).toBe('plain text');
      await h.credits.flush();
      const retry = await handler(request());
      expect(retry.status).toBe(409);
      expect(await retry.json()).toMatchObject({ error: { code: 'reply_not_kept', status: 200 } });
      expect((await consistent('idem4')).balance).toBe(4);
    });
  });

  it('refuses a bad guard when it is created', () => {
    expect(() => h.credits.withCredits(0, () => Response.json({}))).toThrow(CreditsConfigError);
    expect(() => h.credits.withCredits(1.5, () => Response.json({}))).toThrow(/positive integer/);
    expect(() => h.credits.withCredits(5, undefined as never)).toThrow(CreditsConfigError);
    expect(() => (h.credits.withCredits as unknown as (r: Request) => unknown)(new Request('http://x.test/'))).toThrow(/without a cost/);
  });

  it('offers the ledger functions of createCredits', async () => {
    expect(await h.credits.grantCredits('fns', 5, { idempotencyKey: 'g-fns' })).toEqual({ granted: true, balance: 5 });
    expect(await h.credits.deductCredits('fns', 3)).toBe(true);
    expect(await h.credits.deductCredits('fns', 3)).toBe(false);
    const page = await h.credits.listTransactions('fns');
    expect(page.transactions.map((t) => t.kind)).toEqual(['usage', 'grant']);
    expect(await h.credits.reconcile()).toMatchObject({ adjustmentsApplied: 0 });
  });
});
