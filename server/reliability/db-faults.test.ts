/**
 * Database faults under load: 50 connections hammer a guarded route while the database process is killed
 * and later restarted. While it is down every guarded request gets 503 and no route runs; afterwards the
 * same app serves again; the ledger adds up, nothing was spent twice, and every 200 is one usage entry.
 * A webhook delivered while the database is down gets a 5xx, and the same delivery afterwards credits once.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { createCredits } from 'credit-kit/server';
import { startEmbeddedMongo, type EmbeddedMongo } from '../../tools/embedded';
import { audit, recordedSession, connect, headerUser, listen, post, signedDelivery, stripeMockClient, WEBHOOK_SECRET } from '../test/helpers';

jest.spyOn(console, 'error').mockImplementation(() => undefined);

it('fails closed while the database is down and loses nothing across the outage', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ck-faults-'));
  let mongo: EmbeddedMongo = await startEmbeddedMongo({ dataDir });
  const listenAddr = new URL(mongo.uri).host;
  const connection = await connect(mongo.uri);
  const stripe = stripeMockClient();
  const logged: Array<{ level: string; line: string; code: string }> = [];
  const credits = createCredits({
    connection,
    getUserId: headerUser,
    timeoutMs: 500,
    stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    logger: (level, line, record) => void logged.push({ level, line, code: record.code }),
  });
  await credits.init();

  let down = false;
  let ranWhileDown = 0;
  const ran: string[] = [];
  // Requests that arrived after the database was gone. One charged just before the kill may still run, and one
  // waiting for the database when it comes back is charged then; neither may run while it is down.
  const arrivedDown = new WeakSet<express.Request>();
  const app = express();
  app.use((req, _res, next) => {
    if (down) arrivedDown.add(req);
    next();
  });
  app.use('/api', credits.router());
  app.post('/ai', credits.requireCredits(1), (req, res) => {
    if (down && arrivedDown.has(req)) ranWhileDown++;
    ran.push(req.credits!.chargeId);
    res.json({ chargeId: req.credits!.chargeId });
  });
  const server = await listen(app);
  const users = Array.from({ length: 10 }, (_, i) => `fault-${i}`);
  for (const u of users) await credits.grantCredits(u, 100_000, { idempotencyKey: 'start' });

  const statuses: Record<number, number> = {};
  const okCharges: string[] = [];
  let downStatuses: number[] = [];
  let stop = false;
  const worker = async (i: number) => {
    for (let n = 0; !stop && n < 100_000; n++) {
      const wasDown = down;
      const res = await post(`${server.url}/ai`, users[(i + n) % users.length]!).catch(() => null);
      if (!res) continue;
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      if (res.status === 200) okCharges.push(((await res.json()) as { chargeId: string }).chargeId);
      else await res.arrayBuffer();
      if (wasDown && down) downStatuses.push(res.status);
    }
  };
  // Created (and so recorded by the kit) before the outage; completed while the database is down.
  const session = await recordedSession(server.url, 'fault-buyer', 40);
  const load = Promise.all(Array.from({ length: 50 }, (_, i) => worker(i)));

  try {
    await new Promise((r) => setTimeout(r, 1500));
    await mongo.kill();
    down = true;
    downStatuses = [];
    await new Promise((r) => setTimeout(r, 2500));

    // A purchase completed while the database is down: Stripe is told to retry.
    const delivery = signedDelivery(stripe, { type: 'checkout.session.completed', object: session });
    const during = await fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: delivery.headers, body: delivery.body });
    expect(during.status).toBeGreaterThanOrEqual(500);

    mongo = await startEmbeddedMongo({ dataDir, listen: listenAddr });
    down = false;
    await new Promise((r) => setTimeout(r, 2500));
    stop = true;
    await load;

    // The same delivery, retried by Stripe (with backoff, until a 2xx), credits once. Right after the outage the
    // database is still busy with the give-backs owed for refused requests, so a first retry may get 503 too.
    const redeliver = () => fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: delivery.headers, body: delivery.body });
    let after = await redeliver();
    for (let i = 0; i < 20 && after.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 500));
      after = await redeliver();
    }
    expect(after.status).toBe(200);
    const again = await fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: delivery.headers, body: delivery.body });
    expect(again.status).toBe(200);

    await credits.flush();
    await createCredits({ connection, getUserId: headerUser, claimLeaseMs: 1 }).reconcile();

    expect(downStatuses.length).toBeGreaterThan(0);
    expect(new Set(downStatuses)).toEqual(new Set([503]));
    expect(ranWhileDown).toBe(0);
    expect(statuses[200]).toBeGreaterThan(0);
    expect(okCharges.length).toBe(ran.length);

    // Charges that landed for requests refused with 503 (the reply was lost in the kill) are given back.
    const undone = new Set<string>();
    const usageIds = new Set<string>();
    for (const u of users) {
      const a = await audit(credits, u);
      expect(a.sum).toBe(a.balance);
      expect(a.balance).toBeGreaterThanOrEqual(0);
      let cursor: string | null = null;
      do {
        const page = await credits.listTransactions(u, { limit: 1000, cursor });
        for (const t of page.transactions) {
          if (t.kind === 'usage') usageIds.add(t.id);
          if (t.kind === 'refund' && t.ref?.chargeId) {
            expect(undone.has(t.ref.chargeId)).toBe(false); // given back once
            undone.add(t.ref.chargeId);
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
    }
    // Every 200 matches exactly one usage entry, and every usage entry not given back is a 200.
    expect(new Set(okCharges).size).toBe(okCharges.length);
    for (const id of okCharges) expect(usageIds.has(id) && !undone.has(id)).toBe(true);
    expect(usageIds.size - undone.size).toBe(okCharges.length);
    expect(await credits.getBalance('fault-buyer')).toBe(40);
    // The outage is logged as what it is: one warning line per refused request or failed background step.
    expect(logged.length).toBeGreaterThan(0);
    for (const l of logged) expect(l).toEqual({ level: 'warn', code: 'store_unavailable', line: expect.stringMatching(/^\[credit-kit\] store_unavailable \([^)]+\): [^\n]+$/) });
    console.log(`db-faults: ${JSON.stringify(statuses)}; ${downStatuses.length} requests while down, all 503; ${logged.length} warning lines logged`);
  } finally {
    stop = true;
    await load.catch(() => undefined);
    await server.close();
    await connection.close();
    await mongo.stop();
  }
});
