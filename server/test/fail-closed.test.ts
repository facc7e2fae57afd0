/**
 * Fail closed: with the database stopped, a guarded route answers 503 and does not run; once the database
 * is back, the same app serves again without a restart.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { createCredits } from 'credit-kit/server';
import { crashingMongoStore, type CrashPlan } from './crashing-store';
import { startEmbeddedMongo, type EmbeddedMongo } from '../../tools/embedded';
import { connect, headerUser, listen, post } from './helpers';

it('answers 503 and runs nothing while the database is down, and recovers when it is back', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ck-failclosed-'));
  let mongo: EmbeddedMongo = await startEmbeddedMongo({ dataDir });
  const listenAddr = new URL(mongo.uri).host;
  const connection = await connect(mongo.uri);
  const logged: string[] = [];
  const credits = createCredits({ connection, getUserId: headerUser, timeoutMs: 800, logger: (level, line) => logged.push(`${level} ${line}`) });
  await credits.init();
  let runs = 0;
  const app = express();
  app.post('/ai', credits.requireCredits(2), (_req, res) => {
    runs++;
    res.json({ ok: true });
  });
  const server = await listen(app);
  try {
    await credits.grantCredits('u', 10, { idempotencyKey: 'start' });
    expect((await post(`${server.url}/ai`, 'u')).status).toBe(200);
    expect(runs).toBe(1);
    await credits.flush();

    await mongo.kill();
    const down = await Promise.all(Array.from({ length: 5 }, () => post(`${server.url}/ai`, 'u')));
    for (const res of down) {
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: { code: 'store_unavailable', message: expect.any(String) } });
    }
    expect(runs).toBe(1);
    await expect(credits.deductCredits('u', 1)).rejects.toMatchObject({ code: 'store_unavailable' });
    // The outage is one warning line, no stack: the other refusals at the same place are held back (server/log.ts).
    expect(logged).toHaveLength(1);
    for (const line of logged) expect(line).toMatch(/^warn \[credit-kit\] store_unavailable \(POST \/ai\): [^\n]+$/);

    mongo = await startEmbeddedMongo({ dataDir, listen: listenAddr });
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await post(`${server.url}/ai`, 'u')).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe(200);
    expect(runs).toBe(2);
    await credits.flush();
    expect(await credits.getBalance('u')).toBe(6);
  } finally {
    await server.close();
    await connection.close();
    await mongo.stop();
  }
});

it('gives back a charge that landed although the database call failed, since the request was refused', async () => {
  const connection = await connect();
  let plan: CrashPlan | undefined;
  const logged: string[] = [];
  const credits = createCredits({
    store: crashingMongoStore(connection, () => plan),
    getUserId: headerUser,
    timeoutMs: 100,
    logger: (level, line) => logged.push(`${level} ${line}`),
  });
  let runs = 0;
  const app = express();
  app.post('/ai', credits.requireCredits(4), (_req, res) => {
    runs++;
    res.json({ ok: true });
  });
  const server = await listen(app);
  try {
    await credits.grantCredits('lost-reply', 10, { idempotencyKey: 'start' });
    plan = { point: 'reply-lost' }; // the next charge lands and its reply is lost
    const res = await post(`${server.url}/ai`, 'lost-reply');
    expect(res.status).toBe(503);
    expect(runs).toBe(0);
    expect(logged).toEqual([expect.stringMatching(/^warn \[credit-kit\] store_unavailable \(POST \/ai\): .*connection reset after the update was sent/)]);
    // The charge landed: for a moment the balance shows it, then the kit finds it and gives it back once.
    let balance = await credits.getBalance('lost-reply');
    for (let i = 0; i < 50 && balance !== 10; i++) {
      await new Promise((r) => setTimeout(r, 50));
      balance = await credits.getBalance('lost-reply');
    }
    expect(balance).toBe(10);
    await credits.flush();
    const [undo, charge] = (await credits.listTransactions('lost-reply')).transactions;
    expect(charge).toMatchObject({ kind: 'usage', amount: -4 });
    expect(undo).toMatchObject({ kind: 'refund', amount: 4, ref: { chargeId: charge!.id } });
  } finally {
    await server.close();
    await connection.close();
  }
});
