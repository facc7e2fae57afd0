/**
 * requireCredits and the ledger functions over real HTTP against the embedded database.
 */
import express, { type ErrorRequestHandler, type Express } from 'express';
import { CreditsConfigError, createCredits, type Credits } from 'credit-kit/server';
import { consistentAudit, crowdThrough, get, harness, headerUser, listen, post, type Harness } from './helpers';

let h: Harness;
const calls: string[] = [];

function routes(app: Express, credits: Credits) {
  app.post('/ai/one', credits.requireCredits(1), (req, res) => {
    calls.push('one');
    res.json({ ok: true, credits: { charged: req.credits!.charged, balance: req.credits!.balance } });
  });
  app.post('/ai/throws', credits.requireCredits(3), () => {
    throw new Error('model crashed');
  });
  // The async handler is passed to requireCredits, so a rejection is refunded on Express 4 too
  // (async-handlers.test.ts has the rest of that, and the middleware form on each Express).
  app.post('/ai/async-throws', credits.requireCredits(3, async () => {
    await new Promise((r) => setTimeout(r, 5));
    throw new Error('model crashed later');
  }));
  app.post('/ai/next-error', credits.requireCredits(3), (_req, _res, next) => next(new Error('upstream 500')));
  app.post('/ai/503', credits.requireCredits(3), (_req, res) => {
    res.status(503).json({ error: 'model overloaded' });
  });
  app.post('/ai/400', credits.requireCredits(3), (_req, res) => {
    res.status(400).json({ error: 'bad prompt' });
  });
  app.post('/ai/metered', credits.requireCredits(10), async (req, res) => {
    const used = Number(req.get('x-used'));
    const settled = await req.credits!.settle(used);
    res.json(settled);
  });
  app.post('/ai/dynamic', credits.requireCredits((req) => Number(req.get('x-cost'))), (req, res) => {
    res.json({ charged: req.credits!.charged });
  });
}

beforeAll(async () => {
  h = await harness(routes);
});
afterAll(() => h.close());

async function balanceOf(user: string) {
  await h.credits.flush();
  return h.credits.getBalance(user);
}

const expectLedgerConsistent = (user: string) => consistentAudit(h.credits, user);

describe('requireCredits', () => {
  it('lets exactly 137 of 500 concurrent requests through for a user holding 137', async () => {
    await h.credits.grantCredits('crowd', 137, { idempotencyKey: 'crowd-start' });
    calls.length = 0;
    await crowdThrough(`${h.url}/ai/one`, 'crowd', 500, 137); // 137 answered 200, 363 answered 402
    expect(calls).toHaveLength(137);
    expect(await balanceOf('crowd')).toBe(0);
    const a = await expectLedgerConsistent('crowd');
    expect(a.kinds).toEqual({ grant: 1, usage: 137 });
  });

  it('answers 401 without a signed-in user, and the route does not run', async () => {
    calls.length = 0;
    const res = await post(`${h.url}/ai/one`, null);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: { code: 'unauthenticated', message: expect.any(String) } });
    expect(calls).toHaveLength(0);
  });

  it('answers 402 with what is required and what the user has, for a user with no account', async () => {
    const res = await post(`${h.url}/ai/throws`, 'nobody-yet');
    expect(res.status).toBe(402);
    expect(await res.json()).toEqual({
      error: { code: 'insufficient_credits', message: expect.stringMatching(/3/), required: 3, balance: 0 },
    });
  });

  it('shows the route what was charged and the balance left', async () => {
    await h.credits.grantCredits('viewer', 5, { idempotencyKey: 'viewer-1' });
    const res = await post(`${h.url}/ai/one`, 'viewer');
    expect(await res.json()).toEqual({ ok: true, credits: { charged: 1, balance: 4 } });
  });

  it.each([
    ['a thrown error', '/ai/throws', 500],
    ['a rejected async handler', '/ai/async-throws', 500],
    ['next(err)', '/ai/next-error', 500],
    ['a 5xx answer', '/ai/503', 503],
  ])('refunds the charge exactly once on %s', async (_what, path, status) => {
    const user = `refund-${path}`;
    await h.credits.grantCredits(user, 10, { idempotencyKey: 'start' });
    const res = await post(`${h.url}${path}`, user);
    expect(res.status).toBe(status);
    // The refund is durable before the failed answer is sent: no wait, no flush.
    expect(await h.credits.getBalance(user)).toBe(10);
    expect(await (await get(`${h.url}/api/credits/balance`, user)).json()).toEqual({ balance: 10, creditName: 'credits' });
    const page = await h.credits.listTransactions(user);
    const [refund, usage] = page.transactions;
    expect(usage).toMatchObject({ kind: 'usage', amount: -3, balanceAfter: 7 });
    expect(refund).toMatchObject({ kind: 'refund', amount: 3, balanceAfter: 10, ref: { chargeId: usage!.id } });
    await expectLedgerConsistent(user);
  });

  it('keeps the charge when the route answers 4xx (the default rule refunds server errors only)', async () => {
    await h.credits.grantCredits('client-error', 10, { idempotencyKey: 'start' });
    expect((await post(`${h.url}/ai/400`, 'client-error')).status).toBe(400);
    expect(await balanceOf('client-error')).toBe(7);
  });

  it('settles below the reservation by refunding the rest', async () => {
    await h.credits.grantCredits('meter-low', 50, { idempotencyKey: 'start' });
    const res = await post(`${h.url}/ai/metered`, 'meter-low', undefined, { 'x-used': '4' });
    expect(await res.json()).toEqual({ charged: 4, balance: 46 });
    expect(await balanceOf('meter-low')).toBe(46);
    const kinds = (await h.credits.listTransactions('meter-low')).transactions.map((t) => [t.kind, t.amount]);
    expect(kinds).toEqual([['settle', 6], ['usage', -10], ['grant', 50]]);
    await expectLedgerConsistent('meter-low');
  });

  it('settles above the reservation by charging the difference', async () => {
    await h.credits.grantCredits('meter-high', 50, { idempotencyKey: 'start' });
    const res = await post(`${h.url}/ai/metered`, 'meter-high', undefined, { 'x-used': '25' });
    expect(await res.json()).toEqual({ charged: 25, balance: 25 });
    await expectLedgerConsistent('meter-high');
  });

  it('caps an overage the balance cannot cover (default policy) and records what was requested', async () => {
    await h.credits.grantCredits('meter-cap', 15, { idempotencyKey: 'start' });
    const res = await post(`${h.url}/ai/metered`, 'meter-cap', undefined, { 'x-used': '40' });
    expect(await res.json()).toEqual({ charged: 15, balance: 0 });
    const [settle] = (await h.credits.listTransactions('meter-cap')).transactions;
    expect(settle).toMatchObject({ kind: 'settle', amount: -5, balanceAfter: 0, ref: { requested: 40, note: expect.stringMatching(/25 credits not covered/) } });
    await expectLedgerConsistent('meter-cap');
  });

  it('charges the full cost for a valid dynamic cost, and refuses a bad one with 400 and no charge', async () => {
    await h.credits.grantCredits('dyn', 20, { idempotencyKey: 'start' });
    expect(await (await post(`${h.url}/ai/dynamic`, 'dyn', undefined, { 'x-cost': '7' })).json()).toEqual({ charged: 7 });
    for (const bad of ['0', '-1', '1.5', 'abc', '1e400']) {
      const res = await post(`${h.url}/ai/dynamic`, 'dyn', undefined, { 'x-cost': bad });
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe('invalid_amount');
    }
    expect(await balanceOf('dyn')).toBe(13);
  });

  it('charges a request with an Idempotency-Key once; a duplicate gets 409 while it runs, its answer after (replay.test.ts)', async () => {
    await h.credits.grantCredits('idem', 10, { idempotencyKey: 'start' });
    calls.length = 0;
    const headers = { 'idempotency-key': 'req-123' };
    const first = await Promise.all(Array.from({ length: 10 }, () => post(`${h.url}/ai/one`, 'idem', undefined, headers)));
    const ran = first.filter((r) => r.status === 200 && r.headers.get('idempotent-replayed') === null);
    expect(ran).toHaveLength(1);
    for (const r of first) if (r !== ran[0]) expect([409, 200]).toContain(r.status);
    await h.credits.flush();
    const later = await post(`${h.url}/ai/one`, 'idem', undefined, headers);
    expect(later.status).toBe(200);
    expect(later.headers.get('idempotent-replayed')).toBe('true');
    expect(await later.json()).toEqual(await ran[0]!.json());
    expect(calls).toHaveLength(1);
    expect(await balanceOf('idem')).toBe(9);
    // The same key from another user is another request.
    await h.credits.grantCredits('idem-2', 1, { idempotencyKey: 'start' });
    expect((await post(`${h.url}/ai/one`, 'idem-2', undefined, headers)).status).toBe(200);
  });

  it('refuses a malformed Idempotency-Key with 400', async () => {
    const res = await post(`${h.url}/ai/one`, 'idem', undefined, { 'idempotency-key': 'x'.repeat(300) });
    expect(res.status).toBe(400);
  });

  it('throws when the middleware is created with a bad cost, not on the first request', () => {
    for (const bad of [0, -1, 1.5, NaN, Infinity, '5', null, {}, 2 ** 53]) {
      expect(() => h.credits.requireCredits(bad as never)).toThrow(CreditsConfigError);
    }
  });

  it('says how to fix a route that mounts requireCredits without calling it', async () => {
    const app = express();
    app.post('/oops', h.credits.requireCredits as never, (_req, res) => res.json({ ran: true }));
    app.use(((err, _req, res, _next) => res.status(500).json({ message: (err as Error).message })) as ErrorRequestHandler);
    const server = await listen(app);
    try {
      const res = await post(`${server.url}/oops`, 'viewer');
      expect(res.status).toBe(500);
      expect((await res.json()).message).toMatch(/mounted without a cost\. Call it: app\.post\(path, credits\.requireCredits\(5\), handler\)/);
    } finally {
      await server.close();
    }
  });
});

describe('deductCredits, grantCredits, getBalance', () => {
  it('deducts when the balance covers it and answers false, changing nothing, when it does not', async () => {
    await h.credits.grantCredits('seed', 5, { idempotencyKey: 'start' });
    expect(await h.credits.deductCredits('seed', 3)).toBe(true);
    expect(await h.credits.deductCredits('seed', 3)).toBe(false);
    expect(await h.credits.getBalance('seed')).toBe(2);
    expect(await h.credits.deductCredits('no-account', 1)).toBe(false);
    await expectLedgerConsistent('seed');
  });

  it('deducts at most once per idempotency key, even when retried concurrently', async () => {
    await h.credits.grantCredits('retry', 10, { idempotencyKey: 'start' });
    const results = await Promise.all(
      Array.from({ length: 20 }, () => h.credits.deductCredits('retry', 4, { idempotencyKey: 'job-1' })),
    );
    expect(results.every((r) => r === true)).toBe(true);
    expect(await h.credits.getBalance('retry')).toBe(6);
    expect(await h.credits.deductCredits('retry', 4, { idempotencyKey: 'job-1' })).toBe(true);
    expect(await h.credits.getBalance('retry')).toBe(6);
  });

  it('grants at most once per key', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => h.credits.grantCredits('granted', 25, { idempotencyKey: 'welcome', reason: 'Welcome bonus' })),
    );
    expect(results.filter((r) => r.granted)).toHaveLength(1);
    expect(await h.credits.getBalance('granted')).toBe(25);
    const [entry] = (await h.credits.listTransactions('granted')).transactions;
    expect(entry).toMatchObject({ kind: 'grant', amount: 25, balanceAfter: 25, reason: 'Welcome bonus' });
  });

  it.each([0, -5, 1.5, NaN, Infinity, 2 ** 53, '5', null, undefined, { $gt: 0 }, [1]])(
    'refuses the amount %p with a typed error and changes nothing',
    async (bad) => {
      await expect(h.credits.deductCredits('seed', bad as never)).rejects.toMatchObject({ code: 'invalid_amount' });
      await expect(h.credits.grantCredits('seed', bad as never, { idempotencyKey: 'bad' })).rejects.toMatchObject({ code: 'invalid_amount' });
      expect(await h.credits.getBalance('seed')).toBe(2);
    },
  );

  it.each([{ $ne: '' }, { $gt: '' }, ['a'], 42, '', null])('refuses the user id %p before it reaches a query', async (bad) => {
    await expect(h.credits.deductCredits(bad as never, 1)).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(h.credits.getBalance(bad as never)).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it('refuses a bad page request in listTransactions as the HTTP route does: 400-style errors, not NaN cursors', async () => {
    for (const bad of [{ cursor: 'abc' }, { cursor: '1.5' }, { limit: 0 }, { limit: 1001 }, { limit: 2.5 }]) {
      await expect(h.credits.listTransactions('pager', bad as never)).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    }
    await expect(h.credits.listTransactions('pager', { limit: 1000, cursor: null })).resolves.toMatchObject({ transactions: [] });
  });

  it('pages the ledger newest first with a cursor', async () => {
    for (let i = 1; i <= 5; i++) await h.credits.grantCredits('pager', i, { idempotencyKey: `g${i}` });
    const first = await h.credits.listTransactions('pager', { limit: 2 });
    expect(first.transactions.map((t) => t.amount)).toEqual([5, 4]);
    const second = await h.credits.listTransactions('pager', { limit: 2, cursor: first.nextCursor });
    expect(second.transactions.map((t) => t.amount)).toEqual([3, 2]);
    const third = await h.credits.listTransactions('pager', { limit: 2, cursor: second.nextCursor });
    expect(third.transactions.map((t) => t.amount)).toEqual([1]);
    expect(third.nextCursor).toBeNull();
  });
});

describe('balance and transactions routes', () => {
  it('answers the signed-in user’s balance and ledger', async () => {
    const res = await get(`${h.url}/api/credits/balance`, 'pager');
    expect(await res.json()).toEqual({ balance: 15, creditName: 'credits' });
    const tx = await (await get(`${h.url}/api/credits/transactions?limit=2`, 'pager')).json();
    expect(tx.transactions).toHaveLength(2);
    expect(tx.nextCursor).toEqual(expect.any(String));
    expect((await get(`${h.url}/api/credits/balance`, null)).status).toBe(401);
    expect((await get(`${h.url}/api/credits/transactions?limit=abc`, 'pager')).status).toBe(400);
  });
});

describe('createCredits options', () => {
  it('fails at start-up with a message that says what to do', () => {
    const connection = h.connection;
    expect(() => createCredits({ connection, getUserId: headerUser, timeoutMS: 5 } as never)).toThrow(/Did you mean `timeoutMs`/);
    expect(() => createCredits({ getUserId: headerUser } as never)).toThrow(/mongoose Connection/);
    expect(() => createCredits({ connection } as never)).toThrow(/getUserId/);
    expect(() => createCredits({ connection, getUserId: headerUser, stripe: {} as never })).toThrow(/webhookSecret/);
    expect(() => createCredits({ connection, getUserId: headerUser, overage: 'free' as never })).toThrow(/overage/);
  });
});
