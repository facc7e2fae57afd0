/**
 * The `rateLimit` option's limiter (server/http/rate-limit.ts) in a real Express app over HTTP. The window's
 * clock is handed in, so that a window ends exactly when a test says and not when a busy machine lets it.
 * server/reliability/hostile.test.ts checks the option end to end (429 JSON, nothing charged, no Stripe call).
 */
import express from 'express';
import { addressKey, fixedWindowLimiter } from '../http/rate-limit';
import { listen } from './helpers';

async function limitedApp(options: { limit: number; windowMs: number; key?: (req: express.Request) => string | Promise<string> }) {
  let clock = 1_000_000;
  let runs = 0;
  const app = express();
  app.get(
    '/work',
    fixedWindowLimiter({
      windowMs: options.windowMs,
      limit: options.limit,
      key: options.key ?? ((req) => req.get('x-user') ?? 'nobody'),
      refuse: (_req, res) => void res.status(429).json({ error: { code: 'rate_limited' } }),
      now: () => clock,
    }),
    (_req, res) => {
      runs++;
      res.json({ ok: true });
    },
  );
  app.use(((err, _req, res, _next) => void res.status(500).json({ error: String((err as Error).message) })) as express.ErrorRequestHandler);
  const server = await listen(app);
  return {
    server,
    get runs() {
      return runs;
    },
    advance: (ms: number) => void (clock += ms),
    call: (user: string) => fetch(`${server.url}/work`, { headers: { 'x-user': user } }),
  };
}

it('lets `limit` requests through per key and window, refuses the rest with Retry-After, and opens a new window when it ends', async () => {
  const app = await limitedApp({ limit: 2, windowMs: 10_000 });
  try {
    const first = await app.call('ada');
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toBe('"2-in-10sec"; q=2; w=10');
    expect(first.headers.get('ratelimit')).toBe('"2-in-10sec"; r=1; t=10');
    expect(first.headers.get('retry-after')).toBeNull();

    app.advance(4_000);
    expect((await app.call('ada')).status).toBe(200);
    const refused = await app.call('ada');
    expect(refused.status).toBe(429);
    expect(await refused.json()).toEqual({ error: { code: 'rate_limited' } });
    expect(refused.headers.get('ratelimit')).toBe('"2-in-10sec"; r=0; t=6');
    expect(refused.headers.get('retry-after')).toBe('6');
    // Another key has its own window.
    expect((await app.call('bob')).status).toBe(200);
    expect(app.runs).toBe(3);

    // Ada's window opened at her first request: it ends 10 s after it, not after her last one.
    app.advance(5_999);
    expect((await app.call('ada')).status).toBe(429);
    app.advance(1);
    const reopened = await app.call('ada');
    expect(reopened.status).toBe(200);
    expect(reopened.headers.get('ratelimit')).toBe('"2-in-10sec"; r=1; t=10');
    expect(app.runs).toBe(4);
  } finally {
    await app.server.close();
  }
});

it('fails closed: a key function that throws or rejects answers through next(err) and runs nothing', async () => {
  const app = await limitedApp({
    limit: 5,
    windowMs: 1_000,
    key: (req) => {
      if (req.get('x-user') === 'sync') throw new Error('session store down');
      return Promise.reject(new Error('session store slow'));
    },
  });
  try {
    const thrown = await app.call('sync');
    expect(thrown.status).toBe(500);
    expect(await thrown.json()).toEqual({ error: 'session store down' });
    const rejected = await app.call('async');
    expect(rejected.status).toBe(500);
    expect(await rejected.json()).toEqual({ error: 'session store slow' });
    expect(app.runs).toBe(0);
  } finally {
    await app.server.close();
  }
});

it('keys an address: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by its /56 network', () => {
  expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
  expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
  expect(addressKey('2001:db8:abcd:12ff:1:2:3:4')).toBe('2001:db8:abcd:1200::/56');
  // The same /56, written differently, is one key; the next /56 is another.
  expect(addressKey('2001:0db8:abcd:1201::9')).toBe('2001:db8:abcd:1200::/56');
  expect(addressKey('2001:db8:abcd:1300::1')).toBe('2001:db8:abcd:1300::/56');
  expect(addressKey('::1')).toBe('0:0:0:0::/56');
  expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/56');
  expect(addressKey('64:ff9b::198.51.100.1')).toBe('64:ff9b:0:0::/56');
  expect(addressKey('')).toBe('');
});
