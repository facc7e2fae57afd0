/**
 * Test helpers: a fresh database per test file on the server the run uses (the embedded one unless
 * MONGODB_URI is set), a real HTTP server on a loopback port, and a Stripe client pointed at stripe-mock.
 */
import { randomUUID } from 'node:crypto';
import { createServer, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request } from 'express';
import mongoose, { type Connection } from 'mongoose';
import Stripe from 'stripe';
import { createCredits, type CreateCreditsOptions, type Credits } from 'credit-kit/server';
import { checkoutSession, eventPayload, signPayload } from '../../tools/stripe-events';

export const WEBHOOK_SECRET = 'whsec_test_credit_kit';

export function mongoUri(): string {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('MONGODB_URI is not set: run the tests through jest, whose global setup starts the server.');
  return uri;
}

export async function connect(uri = mongoUri()): Promise<Connection> {
  const connection = mongoose.createConnection(uri, {
    dbName: `ck_${randomUUID().replace(/-/g, '').slice(0, 16)}`,
    serverSelectionTimeoutMS: 2000,
    maxPoolSize: 50,
  });
  await connection.asPromise();
  return connection;
}

export { stripeMockClient } from '../../tools/stripe-mock-client';

/** Test sign-in: the user id comes from the `x-test-user` header (a stand-in for the app's session). */
export const headerUser = (req: Request) => req.get('x-test-user') ?? null;

export async function listen(app: Express): Promise<{ url: string; close: () => Promise<void> }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return served(server);
}

/** A listening loopback server's URL, and a close() that also ends kept-alive connections. */
export function served(server: Server): { url: string; close: () => Promise<void> } {
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Harness {
  connection: Connection;
  credits: Credits;
  app: Express;
  url: string;
  close(): Promise<void>;
}

/** An Express app with the kit's router at /api and whatever routes `setup` adds, served on loopback. */
export async function harness(
  setup: (app: Express, credits: Credits) => void = () => undefined,
  options: Partial<CreateCreditsOptions> = {},
): Promise<Harness> {
  const connection = await connect();
  // On the embedded server hundreds of concurrent writes of one account queue behind each other at its gate
  // for seconds. Tests about timeouts set their own bound.
  const credits = createCredits({ connection, getUserId: headerUser, timeoutMs: 20_000, claimLeaseMs: 60_000, ...options });
  await credits.init();
  const app = express();
  app.use('/api', credits.router());
  setup(app, credits);
  const server = await listen(app);
  return {
    connection,
    credits,
    app,
    url: server.url,
    async close() {
      await credits.flush();
      await server.close();
      await connection.close();
    },
  };
}

/**
 * Two guarded AI routes for ledger tests: POST /ai/fail is charged `fail` and throws (a give-back), POST
 * /ai/meter reserves `meter` and settles what the `x-used` header says. Passed to requireCredits, the
 * handler's rejection is a 500 (and a give-back) on Express 4 as on Express 5.
 */
export function aiRoutes(app: Express, credits: Credits, cost: { fail: number; meter: number }): void {
  app.post('/ai/fail', credits.requireCredits(cost.fail), () => {
    throw new Error('model failed');
  });
  app.post('/ai/meter', credits.requireCredits(cost.meter, async (req, res) => {
    res.json(await req.credits!.settle(Number(req.get('x-used'))));
  }));
}

export function post(url: string, user: string | null, body?: unknown, headers: Record<string, string> = {}) {
  return fetch(url, {
    method: 'POST',
    headers: {
      ...(user ? { 'x-test-user': user } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
}

export function get(url: string, user: string | null) {
  return fetch(url, { headers: user ? { 'x-test-user': user } : {} });
}

/** Sums every ledger entry of a user, page by page, and returns it with the balance the pages lead to. */
/**
 * After flush(): the user's ledger audited, and checked to add up to the balance the kit reports. For the
 * Express and Fetch kits alike.
 */
export async function consistentAudit(
  credits: Pick<Credits, 'listTransactions' | 'flush' | 'getBalance'>,
  userId: string,
): Promise<Awaited<ReturnType<typeof audit>>> {
  await credits.flush();
  const a = await audit(credits, userId);
  expect(a.sum).toBe(a.balance);
  expect(a.balance).toBe(await credits.getBalance(userId));
  return a;
}

export async function audit(credits: Pick<Credits, 'listTransactions'>, userId: string): Promise<{ balance: number; sum: number; entries: number; kinds: Record<string, number> }> {
  let cursor: string | null = null;
  let sum = 0;
  let entries = 0;
  let balance: number | undefined;
  const kinds: Record<string, number> = {};
  do {
    const page = await credits.listTransactions(userId, { limit: 1000, cursor });
    balance ??= page.balance;
    for (const t of page.transactions) {
      sum += t.amount;
      entries++;
      kinds[t.kind] = (kinds[t.kind] ?? 0) + 1;
    }
    cursor = page.nextCursor;
  } while (cursor);
  return { balance: balance ?? 0, sum, entries, kinds };
}

export interface RecordedStripeRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The form-encoded body parsed into its keys, as Stripe reads it. */
  form: URLSearchParams;
}

/**
 * A loopback proxy in front of stripe-mock that records what stripe-node sends: stripe-mock still checks
 * every request against Stripe's OpenAPI spec, and the test can see the exact parameters. `replaceAnswer`
 * (for a named test fake only, e.g. stripe-card-fake.ts) may answer a request itself once stripe-mock has
 * seen it and answered: the request is still checked, only the answer the kit gets is the fake's.
 */
export async function recordingStripe(
  options: { replaceAnswer?: (req: RecordedStripeRequest) => ((res: ServerResponse) => void) | null } = {},
): Promise<{ stripe: Stripe; requests: RecordedStripeRequest[]; close(): Promise<void> }> {
  const target = new URL(process.env.STRIPE_MOCK_URL ?? 'http://127.0.0.1:12111');
  const requests: RecordedStripeRequest[] = [];
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const recorded: RecordedStripeRequest = { method: req.method!, path: req.url!, headers: req.headers, form: new URLSearchParams(body.toString()) };
      requests.push(recorded);
      const answer = options.replaceAnswer?.(recorded) ?? null;
      const upstream = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          if (!answer) {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
            return;
          }
          up.resume();
          up.on('end', () => answer(res));
        },
      );
      upstream.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const { port } = proxy.address() as AddressInfo;
  const stripe = new Stripe('sk_test_123', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 0 });
  const close = () =>
    new Promise<void>((r) => {
      proxy.closeAllConnections();
      proxy.close(() => r());
    });
  return { stripe, requests, close };
}

/** A Stripe event delivered the way Stripe does: JSON body and a Stripe-Signature made with the secret. */
export function signedDelivery(
  stripe: Stripe,
  event: { id?: string; type: string; object: unknown },
  opts: { secret?: string; timestamp?: number } = {},
): { body: string; headers: Record<string, string> } {
  return signPayload(stripe, eventPayload(event), { ...opts, secret: opts.secret ?? WEBHOOK_SECRET });
}

/** `n` concurrent POSTs to `url` as `user`: exactly `allowed` of them must be answered 200, and the rest 402. */
export async function crowdThrough(url: string, user: string, n: number, allowed: number): Promise<void> {
  const responses = await Promise.all(Array.from({ length: n }, () => post(url, user)));
  const statuses = responses.map((r) => r.status);
  expect(statuses.filter((s) => s === 200)).toHaveLength(allowed);
  expect(statuses.filter((s) => s === 402)).toHaveLength(n - allowed);
}

/** Posts a signed delivery to the kit's webhook route (the router mounted at /api under `url`); the status and the JSON answer. */
export async function postWebhook(url: string, d: { body: string; headers: Record<string, string> }): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/api/stripe/webhook`, { method: 'POST', headers: d.headers, body: d.body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * A Checkout Session bought through the kit's own checkout route, so the kit has recorded it, as Stripe
 * sends it back once paid: the id stripe-mock gave it, with what the kit asked for. The app must mount the
 * kit's router at /api with `stripe` and `publicUrl` set.
 */
export async function recordedSession(
  url: string,
  user: string,
  credits: number,
  overrides: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const res = await post(`${url}/api/stripe/checkout/credits`, user, { quantity: credits });
  if (res.status !== 201) throw new Error(`the checkout route answered ${res.status}: ${await res.text()}`);
  const { id, amount } = (await res.json()) as { id: string; amount: number };
  return checkoutSession(user, credits, { id, amount_total: amount, ...overrides });
}

export { checkoutSession };
