/**
 * The `logger` option over real HTTP: expected answers log nothing; anything else logs one line with its
 * code, with the stack only for an error the kit did not expect.
 */
import express, { type Express, type Request } from 'express';
import { createCredits, type CreditStore, type Credits, type LogLevel, type LogRecord } from 'credit-kit/server';
import { MongoCreditStore } from '../store/mongo-store';
import { connect, get, harness, headerUser, listen, post, stripeMockClient, WEBHOOK_SECRET, type Harness } from './helpers';

interface Logged {
  level: LogLevel;
  line: string;
  record: LogRecord;
}

const logged: Logged[] = [];
const capture = (level: LogLevel, line: string, record: LogRecord) => void logged.push({ level, line, record });

/** The signed-in user, except that `x-boom` makes the app's getUserId throw and `x-number` return a number. */
const getUserId = (req: Request) => {
  if (req.get('x-boom')) throw new TypeError('the session store exploded');
  if (req.get('x-number')) return 42 as unknown as string;
  return headerUser(req);
};

let h: Harness;
beforeAll(async () => {
  h = await harness(
    (app, credits) => {
      app.post('/ai', credits.requireCredits(5), (_req, res) => res.json({ ok: true }));
    },
    { getUserId, logger: capture, stripe: stripeMockClient(), webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com' },
  );
});
afterAll(() => h.close());
beforeEach(() => (logged.length = 0));

describe('expected conditions log nothing', () => {
  it.each([
    ['401: nobody signed in', () => post(`${h.url}/ai`, null), 401],
    ['402: not enough credits', () => post(`${h.url}/ai`, 'poor'), 402],
    ['400: a bad page request', () => get(`${h.url}/api/credits/transactions?limit=abc`, 'poor'), 400],
    ['400: a bad checkout body', () => post(`${h.url}/api/stripe/checkout/credits`, 'poor', { quantity: -1 }), 400],
    ['415: a form body', () => post(`${h.url}/api/stripe/checkout/credits`, 'poor', 'quantity=1', { 'content-type': 'application/x-www-form-urlencoded' }), 415],
    ['404: another user’s checkout session', () => get(`${h.url}/api/stripe/checkout/session/cs_test_someone_else`, 'poor'), 404],
    ['400: a forged webhook', () => post(`${h.url}/api/stripe/webhook`, null, '{}', { 'stripe-signature': 't=1,v1=00' }), 400],
  ])('%s', async (_what, send, status) => {
    const res = await send();
    expect(res.status).toBe(status);
    await h.credits.flush();
    expect(logged).toEqual([]);
  });

  it('501: a feature that is not configured', async () => {
    const connection = await connect();
    try {
      const credits = createCredits({ connection, getUserId: headerUser, logger: capture });
      const { server } = await serve(credits);
      const res = await post(`${server.url}/api/stripe/checkout/credits`, 'someone', { quantity: 100 });
      expect(res.status).toBe(501);
      expect((await res.json()).error.code).toBe('not_configured');
      await server.close();
      await credits.flush();
      expect(logged).toEqual([]);
    } finally {
      await connection.close();
    }
  });
});

describe('unexpected conditions log one line with the code', () => {
  it('an error thrown by the app’s getUserId: one error line, with the stack below it', async () => {
    const res = await post(`${h.url}/ai`, 'someone', undefined, { 'x-boom': '1' });
    expect(res.status).toBe(500);
    expect((await res.json()).error.code).toBe('internal');
    expect(logged).toHaveLength(1);
    const [{ level, line, record }] = logged as [Logged];
    expect(level).toBe('error');
    expect(line).toBe('[credit-kit] internal (POST /ai): TypeError: the session store exploded');
    expect(record).toMatchObject({ code: 'internal', where: 'POST /ai', stack: expect.stringContaining('logger.test.ts') });
  });

  it('a misconfiguration: one error line that says what is wrong, no stack', async () => {
    const res = await post(`${h.url}/ai`, 'someone', undefined, { 'x-number': '1' });
    expect(res.status).toBe(500);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.line).toMatch(/^\[credit-kit\] misconfigured \(POST \/ai\): getUserId\(req\) must return a string/);
    expect(logged[0]!.record.stack).toBeUndefined();
  });

  it('a database that fails on the request path and in background work: one warning each, no stack', async () => {
    const connection = await connect();
    try {
      const store = failing(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), {
        getAccount: 'connection reset by the database',
        insertLedgerEntries: 'the ledger collection refused the write',
      });
      const credits = createCredits({ store, getUserId: headerUser, logger: capture, timeoutMs: 5000 });
      await credits.init();
      const { server } = await serve(credits);
      const res = await get(`${server.url}/api/credits/balance`, 'someone');
      expect(res.status).toBe(503);
      expect(await credits.grantCredits('someone', 5, { idempotencyKey: 'g' })).toMatchObject({ granted: true });
      await credits.flush(); // the journal move fails in the background
      await server.close();
      expect(logged.map((l) => [l.level, l.line, l.record.stack])).toEqual([
        ['warn', '[credit-kit] store_unavailable (GET /api/credits/balance): The credits database is unavailable; try again shortly. (connection reset by the database)', undefined],
        ['warn', '[credit-kit] store_unavailable (background work): The credits database is unavailable; try again shortly. (the ledger collection refused the write)', undefined],
      ]);
    } finally {
      await connection.close();
    }
  });

  it('hooks.onBackgroundError, when given, is told instead of the logger', async () => {
    const connection = await connect();
    try {
      const store = failing(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), { insertLedgerEntries: 'refused' });
      const told: unknown[] = [];
      const credits = createCredits({ store, getUserId: headerUser, logger: capture, hooks: { onBackgroundError: (err) => told.push(err) } });
      await credits.grantCredits('someone', 5, { idempotencyKey: 'g' });
      await credits.flush();
      expect(told).toHaveLength(1);
      expect(logged).toEqual([]);
    } finally {
      await connection.close();
    }
  });

  it('an object logger gets (line, record) on warn or error, and one that throws changes no answer', async () => {
    const lines: string[] = [];
    const connection = await connect();
    try {
      const credits = createCredits({
        connection,
        getUserId,
        logger: {
          warn: (line: string) => lines.push(`warn ${line}`),
          error: (line: string) => {
            lines.push(`error ${line}`);
            throw new Error('the log service is down');
          },
        },
      });
      const { server } = await serve(credits, (app) => app.post('/ai', credits.requireCredits(1), (_req, res) => res.json({})));
      const res = await post(`${server.url}/ai`, 'someone', undefined, { 'x-boom': '1' });
      expect(res.status).toBe(500);
      expect((await res.json()).error.code).toBe('internal');
      await server.close();
      expect(lines).toEqual(['error [credit-kit] internal (POST /ai): TypeError: the session store exploded']);
    } finally {
      await connection.close();
    }
  });
});

describe('the default logger', () => {
  it('prints one line on stderr, and the stack frames below it only for an unexpected error', async () => {
    const error = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const connection = await connect();
    try {
      const store = failing(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), { getAccount: 'connection reset' });
      const credits = createCredits({ store, getUserId });
      const { server } = await serve(credits, (app) => app.post('/ai', credits.requireCredits(1), (_req, res) => res.json({})));
      expect((await post(`${server.url}/ai`, null)).status).toBe(401);
      expect((await post(`${server.url}/ai`, 'someone', undefined, { 'x-boom': '1' })).status).toBe(500);
      expect((await get(`${server.url}/api/credits/balance`, 'someone')).status).toBe(503);
      await server.close();

      expect(error).toHaveBeenCalledTimes(1);
      const [text] = error.mock.calls[0] as [string];
      const [first, ...frames] = text.split('\n');
      expect(first).toBe('[credit-kit] internal (POST /ai): TypeError: the session store exploded');
      expect(frames.length).toBeGreaterThan(0);
      expect(frames.every((f) => /^\s+at /.test(f))).toBe(true);

      expect(warn.mock.calls).toEqual([
        ['[credit-kit] store_unavailable (GET /api/credits/balance): The credits database is unavailable; try again shortly. (connection reset)'],
      ]);
    } finally {
      error.mockRestore();
      warn.mockRestore();
      await connection.close();
    }
  });
});

/** The real MongoDB store, except that the named methods reject with the given message (a database fault). */
function failing(store: CreditStore, faults: Partial<Record<keyof CreditStore, string>>): CreditStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      const fault = faults[prop as keyof CreditStore];
      if (typeof value !== 'function') return value;
      if (fault) return () => Promise.reject(new Error(fault));
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

/** The kit's router and `routes` on a loopback port. */
async function serve(credits: Credits, routes: (app: Express) => void = () => undefined) {
  const app = express();
  app.use('/api', credits.router());
  routes(app);
  return { server: await listen(app) };
}

describe('an outage', () => {
  it('prints one warning per place every 10 s, then says how many it held back; errors are never held back', async () => {
    const lines: string[] = [];
    const connection = await connect();
    let now = Date.now();
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => now);
    try {
      const store = failing(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), { getAccount: 'the database is down' });
      const credits = createCredits({ store, getUserId, logger: (_level, line) => void lines.push(line), timeoutMs: 5000 });
      const { server } = await serve(credits);
      try {
        for (let i = 0; i < 20; i++) expect((await get(`${server.url}/api/credits/balance`, 'someone')).status).toBe(503);
        expect(lines).toHaveLength(1);
        now += 10_001;
        expect((await get(`${server.url}/api/credits/balance`, 'someone')).status).toBe(503);
        expect(lines).toHaveLength(2);
        expect(lines[1]).toContain('(19 more like it in the last 10 s not printed)');
        // An unexpected error is a bug, not an outage: every one is printed.
        for (let i = 0; i < 3; i++) await fetch(`${server.url}/api/credits/balance`, { headers: { 'x-test-user': 'someone', 'x-boom': '1' } });
      } finally {
        await server.close();
      }
    } finally {
      clock.mockRestore();
      await connection.close();
    }
    expect(lines.filter((l) => l.includes('store_unavailable'))).toHaveLength(2);
    expect(lines.filter((l) => l.includes('internal'))).toHaveLength(3);
  });
});
