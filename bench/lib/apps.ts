/**
 * The benchmark's Express apps, one per scenario, each on its own loopback port, all on the same database
 * connection. Every app counts the requests that reach it, so database commands can be divided by the
 * requests the server actually handled (autocannon stops mid-flight at the end of a run).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request, type RequestHandler } from 'express';
import type { Collection } from 'mongodb';
import type Stripe from 'stripe';
import type { Credits } from 'credit-kit/server';
import { checkoutSession, eventPayload, purchaseRecordOf, signPayload } from '../../tools/stripe-events';
import type { RequestParts } from './load';

export interface Scenario {
  name: string;
  /** What the row measures, for the table's legend. */
  about: string;
  url: string;
  request: () => RequestParts;
  /** Requests that reached the app since the counter was last reset. */
  received: number;
  /** Requests that reached the app since it started (never reset). */
  served: number;
  close(): Promise<void>;
}

export interface BenchAccount {
  _id: string;
  balance: number;
}

export const USER_HEADER = 'x-user-id';
export const WEBHOOK_SECRET = 'whsec_credit_kit_bench';

export const userIdOf = (req: Request): string | null => req.get(USER_HEADER) ?? null;

async function serve(scenario: Omit<Scenario, 'url' | 'close' | 'received' | 'served'>, routes: (app: Express) => void, path: string): Promise<Scenario> {
  const app = express();
  const s: Scenario = { ...scenario, url: '', received: 0, served: 0, close: async () => undefined };
  app.use((_req, _res, next) => {
    s.received++;
    s.served++;
    next();
  });
  routes(app);
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  s.url = `http://127.0.0.1:${port}${path}`;
  s.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return s;
}

const asUser = (user: string): RequestParts => ({ headers: { [USER_HEADER]: user } });

export interface AppDeps {
  credits: Credits;
  raw: Collection<BenchAccount>;
  naive: Collection<BenchAccount>;
  stripe: Stripe;
  /** A user of the funded pool, chosen at random for each request. */
  pickUser: () => string;
  /** A user of the pool whose accounts each hold `grantsEach` open grants. */
  pickGrantUser: () => string;
  grantsEach: number;
  hotUser: string;
  replayUser: string;
}

function notEnough(res: express.Response, balance: number): void {
  res.status(402).json({ error: { code: 'insufficient_credits', required: 1, balance } });
}

export async function startScenarios(deps: AppDeps): Promise<Scenario[]> {
  const { credits, raw, naive, stripe, pickUser } = deps;
  const anyUser = () => asUser(pickUser());

  const unguarded = await serve(
    { name: 'unguarded', about: 'the route alone (the floor)', request: anyUser },
    (app) => app.post('/run', (_req, res) => void res.json({ ok: true })),
    '/run',
  );

  const rawOp = await serve(
    {
      name: 'raw-op',
      about: 'the route does one native findOneAndUpdate({ _id, balance: { $gte: 1 } }, { $inc: { balance: -1 } })',
      request: anyUser,
    },
    (app) =>
      app.post('/run', async (req, res) => {
        const doc = await raw.findOneAndUpdate(
          { _id: String(req.get(USER_HEADER)), balance: { $gte: 1 } },
          { $inc: { balance: -1 } },
          { returnDocument: 'after' },
        );
        if (!doc) return notEnough(res, 0);
        res.json({ ok: true, balance: doc.balance });
      }),
    '/run',
  );

  const guardedRoutes = (app: Express) =>
    app.post('/run', credits.requireCredits(1), (req, res) => void res.json({ ok: true, balance: req.credits!.balance }));

  const guarded = await serve(
    { name: 'requireCredits', about: 'credits.requireCredits(1), a random user of the pool per request', request: anyUser },
    guardedRoutes,
    '/run',
  );

  const manyGrants = await serve(
    {
      name: 'requireCredits-grants',
      about: `credits.requireCredits(1), a random user of a pool whose accounts each hold ${deps.grantsEach} open grants (priorities and expiries of their own)`,
      request: () => asUser(deps.pickGrantUser()),
    },
    guardedRoutes,
    '/run',
  );

  const hotRequest = asUser(deps.hotUser);
  const hot = await serve(
    { name: 'requireCredits-hot', about: 'credits.requireCredits(1), every request on one account', request: () => hotRequest },
    guardedRoutes,
    '/run',
  );

  const naiveApp = await serve(
    {
      name: 'naive',
      about: 'read-then-write: findOne, check the balance in the app, then updateOne({ _id }, { $inc: { balance: -1 } })',
      request: anyUser,
    },
    (app) =>
      app.post('/run', async (req, res) => {
        const _id = String(req.get(USER_HEADER));
        const doc = await naive.findOne({ _id });
        const balance = doc?.balance ?? 0;
        if (balance < 1) return notEnough(res, balance);
        await naive.updateOne({ _id }, { $inc: { balance: -1 } });
        res.json({ ok: true, balance: balance - 1 });
      }),
    '/run',
  );

  // The kit credits only sessions its checkout route recorded. The bench creates none through that route, so
  // this stand-in records each session from the delivery before the kit sees it (one more write per request,
  // which a real app pays at checkout time instead).
  const recordFirst: RequestHandler = (req, _res, next) => {
    const event = JSON.parse((req.body as Buffer).toString('utf8')) as { data: { object: Parameters<typeof purchaseRecordOf>[0] } };
    credits.store.insertPurchase(purchaseRecordOf(event.data.object)).then(() => next(), next);
  };
  const webhookRoutes = (app: Express) => app.use('/api/stripe/webhook', express.raw({ type: () => true }), recordFirst).use('/api', credits.router());
  let purchaseNo = 0;
  const runTag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const webhook = await serve(
    {
      name: 'webhook',
      about: 'signed checkout.session.completed, a new paid purchase of 100 credits each',
      request: () => sign(stripe, eventPayload({ type: 'checkout.session.completed', object: purchase(`cs_bench_${runTag}_${++purchaseNo}`, pickUser(), 100) })),
    },
    webhookRoutes,
    '/api/stripe/webhook',
  );

  // One event, delivered again and again; each delivery is signed afresh, as Stripe's retries are.
  const replayed = eventPayload({ id: `evt_bench_${runTag}_replayed`, type: 'checkout.session.completed', object: purchase(`cs_bench_${runTag}_replayed`, deps.replayUser, 100) });
  const replay = await serve(
    { name: 'webhook-replay', about: 'the same checkout.session.completed event delivered again', request: () => sign(stripe, replayed) },
    webhookRoutes,
    '/api/stripe/webhook',
  );

  return [unguarded, rawOp, guarded, manyGrants, hot, naiveApp, webhook, replay];
}

/** A new paid purchase of `credits` for `userId`, with the given session id. */
function purchase(id: string, userId: string, credits: number): Record<string, unknown> {
  return checkoutSession(userId, credits, { id, payment_intent: `pi_${id.slice(3)}` });
}

function sign(stripe: Stripe, payload: string): RequestParts {
  return signPayload(stripe, payload, { secret: WEBHOOK_SECRET });
}
