/**
 * One instance of the app the model-based checker (checker.test.ts) drives: a separate Node process with
 * its own clock (tools/skew-clock.cjs, CK_CLOCK_SKEW_MS) and its own path to the shared database (a fault
 * proxy the test controls), serving the kit's router and a few guarded and admin routes.
 *
 *   node -r tsx/cjs --require ./tools/skew-clock.cjs server/reliability/checker-instance.ts MONGO_URI DB_NAME NAME
 *
 * Environment: STRIPE_MOCK_URL (stripe-mock), CK_WEBHOOK_SECRET, CK_CLOCK_SKEW_MS, and optionally
 * CK_ALERT_LEVELS, CK_RECHARGE=1, CK_PLANS (the `plans` option, as JSON) and CK_MOVE_CRASHES (the chance
 * that a journal move's call to store books or pull journals fails, before the books, after them or after
 * the pull, as a crash between those writes would leave it). Prints `ready <port>` on stdout once it listens.
 *
 * Routes (user from the x-user header, the checker's request id from x-req):
 *   POST /ai/fixed      requireCredits(3); 200 {chargeId}, or with `x-fail: 1` a thrown error (500)
 *   POST /ai/metered    requireCredits(10); settle(x-used), then 200 {chargeId, charged};
 *                       `x-fail: before-settle` answers 500 first and settles afterwards;
 *                       `x-fail: after-settle` settles, then throws
 *   POST /ai/stream     requireCredits(10, { metered: true }), server-sent events: the charge id, x-used
 *                       tokens, settle(x-used), then a last event {done, charged}; `x-fail: error-first`
 *                       fails after the headers before any byte, `x-fail: error-later` settles, then fails
 *   POST /admin/grant   {user, amount, key, source?, priority?, expiresAt?, rollover?} → grantCredits
 *   POST /admin/expire  {now}                         → expireGrants (a simulated clock)
 *   POST /admin/revoke  {user, grant, key?, reason?}  → revokeGrant
 *   POST /admin/deduct  {user, amount, key?, reason}  → deductCredits
 *   POST /admin/reconcile, /admin/flush
 *   POST /admin/move-crashes {chance}                 → sets CK_MOVE_CRASHES (0: no more)
 *   GET  /admin/runs    what each request id did here: handler runs, charge ids, settlements
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import mongoose from 'mongoose';
import { createCredits } from '../index';
import { MongoCreditStore } from '../store/mongo-store';
import { crashingStore, type CrashPlan, type CrashPoint } from '../test/crashing-store';
import { stripeMockClient } from '../../tools/stripe-mock-client';

interface Run {
  /** How many times a guarded handler started for this request id (at most 1 is right). */
  runs: number;
  route: string;
  chargeIds: string[];
  reserved: number;
  /** What settle() was asked for and what it answered (or the error it threw). */
  settles: Array<{ used: number; charged?: number; error?: string }>;
}

async function main(): Promise<void> {
  const [uri, dbName, name] = process.argv.slice(2) as [string, string, string];
  if (!uri || !dbName || !name) throw new Error('usage: checker-instance.ts MONGO_URI DB_NAME NAME');
  const webhookSecret = process.env.CK_WEBHOOK_SECRET;
  if (!webhookSecret) throw new Error('CK_WEBHOOK_SECRET is not set');
  // The checker sets low-balance levels (its invariant 9); faults.test.ts runs this instance without them.
  const alertLevels = (process.env.CK_ALERT_LEVELS ?? '').split(',').filter(Boolean).map(Number);
  // The checker's subscription plans (its invariant 13); faults.test.ts runs this instance without them.
  const plans = process.env.CK_PLANS ? (JSON.parse(process.env.CK_PLANS) as Record<string, { price: string; credits: number; rollover?: { max: number }; priority?: number }>) : undefined;

  // directConnection: the fault proxy relays to one server; a driver that followed `hello` would go around it.
  const connection = mongoose.createConnection(uri, { dbName, maxPoolSize: 20, serverSelectionTimeoutMS: 2000, directConnection: true });
  // A connection that drops (the proxy resets it) must not end the process.
  connection.on('error', () => undefined);
  await connection.asPromise();

  const stripe = stripeMockClient();
  let backgroundErrors = 0;
  /** The last few errors the kit reported from background work, for the checker's report. */
  const backgroundErrorLog: string[] = [];
  // Crashes between the writes of a journal move: now and then a call that stores books fails before or
  // after it lands, or a pull's answer is lost (the process goes on, as after a connection error).
  let moveCrashChance = Number(process.env.CK_MOVE_CRASHES ?? 0);
  const MOVE_POINTS: CrashPoint[] = ['before-book', 'after-book', 'after-pull'];
  const movePlan = (): CrashPlan | undefined =>
    moveCrashChance > 0 && Math.random() < moveCrashChance ? { point: MOVE_POINTS[Math.floor(Math.random() * MOVE_POINTS.length)]!, mode: 'throw' } : undefined;
  const store = crashingStore(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), movePlan);
  const credits = createCredits({
    connection,
    store,
    getUserId: (req) => req.get('x-user') ?? null,
    stripe,
    webhookSecret,
    publicUrl: 'https://app.example.com',
    timeoutMs: 1500,
    claimLeaseMs: 4000,
    // Each call of the hook is written down (through the same faulty connection: a write that fails makes
    // the hook throw, and the kit calls it again), for the checker to compare with the ledger's crossings.
    ...(alertLevels.length === 0
      ? {}
      : {
          lowBalance: {
            levels: alertLevels,
            onLowBalance: async (alert) => {
              await connection.collection('checker_alert_calls').insertOne({ alertId: alert.id, instance: name, level: alert.level, balance: alert.balance });
            },
          },
        }),
    // Auto-recharge for the users the checker opted in (their records are written by the checker): stripe-mock
    // answers every payment as created and no event follows, so each attempt stays in flight to the end.
    ...(process.env.CK_RECHARGE === '1' ? { autoRecharge: { monthlyCap: 1_000_000, cooldownMs: 0 } } : {}),
    ...(plans ? { plans } : {}),
    hooks: {
      onBackgroundError: (err) => {
        backgroundErrors++;
        const e = err as { message?: string; cause?: { message?: string } };
        backgroundErrorLog.push(`${new Date().toISOString()} ${e?.message ?? String(err)}${e?.cause?.message ? ` (${e.cause.message})` : ''}`);
        if (backgroundErrorLog.length > 50) backgroundErrorLog.shift();
      },
    },
  });
  await credits.init();

  const runs = new Map<string, Run>();
  const runOf = (req: Request, route: string, reserved: number): Run => {
    const id = req.get('x-req') ?? `anonymous-${runs.size}`;
    let run = runs.get(id);
    if (!run) {
      run = { runs: 0, route, chargeIds: [], reserved, settles: [] };
      runs.set(id, run);
    }
    run.runs++;
    run.chargeIds.push(req.credits!.chargeId);
    return run;
  };

  /** How each guarded request was answered here, and how long it took (durations do not depend on the skew). */
  const answers = new Map<string, { status: number; ms: number }>();
  const app = express();
  app.use('/api', credits.router());
  app.use('/ai', (req, res, next) => {
    const id = req.get('x-req');
    const t0 = performance.now();
    if (id) res.on('finish', () => answers.set(id, { status: res.statusCode, ms: Math.round(performance.now() - t0) }));
    next();
  });

  app.post('/ai/fixed', credits.requireCredits(3), (req, res) => {
    runOf(req, 'fixed', 3);
    if (req.get('x-fail') === '1') throw new Error('the model failed');
    res.json({ chargeId: req.credits!.chargeId });
  });

  /** settle(used), with what it answered (or the error it threw) kept in the run. */
  const settleRecorded = async (req: Request, run: Run, used: number) => {
    const record: Run['settles'][number] = { used };
    run.settles.push(record);
    try {
      const r = await req.credits!.settle(used);
      record.charged = r.charged;
      return r;
    } catch (err) {
      record.error = (err as Error).message;
      throw err;
    }
  };

  app.post('/ai/metered', credits.requireCredits(10), async (req, res) => {
    const run = runOf(req, 'metered', 10);
    const used = Number(req.get('x-used') ?? '10');
    const fail = req.get('x-fail');
    const settle = () => settleRecorded(req, run, used);
    if (fail === 'before-settle') {
      // A handler that goes on after its answer: the failure answer first, the settlement afterwards.
      res.status(500).json({ error: { code: 'model_failed' }, chargeId: req.credits!.chargeId });
      await settle().catch(() => undefined);
      return;
    }
    const r = await settle();
    if (fail === 'after-settle') throw new Error('the model failed after settling');
    res.json({ chargeId: req.credits!.chargeId, charged: r.charged });
  });

  app.post('/ai/stream', credits.requireCredits(10, { metered: true }), async (req, res, next) => {
    const run = runOf(req, 'stream', 10);
    const used = Number(req.get('x-used') ?? '10');
    const fail = req.get('x-fail');
    const send = (data: unknown) => new Promise<void>((taken) => res.write(`data: ${JSON.stringify(data)}\n\n`, () => taken()));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    try {
      if (fail === 'error-first') throw new Error('the model failed before its first token');
      await send({ chargeId: req.credits!.chargeId });
      for (let i = 0; i < used; i++) await send({ token: i });
      const r = await settleRecorded(req, run, used);
      if (fail === 'error-later') throw new Error('the model failed after settling');
      res.end(`data: ${JSON.stringify({ done: true, charged: r.charged })}\n\n`);
    } catch (err) {
      next(err); // after the headers: Express cuts the connection
    }
  });

  // Thrown errors answer 500 quietly (the kit's give-back runs as the answer ends).
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    res.status(500).json({ error: { code: 'route_failed', message: (err as Error)?.message ?? String(err) } });
  });

  const admin = express.Router();
  admin.use(express.json());
  const wrap =
    (fn: (req: Request) => Promise<unknown>) =>
    (req: Request, res: Response, _next: NextFunction): void => {
      fn(req).then(
        (body) => void res.json(body ?? {}),
        (err: unknown) => {
          const e = err as { status?: number; code?: string; message?: string };
          res.status(typeof e.status === 'number' && e.status >= 400 ? e.status : 500).json({ error: { code: e.code ?? 'error', message: e.message } });
        },
      );
    };
  admin.post(
    '/grant',
    wrap(async (req) => {
      const { user, amount, key, source, priority, expiresAt, rollover } = req.body as {
        user: string;
        amount: number;
        key: string;
        source?: string;
        priority?: number;
        expiresAt?: string;
        rollover?: { max: number; expiresAt?: string };
      };
      const terms = { ...(source ? { source } : {}), ...(priority !== undefined ? { priority } : {}), ...(expiresAt ? { expiresAt } : {}), ...(rollover ? { rollover } : {}) };
      return credits.grantCredits(user, amount, { idempotencyKey: key, reason: `checker grant ${key}`, ...terms });
    }),
  );
  admin.post(
    '/revoke',
    wrap(async (req) => {
      const { user, grant, key, reason } = req.body as { user: string; grant: string; key?: string; reason?: string };
      return credits.revokeGrant(user, grant, { ...(key ? { key } : {}), ...(reason ? { reason } : {}) });
    }),
  );
  admin.post(
    '/expire',
    wrap(async (req) => credits.expireGrants({ now: new Date((req.body as { now: string }).now) })),
  );
  admin.post(
    '/deduct',
    wrap(async (req) => {
      const { user, amount, key, reason } = req.body as { user: string; amount: number; key?: string; reason?: string };
      const ok = await credits.deductCredits(user, amount, { ...(key ? { idempotencyKey: key } : {}), ...(reason ? { reason } : {}) });
      return { deducted: ok };
    }),
  );
  admin.post('/reconcile', wrap(() => credits.reconcile()));
  admin.post(
    '/move-crashes',
    wrap(async (req) => {
      moveCrashChance = Number((req.body as { chance: number }).chance);
      return { chance: moveCrashChance };
    }),
  );
  admin.post(
    '/flush',
    wrap(async () => {
      await credits.flush();
      return { backgroundErrors };
    }),
  );
  admin.get(
    '/runs',
    wrap(async () => ({ name, skewMs: Number(process.env.CK_CLOCK_SKEW_MS ?? 0), backgroundErrors, backgroundErrorLog, runs: Object.fromEntries(runs), answers: Object.fromEntries(answers) })),
  );
  app.use('/admin', admin);

  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as { port: number };
  process.stdout.write(`ready ${port}\n`);

  const stop = () => {
    server.closeAllConnections();
    server.close();
    void connection.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The test process is our parent: when it goes, so do we.
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main().catch((err: unknown) => {
  process.stderr.write(`checker-instance failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
