/**
 * Async route handlers behind requireCredits, on Express 5 (`npm test`) and Express 4
 * (`npm run test:express4-mongoose8`). Express 5 sends a rejected handler promise to next(err); Express 4
 * ignores it, so a rejected handler mounted after requireCredits(cost) is never answered, ends the process
 * (Node's default for an unhandled rejection) and keeps the charge. requireCredits(cost, handler) runs the
 * handler itself and sends the rejection to next(err) on both, and the failed answer is refunded.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import type { ErrorRequestHandler, Express, RequestHandler } from 'express';
import { CreditsConfigError, type Credits } from 'credit-kit/server';
import { audit, get, harness, mongoUri, post, type Harness } from './helpers';

declare const CREDIT_KIT_EXPRESS_MAJOR: string | undefined;
const expressMajor = typeof CREDIT_KIT_EXPRESS_MAJOR === 'string' ? Number(CREDIT_KIT_EXPRESS_MAJOR) : 5;

let h: Harness;
let calls = 0;

const later = () => new Promise((r) => setTimeout(r, 5));

function routes(app: Express, credits: Credits) {
  app.post('/ai/async-throws', credits.requireCredits(3, async () => {
    await later();
    throw new Error('model crashed later');
  }));
  app.post('/ai/throws', credits.requireCredits(3, () => {
    throw new Error('model crashed');
  }));
  app.post('/ai/rejects-nothing', credits.requireCredits(3, () => Promise.reject(undefined)));
  // Metered: reserve 10, settle what was used, then fail or answer.
  app.post('/ai/metered', credits.requireCredits(10, async (req, res) => {
    await later();
    const settled = await req.credits!.settle(Number(req.get('x-used')));
    if (req.get('x-fail-after-settle')) throw new Error('the answer could not be built');
    res.json(settled);
  }));
  app.post('/ai/one', credits.requireCredits(1, async (req, res) => {
    calls++;
    await later();
    res.json({ balance: req.credits!.balance });
  }));
  // The handler may hand on to the next one, as any route handler can.
  app.post('/ai/chain', credits.requireCredits(2, (_req, _res, next) => next()), ((req, res) => {
    res.json({ charged: req.credits!.charged });
  }) as RequestHandler);
  // The app's own error handler: what a failed guarded route answers.
  app.use(((err, _req, res, _next) => {
    res.status(500).json({ error: { code: 'route_failed', message: err instanceof Error ? err.message : String(err) } });
  }) as ErrorRequestHandler);
}

beforeAll(async () => {
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
  h = await harness(routes);
});
afterAll(() => h.close());

async function expectRefunded(user: string, start: number) {
  // The refund is durable before the failed answer is sent: no wait, no flush.
  expect(await h.credits.getBalance(user)).toBe(start);
  await h.credits.flush();
  const a = await audit(h.credits, user);
  expect(a.sum).toBe(a.balance);
  expect(a.balance).toBe(start);
  return a;
}

describe('requireCredits(cost, handler)', () => {
  it.each([
    ['a rejected async handler', '/ai/async-throws', 'model crashed later'],
    ['a handler that throws', '/ai/throws', 'model crashed'],
    ['a promise rejected with nothing', '/ai/rejects-nothing', 'Rejected promise'],
  ])('sends %s to the app’s error handler and refunds the charge exactly once; the app stays up', async (_what, path, message) => {
    const user = `handler-${path}`;
    await h.credits.grantCredits(user, 10, { idempotencyKey: 'start' });
    const res = await post(`${h.url}${path}`, user);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: { code: 'route_failed', message } });
    await expectRefunded(user, 10);
    const [refund, usage] = (await h.credits.listTransactions(user)).transactions;
    expect(usage).toMatchObject({ kind: 'usage', amount: -3, balanceAfter: 7 });
    expect(refund).toMatchObject({ kind: 'refund', amount: 3, balanceAfter: 10, ref: { chargeId: usage!.id } });
    // Still serving.
    expect((await get(`${h.url}/api/credits/balance`, user)).status).toBe(200);
  });

  it('settles metered work, below and above the reservation', async () => {
    await h.credits.grantCredits('handler-meter', 50, { idempotencyKey: 'start' });
    expect(await (await post(`${h.url}/ai/metered`, 'handler-meter', undefined, { 'x-used': '4' })).json()).toEqual({ charged: 4, balance: 46 });
    expect(await (await post(`${h.url}/ai/metered`, 'handler-meter', undefined, { 'x-used': '25' })).json()).toEqual({ charged: 25, balance: 21 });
    const a = await expectRefunded('handler-meter', 21);
    expect(a.kinds).toEqual({ grant: 1, usage: 2, settle: 2 });
  });

  it('gives back what a settlement left charged when the handler rejects after settling', async () => {
    await h.credits.grantCredits('handler-meter-fail', 50, { idempotencyKey: 'start' });
    const res = await post(`${h.url}/ai/metered`, 'handler-meter-fail', undefined, { 'x-used': '4', 'x-fail-after-settle': '1' });
    expect(res.status).toBe(500);
    expect((await res.json()).error.message).toBe('the answer could not be built');
    await expectRefunded('handler-meter-fail', 50);
    const entries = (await h.credits.listTransactions('handler-meter-fail')).transactions.map((t) => [t.kind, t.amount, t.balanceAfter]);
    expect(entries).toEqual([['refund', 4, 50], ['settle', 6, 46], ['usage', -10, 40], ['grant', 50, 50]]);
  });

  it('guards as the middleware form does: 401, 402 and the route does not run', async () => {
    calls = 0;
    expect((await post(`${h.url}/ai/one`, null)).status).toBe(401);
    const refused = await post(`${h.url}/ai/one`, 'handler-broke');
    expect(refused.status).toBe(402);
    expect((await refused.json()).error).toMatchObject({ code: 'insufficient_credits', required: 1, balance: 0 });
    expect(calls).toBe(0);
    await h.credits.grantCredits('handler-ok', 2, { idempotencyKey: 'start' });
    expect(await (await post(`${h.url}/ai/one`, 'handler-ok')).json()).toEqual({ balance: 1 });
    expect(calls).toBe(1);
  });

  it('lets the handler call next() to the route’s next handler, which sees req.credits', async () => {
    await h.credits.grantCredits('handler-chain', 5, { idempotencyKey: 'start' });
    expect(await (await post(`${h.url}/ai/chain`, 'handler-chain')).json()).toEqual({ charged: 2 });
    expect(await h.credits.getBalance('handler-chain')).toBe(3);
  });

  it('refuses a handler that is not a function when the route is created', () => {
    // An object in its place is read as the guard's options ({ metered }), so one that is not is refused too.
    for (const bad of [null, 5, 'handler', { handle: () => undefined }, { metered: 'yes' }]) {
      expect(() => h.credits.requireCredits(5, bad as never)).toThrow(CreditsConfigError);
    }
    expect(() => h.credits.requireCredits(5, { metered: true }, 'handler' as never)).toThrow(CreditsConfigError);
    expect(() => h.credits.requireCredits(5, (_req, res) => res.end())).not.toThrow();
    expect(() => h.credits.requireCredits(5, { metered: true }, (_req, res) => res.end())).not.toThrow();
  });
});

describe(`the README's metered example, in an app of its own on Express ${expressMajor}`, () => {
  let child: ChildProcessWithoutNullStreams;
  let url: string;
  let stderr = '';
  let exited: Promise<number | null>;

  beforeAll(async () => {
    child = spawn(
      process.execPath,
      ['-r', 'tsx/cjs', join(__dirname, 'readme-chat-app.ts'), require.resolve('express'), require.resolve('mongoose'), mongoUri(), h.connection.name],
      { env: { ...process.env, NODE_ENV: 'test' } },
    );
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const ready = /ready (\d+)/.exec(out);
        if (ready) resolve(`http://127.0.0.1:${ready[1]}`);
      });
      void exited.then((code) => reject(new Error(`the app exited (${code}) before it was ready:\n${stderr}`)));
    });
  });
  afterAll(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill();
      await exited;
    }
  });

  const chat = (path: string, down: boolean) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'x-user-id': 'readme', ...(down ? { 'x-model': 'down' } : {}) } });

  it('requireCredits(50, handler): settles a model call, and refunds one that fails while the app stays up', async () => {
    await h.credits.grantCredits('readme', 100, { idempotencyKey: 'start' });
    const ok = await chat('/api/chat', false);
    expect(await ok.json()).toEqual({ text: 'hello' });
    expect(await h.credits.getBalance('readme')).toBe(87);
    const failed = await chat('/api/chat', true);
    expect(failed.status).toBe(500);
    expect(await h.credits.getBalance('readme')).toBe(87);
    expect(child.exitCode).toBeNull();
  });

  if (expressMajor >= 5) {
    it('requireCredits(50) as middleware: Express 5 sends the rejection to next(err), and it is refunded', async () => {
      const failed = await chat('/api/chat-middleware', true);
      expect(failed.status).toBe(500);
      expect(await h.credits.getBalance('readme')).toBe(87);
      expect(child.exitCode).toBeNull();
    });
  } else {
    it('requireCredits(50) as middleware: Express 4 leaves the rejection unhandled, the process ends and the charge stays', async () => {
      // Why the README tells Express 4 apps to pass async handlers to requireCredits.
      await expect(chat('/api/chat-middleware', true)).rejects.toThrow();
      expect(await exited).toBe(1);
      expect(stderr).toMatch(/Error: model down/);
      expect(await h.credits.getBalance('readme')).toBe(37);
    });
  }
});
