/**
 * One test per way the fault review found to lose or create credits (the "exactly once under faults"
 * issue), each against the real embedded server, through the fault-injecting proxy in tools/ where the
 * fault is the database's: a stalled link, a reply lost after the write landed, a holder that outlives its
 * lease. Stripe events are really signed and delivered over HTTP.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import express, { type Express } from 'express';
import mongoose, { type Connection } from 'mongoose';
import { createCredits, type CreateCreditsOptions, type Credits, type WebhookReport } from 'credit-kit/server';
import { giveBackKey, grantKey, requestKey } from '../domain/keys';
import { claimId } from '../ledger';
import { crashingMongoStore, type CrashPlan } from '../test/crashing-store';
import { startFaultProxy, type FaultProxy } from '../../tools/fault-proxy';
import { readyPort } from './instance-ready';
import { audit, checkoutSession, headerUser, listen, mongoUri, post, recordedSession, signedDelivery, stripeMockClient, WEBHOOK_SECRET } from '../test/helpers';

jest.spyOn(console, 'error').mockImplementation(() => undefined);

const stripe = stripeMockClient();
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

/** One app instance on a database shared by name, optionally through its own fault proxy. */
async function instance(
  dbName: string,
  options: Partial<CreateCreditsOptions> & { proxy?: FaultProxy; routes?: (app: Express, credits: Credits) => void; crash?: () => CrashPlan | undefined } = {},
) {
  const { proxy, routes, crash, ...rest } = options;
  const connection: Connection = await mongoose
    .createConnection(proxy?.uri ?? mongoUri(), { dbName, serverSelectionTimeoutMS: 5000, maxPoolSize: 20, retryWrites: false })
    .asPromise();
  const base: CreateCreditsOptions = {
    connection,
    getUserId: headerUser,
    stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    timeoutMs: 20_000,
    claimLeaseMs: 60_000,
    hooks: { onBackgroundError: () => undefined },
    logger: () => undefined, // these tests check answers and the ledger; what is logged is logger.test.ts's
    ...rest,
  };
  const credits = createCredits(crash ? { ...base, store: crashingMongoStore(connection, crash) } : base);
  await credits.init();
  const app = express();
  app.use('/api', credits.router());
  routes?.(app, credits);
  const server = await listen(app);
  cleanups.push(async () => {
    await server.close();
    await connection.close();
  });
  const deliver = (event: { type: string; object: unknown; id?: string; created?: number }) => {
    const d = signedDelivery(stripe, event);
    const body = event.created === undefined ? d.body : JSON.stringify({ ...JSON.parse(d.body), created: event.created });
    const signed = event.created === undefined ? d : { body, headers: { ...d.headers, 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: WEBHOOK_SECRET }) } };
    return fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: signed.headers, body: signed.body });
  };
  return { connection, credits, url: server.url, deliver };
}

async function proxied(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(mongoUri());
  cleanups.push(() => proxy.close());
  return proxy;
}

const db = () => `ck_faults_${randomUUID().replace(/-/g, '').slice(0, 12)}`;

async function settled(credits: Credits, user: string) {
  await credits.flush();
  const a = await audit(credits, user);
  expect(a.sum).toBe(a.balance);
  return a;
}

/** The entries of one request: its charge and everything that points back at it. */
async function requestEntries(credits: Credits, user: string, chargeId: string) {
  const { transactions } = await credits.listTransactions(user, { limit: 1000 });
  return transactions.filter((t) => t.id === chargeId || t.ref?.chargeId === chargeId);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('1. settle() and the failure give-back never both give money back', () => {
  it('a handler that settles after a timeout answered 503, or after a 500 in finally, is given back once', async () => {
    const a = await instance(db(), {
      routes(app, credits) {
        // A timeout middleware answers 503 while the handler goes on and settles what it used.
        app.post('/ai/timeout', credits.requireCredits(100), (req, res) => {
          res.status(503).json({ error: 'took too long' });
          setTimeout(() => void req.credits!.settle(30).catch(() => undefined), 20);
        });
        // A route that fails with 500 and settles 0 in `finally`.
        app.post('/ai/finally', credits.requireCredits(100), async (req, res) => {
          try {
            res.status(500).json({ error: 'model failed' });
          } finally {
            await req.credits!.settle(0).catch(() => undefined);
          }
        });
      },
    });
    await a.credits.grantCredits('s1', 100, { idempotencyKey: 'start' });
    for (let i = 0; i < 5; i++) {
      expect((await post(`${a.url}/ai/timeout`, 's1')).status).toBe(503);
      expect((await post(`${a.url}/ai/finally`, 's1')).status).toBe(500);
    }
    await sleep(100);
    const s = await settled(a.credits, 's1');
    expect(s.balance).toBe(100); // was 100 → 300 in five requests
    for (const t of (await a.credits.listTransactions('s1', { limit: 100 })).transactions.filter((x) => x.kind === 'usage')) {
      const net = (await requestEntries(a.credits, 's1', t.id)).reduce((sum, e) => sum + e.amount, 0);
      expect(net).toBe(0);
    }
  });
});

describe('2. a settlement whose write lands but whose reply is lost', () => {
  it('is settled by looking: the request is charged what it reported once, or nothing when it failed', async () => {
    const proxy = await proxied();
    const outcomes: number[] = [];
    const a = await instance(db(), {
      proxy,
      routes(app, credits) {
        app.post('/ai/metered', credits.requireCredits(10), async (req, res) => {
          proxy.dropNextReplies(Number(req.get('x-drops')), ['findAndModify']);
          try {
            const r = await req.credits!.settle(14);
            res.json({ ...r, chargeId: req.credits!.chargeId });
          } catch {
            res.status(500).json({ error: 'settle failed', chargeId: req.credits!.chargeId });
          }
        });
      },
    });
    await a.credits.grantCredits('s2', 100, { idempotencyKey: 'start' });
    let expected = 100;
    for (const drops of [1, 2, 3]) {
      const res = await post(`${a.url}/ai/metered`, 's2', undefined, { 'x-drops': String(drops) });
      const body = (await res.json()) as { chargeId: string };
      outcomes.push(res.status);
      await sleep(50);
      await a.credits.flush();
      const net = (await requestEntries(a.credits, 's2', body.chargeId)).reduce((s, e) => s + e.amount, 0);
      // Answered 200: charged 14 exactly; answered 500: given back entirely. Never more (it was 100 → 140).
      expect(net).toBe(res.status === 200 ? -14 : 0);
      expected += net;
    }
    expect(outcomes).toContain(200);
    const s = await settled(a.credits, 's2');
    expect(s.balance).toBe(expected);
    expect(s.balance).toBeLessThanOrEqual(100);
  });
});

describe('3. a holder that outlives its lease is fenced', () => {
  it('one Checkout purchase is credited once when its first holder stalls past the lease', async () => {
    const name = db();
    const proxy = await proxied();
    const a = await instance(name, { proxy });
    const b = await instance(name, { claimLeaseMs: 300 });
    const session = await recordedSession(b.url, 'buyer3', 50);
    const event = { id: `evt_${randomUUID()}`, type: 'checkout.session.completed', object: session };
    // A claims the key (an insert), then its balance update (the next findAndModify) hangs on the link.
    let claimed = false;
    proxy.stall((command) => {
      if (command === 'insert') claimed = true;
      return claimed && command === 'findAndModify';
    });
    const first = a.deliver(event);
    await sleep(600); // past B's lease
    const retry = await b.deliver(event); // Stripe's retry reaches another instance
    expect(retry.status).toBe(200);
    expect(await b.credits.getBalance('buyer3')).toBe(50);
    proxy.release(); // A's held write reaches the database now: it must not land
    expect((await first).status).toBe(200);
    await a.credits.flush();
    const s = await settled(b.credits, 'buyer3');
    expect(s).toMatchObject({ balance: 50, kinds: { purchase: 1 } });
  });

  it('one Idempotency-Key request is run and charged once when its first holder stalls past the lease', async () => {
    const name = db();
    const proxy = await proxied();
    const runs: string[] = [];
    const routes = (tag: string) => (app: Express, credits: Credits) => {
      app.post('/ai', credits.requireCredits(5), (_req, res) => {
        runs.push(tag);
        res.json({ ran: tag });
      });
    };
    const a = await instance(name, { proxy, routes: routes('a') });
    const b = await instance(name, { claimLeaseMs: 300, routes: routes('b') });
    await b.credits.grantCredits('idem3', 20, { idempotencyKey: 'start' });
    proxy.stall(['findAndModify']);
    const first = post(`${a.url}/ai`, 'idem3', undefined, { 'idempotency-key': 'job-1' });
    await sleep(600);
    const retry = await post(`${b.url}/ai`, 'idem3', undefined, { 'idempotency-key': 'job-1' });
    expect(retry.status).toBe(200);
    const answer = await retry.text();
    await b.credits.flush(); // B's answer is stored with the key
    proxy.release();
    // A's held write is refused (fenced); A answers as the request that ran did, without running or charging.
    const late = await first;
    expect(late.status).toBe(200);
    expect(late.headers.get('idempotent-replayed')).toBe('true');
    expect(await late.text()).toBe(answer);
    expect(runs).toEqual(['b']);
    const s = await settled(b.credits, 'idem3');
    expect(s.balance).toBe(15);
  });

  it('a keyed request whose process dies before its answer is stored is not run or charged again: a retry gets 409', async () => {
    const name = db();
    // Messages held when the process dies are dropped, as bytes that never left it.
    const proxy = await startFaultProxy(mongoUri(), { deliverAfterClientClose: false });
    cleanups.push(() => proxy.close());
    const runs: string[] = [];
    const b = await instance(name, {
      routes(app, credits) {
        app.post('/ai/fixed', credits.requireCredits(3), (req, res) => {
          runs.push('b');
          res.json({ chargeId: req.credits!.chargeId });
        });
      },
    });
    await b.credits.grantCredits('dies', 10, { idempotencyKey: 'start' });
    const a = await instanceProcess(proxy.uri, name);
    // The charge's writes go through (claim, charge, claim applied); the next update, storing the answer, is held.
    let updates = 0;
    proxy.stall((command) => command === 'update' && ++updates >= 2);
    const first = await post(`${a.url}/ai/fixed`, 'dies', undefined, { 'idempotency-key': 'job-1', 'x-user': 'dies', 'x-req': 'first' });
    expect(first.status).toBe(200);
    const { chargeId } = (await first.json()) as { chargeId: string };
    for (let i = 0; i < 100 && proxy.stats().stalled === 0; i++) await sleep(20);
    expect(proxy.stats().stalled).toBeGreaterThan(0);
    await a.kill(); // SIGKILL, with the answer still unstored
    // Once the proxy has seen the dead process's connections close, what they held is dropped, not sent.
    for (let i = 0; i < 200 && proxy.stats().openConnections > 0; i++) await sleep(10);
    expect(proxy.stats().openConnections).toBe(0);
    proxy.release();

    const claim = await b.credits.store.getClaim(claimId('dies', requestKey('job-1')));
    expect(claim).toMatchObject({ state: 'applied', entryId: chargeId });
    expect(claim?.reply).toBeUndefined();
    for (let attempt = 0; attempt < 2; attempt++) {
      const retry = await post(`${b.url}/ai/fixed`, 'dies', undefined, { 'idempotency-key': 'job-1' });
      expect(retry.status).toBe(409);
      expect((await retry.json()).error).toMatchObject({ code: 'conflict', message: expect.stringMatching(/answer was not recorded/) });
      await b.credits.reconcile();
    }
    expect(runs).toEqual([]);
    // The charge stays, once (the kit cannot know whether the work ran), as the README says.
    const s = await settled(b.credits, 'dies');
    expect(s).toMatchObject({ balance: 7, kinds: { grant: 1, usage: 1 } });
  });
});

/**
 * An app instance in its own Node process (server/reliability/checker-instance.ts: requireCredits(3) on
 * POST /ai/fixed, user from x-user), so that the test can kill it with SIGKILL.
 */
async function instanceProcess(mongo: string, dbName: string): Promise<{ url: string; kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', '--require', './tools/skew-clock.cjs', 'server/reliability/checker-instance.ts', mongo, dbName, 'a'], {
    cwd: join(__dirname, '..', '..'),
    env: { ...process.env, CK_CLOCK_SKEW_MS: '0', CK_WEBHOOK_SECRET: WEBHOOK_SECRET },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  cleanups.push(kill);
  const port = await readyPort(child, 'the instance process');
  return { url: `http://127.0.0.1:${port}`, kill };
}

describe('4. timeoutMs bounds a stalled database', () => {
  it('answers 503 while the database is frozen, runs nothing, and gives back the charge when it lands later', async () => {
    const proxy = await proxied();
    let runs = 0;
    const a = await instance(db(), {
      proxy,
      timeoutMs: 300,
      claimLeaseMs: 5000,
      routes(app, credits) {
        app.post('/ai', credits.requireCredits(4), (_req, res) => {
          runs++;
          res.json({ ok: true });
        });
      },
    });
    await a.credits.grantCredits('frozen', 10, { idempotencyKey: 'start' });
    await a.credits.flush();
    proxy.stall(); // frozen, not killed: every data command waits
    const answered = await Promise.race([post(`${a.url}/ai`, 'frozen'), sleep(10_000).then(() => null)]);
    expect(answered?.status).toBe(503); // answered while the database was still frozen
    expect(runs).toBe(0);
    proxy.release(); // the held charge lands now; the kit finds it and gives it back
    await sleep(200);
    await a.credits.flush();
    const s = await settled(a.credits, 'frozen');
    expect(s.balance).toBe(10);
    expect(runs).toBe(0);
  });
});

describe('5-7, 11. Stripe events in any order and any number', () => {
  function charge(session: Record<string, unknown>, amountRefunded: number) {
    return { id: `ch_${randomUUID().slice(0, 8)}`, object: 'charge', amount: session.amount_total, amount_refunded: amountRefunded, payment_intent: session.payment_intent };
  }
  const dispute = (session: Record<string, unknown>, status: string) => ({
    id: `dp_${String(session.id).slice(-8)}`,
    object: 'dispute',
    amount: session.amount_total,
    status,
    payment_intent: session.payment_intent,
  });

  it('5. a full refund delivered before checkout.session.completed leaves no credits', async () => {
    const a = await instance(db());
    const session = await recordedSession(a.url, 'early-refund', 100);
    const refunded = await a.deliver({ type: 'charge.refunded', object: charge(session, 1000) });
    expect(refunded.status).toBe(200);
    expect((await a.deliver({ type: 'checkout.session.completed', object: session })).status).toBe(200);
    expect((await settled(a.credits, 'early-refund')).balance).toBe(0);
  });

  it('5. dispute.closed (won) before dispute.created leaves no clawback in place', async () => {
    const a = await instance(db());
    const session = await recordedSession(a.url, 'early-won', 60);
    await a.deliver({ type: 'checkout.session.completed', object: session });
    const t = Math.floor(Date.now() / 1000);
    await a.deliver({ type: 'charge.dispute.closed', object: dispute(session, 'won'), created: t + 10 });
    await a.deliver({ type: 'charge.dispute.created', object: dispute(session, 'needs_response'), created: t });
    expect((await settled(a.credits, 'early-won')).balance).toBe(60);
  });

  it('6. a refund and a dispute of the same charge never take back more than the purchase, in either order', async () => {
    const a = await instance(db());
    const first = await recordedSession(a.url, 'dispute-first', 100);
    await a.deliver({ type: 'checkout.session.completed', object: first });
    await a.deliver({ type: 'charge.dispute.created', object: dispute(first, 'needs_response') });
    await a.deliver({ type: 'charge.dispute.closed', object: dispute(first, 'lost') });
    await a.deliver({ type: 'charge.refunded', object: charge(first, 1000) });
    expect((await settled(a.credits, 'dispute-first')).balance).toBe(0); // was -100

    const second = await recordedSession(a.url, 'refund-first', 100);
    await a.deliver({ type: 'checkout.session.completed', object: second });
    await a.deliver({ type: 'charge.refunded', object: charge(second, 1000) });
    await a.deliver({ type: 'charge.dispute.created', object: dispute(second, 'needs_response') });
    await a.deliver({ type: 'charge.dispute.closed', object: dispute(second, 'lost') });
    expect((await settled(a.credits, 'refund-first')).balance).toBe(0);
  });

  it('6. an inquiry closed as warning_closed gives back what it took', async () => {
    const a = await instance(db());
    const session = await recordedSession(a.url, 'inquiry', 80);
    await a.deliver({ type: 'checkout.session.completed', object: session });
    await a.deliver({ type: 'charge.dispute.created', object: dispute(session, 'warning_needs_response') });
    expect(await a.credits.getBalance('inquiry')).toBe(0);
    await a.deliver({ type: 'charge.dispute.closed', object: dispute(session, 'warning_closed') });
    expect((await settled(a.credits, 'inquiry')).balance).toBe(80);
  });

  it('7. a retried delivery finishes a clawback that failed before answering 200', async () => {
    // The database goes away between the purchase's recorded decision and its clawback.
    let plan: CrashPlan | undefined;
    const a = await instance(db(), { crash: () => plan });
    const session = await recordedSession(a.url, 'retried', 100);
    await a.deliver({ type: 'checkout.session.completed', object: session });
    const event = { id: `evt_${randomUUID()}`, type: 'charge.refunded', object: charge(session, 500) };
    plan = { point: 'after-purchase-update' };
    expect((await a.deliver(event)).status).toBeGreaterThanOrEqual(500);
    const retried = await a.deliver(event); // Stripe's retry: the pending clawback is applied before the 200
    expect(retried.status).toBe(200);
    expect(await a.credits.getBalance('retried')).toBe(50);
    expect((await settled(a.credits, 'retried')).kinds).toEqual({ purchase: 1, clawback: 1 });
  });

  it('7. one stuck claim does not stop reconcile() from repairing the rest', async () => {
    const name = db();
    const a = await instance(name);
    const claims = a.connection.collection('credit_claims');
    const old = new Date(Date.now() - 3_600_000);
    // A stale claim on a corrupt account (its journal is not a list), deciding which throws; then an ordinary one.
    await a.connection.collection('credit_accounts').insertOne({ _id: 'corrupt' as never, balance: 0, count: 0, journal: 'not-a-list' });
    await claims.insertOne({ _id: 'stuck' as never, userId: 'corrupt', key: grantKey('x'), entryId: 'e1', state: 'pending', createdAt: old, amount: 5 });
    await claims.insertOne({ _id: claimId('healthy', grantKey('y')) as never, userId: 'healthy', key: grantKey('y'), entryId: 'e2', state: 'pending', createdAt: new Date(old.getTime() + 1), amount: 5 });
    const report = await a.credits.reconcile();
    expect(report.errors).toBe(1);
    expect(report.claimsReleased).toBe(1);
    expect(await claims.findOne({ _id: claimId('healthy', grantKey('y')) as never })).toBeNull();
  });

  it('11. a refund that later fails gives the credits back', async () => {
    const a = await instance(db());
    const session = await recordedSession(a.url, 'refund-fails', 100);
    await a.deliver({ type: 'checkout.session.completed', object: session });
    const t = Math.floor(Date.now() / 1000);
    await a.deliver({ type: 'charge.refunded', object: charge(session, 1000), created: t });
    expect(await a.credits.getBalance('refund-fails')).toBe(0);
    const refund = { id: 're_1', object: 'refund', amount: 1000, status: 'failed', created: t, payment_intent: session.payment_intent };
    await a.deliver({ type: 'charge.refund.updated', object: refund, created: t + 5 });
    const s = await settled(a.credits, 'refund-fails');
    expect(s.balance).toBe(100);
    expect(s.kinds).toEqual({ purchase: 1, clawback: 1, reversal: 1 });
  });
});

describe('8. only sessions this app created are credited', () => {
  it('ignores, with the reason, sessions it did not record or that differ from what it recorded', async () => {
    const reports: WebhookReport[] = [];
    const a = await instance(db(), { onWebhook: (r) => reports.push(r) });
    const recorded = await recordedSession(a.url, 'careful', 50);
    const cases = [
      checkoutSession('careful', 100_000), // carries the kit's metadata keys, never created here
      { ...recorded, mode: 'subscription' },
      { ...recorded, livemode: true, currency: 'jpy', amount_total: 1 },
      { ...recorded, amount_total: 1 },
    ];
    for (const object of cases) {
      const res = await a.deliver({ type: 'checkout.session.completed', object });
      expect(await res.json()).toMatchObject({ status: 'ignored', creditsAdded: 0, reason: expect.any(String) });
    }
    expect(reports.map((r) => (r.outcome as { reason?: string }).reason)).toEqual([
      expect.stringMatching(/not|no checkout session/i),
      expect.stringMatching(/mode/),
      expect.stringMatching(/livemode|currency|amount/),
      expect.stringMatching(/amount_total/),
    ]);
    expect(await a.credits.getBalance('careful')).toBe(0);
    // The session as it was created is credited.
    await a.deliver({ type: 'checkout.session.completed', object: recorded });
    expect((await settled(a.credits, 'careful')).balance).toBe(50);
  });
});

describe('9. the rate limiter fails closed', () => {
  it('refuses, and runs nothing, when getUserId throws inside the limiter', async () => {
    let calls = 0;
    let runs = 0;
    const a = await instance(db(), {
      rateLimit: { guarded: 100 },
      getUserId: (req) => {
        calls++;
        if (calls === 1) throw new Error('session store down');
        return headerUser(req);
      },
      routes(app, credits) {
        app.post('/ai', credits.requireCredits(1), (_req, res) => {
          runs++;
          res.json({ ok: true });
        });
      },
    });
    await a.credits.grantCredits('limited', 5, { idempotencyKey: 'start' });
    const res = await post(`${a.url}/ai`, 'limited');
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect((await res.json()).error.code).toEqual(expect.any(String));
    expect(runs).toBe(0);
    expect(await a.credits.getBalance('limited')).toBe(5);
  });
});

describe('10. balances stay exact integers', () => {
  it('refuses a change that would leave the safe integer range, with a clear error, changing nothing', async () => {
    const a = await instance(db());
    await a.credits.grantCredits('whale', Number.MAX_SAFE_INTEGER - 5, { idempotencyKey: 'a' });
    await expect(a.credits.grantCredits('whale', 10, { idempotencyKey: 'b' })).rejects.toMatchObject({ code: 'invalid_amount', message: expect.stringMatching(/2\^53/) });
    expect(await a.credits.getBalance('whale')).toBe(Number.MAX_SAFE_INTEGER - 5);
    expect((await a.credits.grantCredits('whale', 5, { idempotencyKey: 'c' })).balance).toBe(Number.MAX_SAFE_INTEGER);
    const s = await settled(a.credits, 'whale');
    expect(s.entries).toBe(2);
  });
});

describe('the give-back of a refused request survives a restart', () => {
  it('is finished by reconcile() on a new instance once it was recorded', async () => {
    const name = db();
    const proxy = await proxied();
    let plan: CrashPlan | undefined;
    const a = await instance(name, {
      proxy,
      timeoutMs: 2000,
      claimLeaseMs: 5000,
      crash: () => plan,
      routes(app, credits) {
        app.post('/ai', credits.requireCredits(4), (_req, res) => res.json({ ok: true }));
      },
    });
    await a.credits.grantCredits('restart', 10, { idempotencyKey: 'start' });
    await a.credits.flush();
    proxy.dropNextReplies(1, ['findAndModify']); // the charge lands; its reply is lost
    plan = { point: 'after-claim', mode: 'die' }; // the give-back records its claim, then the process dies
    expect((await post(`${a.url}/ai`, 'restart')).status).toBe(503);
    // Once the database has the give-back's claim, the old process goes away: its retries never arrive.
    const direct = await instance(name);
    const claims = direct.connection.collection('credit_claims');
    for (let i = 0; i < 100 && !(await claims.findOne({ key: /^refund:/ })); i++) await sleep(50);
    expect(await claims.findOne({ key: /^refund:/ })).toMatchObject({ state: 'pending', ifLanded: expect.any(String) });
    await proxy.close();
    const b = direct;
    await b.credits.reconcile({ olderThanMs: 0 });
    const s = await settled(b.credits, 'restart');
    expect(s.balance).toBe(10);
    const [giveBack] = (await b.credits.listTransactions('restart')).transactions;
    expect(giveBack).toMatchObject({ kind: 'refund', amount: 4 });
    const claim = await b.connection.collection('credit_claims').findOne({ key: giveBackKey(giveBack!.ref!.chargeId!) });
    expect(claim).toMatchObject({ state: 'applied' });
  });
});
