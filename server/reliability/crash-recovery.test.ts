/**
 * Crashes between any two steps. (1) A worker process doing grants, deductions, refunds and fulfilments is
 * killed with SIGKILL at random moments, six times; (2) crashes are injected at each named step of a
 * fulfilment and a refund clawback. After recovery (reconcile) the ledger rules hold:
 *   1. no balance below zero (nothing here may take it there); 2. balance = sum of the ledger, journal
 *   moved; 3. every idempotency key applied at most once (each purchase credited at most once).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import express from 'express';
import { createCredits, type Credits } from 'credit-kit/server';
import { crashingMongoStore, type CrashPlan, type CrashPoint } from '../test/crashing-store';
import type { Connection } from 'mongoose';
import { recordedSession, connect, headerUser, listen, mongoUri, signedDelivery, stripeMockClient, WEBHOOK_SECRET } from '../test/helpers';

jest.spyOn(console, 'error').mockImplementation(() => undefined);

async function checkRules(credits: Credits, users: string[]) {
  for (const user of users) {
    const account = await credits.store.getAccount(user);
    const ledger = await credits.store.listLedger(user, { limit: 1_000_000 });
    const balance = account?.balance ?? 0;
    expect(account?.journal ?? []).toHaveLength(0);
    expect(balance).toBeGreaterThanOrEqual(0);
    expect(ledger.reduce((s, e) => s + e.amount, 0)).toBe(balance);
    const keys = ledger.flatMap((e) => (e.key ? [e.key] : []));
    expect(new Set(keys).size).toBe(keys.length);
    const purchases = ledger.filter((e) => e.kind === 'purchase').map((e) => e.ref?.checkoutSessionId);
    expect(new Set(purchases).size).toBe(purchases.length);
    // Sequence numbers are 1..n with no gap or repeat.
    expect(ledger.map((e) => e.seq).sort((a, b) => a - b)).toEqual(ledger.map((_, i) => i + 1));
  }
}

it('keeps the rules when a worker is killed at random moments', async () => {
  const connection: Connection = await connect();
  const dbName = connection.name;
  let kills = 0;
  try {
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, ['-r', 'tsx/cjs', join(__dirname, 'crash-worker.ts'), mongoUri(), dbName, String(round * 7)], {
        cwd: join(__dirname, '..', '..'),
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      await new Promise<void>((resolve, reject) => {
        const rl = createInterface({ input: child.stdout! });
        rl.once('line', () => resolve());
        child.once('exit', (code) => reject(new Error(`worker exited early (${code})`)));
      });
      await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 1200)));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      kills++;
    }
    // Recovery, as at the next start: claims whose holder died are decided, journals moved.
    const recovery = createCredits({ connection, getUserId: headerUser, claimLeaseMs: 1 });
    await new Promise((r) => setTimeout(r, 10));
    const report = await recovery.reconcile();
    await recovery.flush();
    console.log(`crash-recovery: ${kills} kills; reconcile ${JSON.stringify(report)}`);
    await checkRules(recovery, ['crash-a', 'crash-b', 'crash-c']);
    const total = (await Promise.all(['crash-a', 'crash-b', 'crash-c'].map((u) => recovery.getBalance(u)))).reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(0);
  } finally {
    await connection.close();
  }
});

const POINTS: CrashPoint[] = ['after-claim', 'after-apply', 'before-move', 'after-purchase-update'];

it.each(POINTS)('recovers a fulfilment and a refund clawback crashed at %s', async (point) => {
  const connection = await connect();
  let plan: CrashPlan | undefined;
  const stripe = stripeMockClient();
  const credits = createCredits({
    store: crashingMongoStore(connection, () => plan),
    getUserId: headerUser,
    stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    claimLeaseMs: 200,
    hooks: { onBackgroundError: () => undefined },
  });
  await credits.init();
  const app = express();
  app.use('/api', credits.router());
  const server = await listen(app);
  const user = `crash-${randomUUID()}`;
  const deliver = async (type: string, object: unknown) => {
    const d = signedDelivery(stripe, { type, object });
    return fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: d.headers, body: d.body });
  };
  try {
    const session = await recordedSession(server.url, user, 100);
    plan = { point };
    const first = await deliver('checkout.session.completed', session);
    expect(first.status === 200 || first.status >= 500).toBe(true);
    // Stripe retries until it gets a 2xx; the purchase is credited exactly once.
    let retry = await deliver('checkout.session.completed', session);
    for (let i = 0; i < 20 && retry.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      retry = await deliver('checkout.session.completed', session);
    }
    expect(retry.status).toBe(200);
    await credits.flush();
    expect(await credits.getBalance(user)).toBe(100);

    const refund = { id: 'ch_crash', object: 'charge', amount: 1000, amount_refunded: 500, payment_intent: session.payment_intent };
    plan = { point };
    await deliver('charge.refunded', refund);
    await new Promise((r) => setTimeout(r, 250));
    await credits.reconcile();
    await deliver('charge.refunded', refund);
    await credits.flush();
    await new Promise((r) => setTimeout(r, 250));
    await credits.reconcile();
    await credits.flush();
    expect(await credits.getBalance(user)).toBe(50);
    await checkRules(credits, [user]);
  } finally {
    await server.close();
    await connection.close();
  }
});
