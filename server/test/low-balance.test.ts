/**
 * Low-balance alerts against the embedded database: one alert per fall below a level, whatever the
 * concurrency and the number of instances; again only after the balance went back up; a hook that throws
 * is called again; a crash between the spend and the move, or between the record and the delivery, is
 * finished by reconcile() on another instance.
 */
import mongoose, { type Connection } from 'mongoose';
import express from 'express';
import { createCredits, CreditsConfigError, type Credits, type CreateCreditsOptions, type LowBalanceAlert } from 'credit-kit/server';
import { connect, consistentAudit, headerUser, listen, mongoUri, post } from './helpers';
import { crashingMongoStore, type CrashPlan } from './crashing-store';
import { decorateStore } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';

let connection: Connection;
const others: Connection[] = [];

beforeAll(async () => {
  connection = await connect();
});
afterAll(async () => {
  await Promise.all(others.map((c) => c.close()));
  await connection.close();
});

/** Another connection to the same database: another instance of the app. */
async function sameDatabase(): Promise<Connection> {
  const c = mongoose.createConnection(mongoUri(), { dbName: connection.name, serverSelectionTimeoutMS: 2000, maxPoolSize: 50 });
  await c.asPromise();
  others.push(c);
  return c;
}

function instance(alerts: LowBalanceAlert[], options: Partial<CreateCreditsOptions> = {}, levels: number[] = [100, 10], conn = connection): Credits {
  return createCredits({
    connection: conn,
    getUserId: headerUser,
    timeoutMs: 20_000,
    claimLeaseMs: 60_000,
    lowBalance: { levels, onLowBalance: (alert) => void alerts.push(alert) },
    ...options,
  });
}

const grant = (credits: Credits, user: string, amount: number, key: string) => credits.grantCredits(user, amount, { idempotencyKey: key });

describe('low-balance alerts', () => {
  it('tell the app once per level when 300 concurrent spends on two instances take a balance of 300 to 0', async () => {
    const seenA: LowBalanceAlert[] = [];
    const seenB: LowBalanceAlert[] = [];
    const a = instance(seenA);
    const b = instance(seenB, {}, [100, 10], await sameDatabase());
    await a.init();
    await grant(a, 'crowd', 300, 'crowd-300');
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 ? a : b).deductCredits('crowd', 1)));
    expect(results.every(Boolean)).toBe(true);
    await Promise.all([a.flush(), b.flush()]);

    const alerts = [...seenA, ...seenB].sort((x, y) => y.level - x.level);
    expect(alerts.map((x) => [x.userId, x.level, x.balance])).toEqual([
      ['crowd', 100, 99],
      ['crowd', 10, 9],
    ]);
    // Each alert names the spend that crossed: its entry, in the history, took the balance to `balance`.
    const history = await a.listTransactions('crowd', { limit: 1000 });
    for (const alert of alerts) {
      const entry = history.transactions.find((t) => t.id === alert.entryId);
      expect(entry).toMatchObject({ seq: alert.seq, balanceAfter: alert.balance, amount: -1 });
    }
    expect(new Set(alerts.map((x) => x.id)).size).toBe(2);
    const audit = await consistentAudit(a, 'crowd');
    expect(audit.balance).toBe(0);
    expect((await a.reconcile({ olderThanMs: 0 })).alertsDelivered).toBe(0);
  });

  it('come again only after the balance went back to the level or above', async () => {
    const seen: LowBalanceAlert[] = [];
    const c = instance(seen, {}, [50]);
    await grant(c, 'yoyo', 60, 'yoyo-60');
    await c.deductCredits('yoyo', 15); // 45: below 50
    await c.deductCredits('yoyo', 5); // 40: still below, no new alert
    await c.flush();
    expect(seen.map((x) => x.balance)).toEqual([45]);
    await grant(c, 'yoyo', 9, 'yoyo-9'); // 49: still below
    await c.deductCredits('yoyo', 1);
    await c.flush();
    expect(seen).toHaveLength(1);
    await grant(c, 'yoyo', 1, 'yoyo-1'); // 49: below
    await grant(c, 'yoyo', 2, 'yoyo-2'); // 51: back above
    await c.deductCredits('yoyo', 1); // 50: at the level, not below
    await c.flush();
    expect(seen).toHaveLength(1);
    await c.deductCredits('yoyo', 30); // 20: below again
    await c.flush();
    expect(seen.map((x) => x.balance)).toEqual([45, 20]);
    // One spend that jumps over two levels raises both.
    const both: LowBalanceAlert[] = [];
    const d = instance(both, {}, [100, 10]);
    await grant(d, 'jump', 150, 'jump-150');
    await d.deductCredits('jump', 145);
    await d.flush();
    expect(both.map((x) => [x.level, x.balance]).sort()).toEqual([
      [10, 5],
      [100, 5],
    ]);
    await consistentAudit(c, 'yoyo');
  });

  it('follow guarded requests over HTTP, and a failed request given back does not take an alert back', async () => {
    const seen: LowBalanceAlert[] = [];
    const credits = instance(seen, {}, [20]);
    const app = express();
    app.post('/ai', credits.requireCredits(3), (_req, res) => void res.json({ ok: true }));
    app.post('/ai/fails', credits.requireCredits(3), (_req, res) => void res.status(500).json({ error: 'model down' }));
    const server = await listen(app);
    try {
      await grant(credits, 'http-user', 30, 'http-30');
      const statuses = await Promise.all(Array.from({ length: 40 }, () => post(`${server.url}/ai`, 'http-user').then((r) => r.status)));
      expect(statuses.filter((s) => s === 200)).toHaveLength(10);
      await credits.flush();
      expect(seen.map((x) => [x.level, x.balance])).toEqual([[20, 18]]);

      await grant(credits, 'http-user', 21, 'http-21'); // 21
      expect((await post(`${server.url}/ai/fails`, 'http-user')).status).toBe(500); // 18, then given back: 21
      await credits.flush();
      // The fall to 18 happened (the charge was in the ledger); the give-back is its own entry.
      expect(seen.map((x) => x.balance)).toEqual([18, 18]);
      expect(await credits.getBalance('http-user')).toBe(21);
      await consistentAudit(credits, 'http-user');
    } finally {
      await server.close();
    }
  });

  it('call a hook that throws again, with the same alert, until it takes it', async () => {
    const calls: LowBalanceAlert[] = [];
    const errors: unknown[] = [];
    const credits = createCredits({
      connection,
      getUserId: headerUser,
      hooks: { onBackgroundError: (err) => void errors.push(err) },
      lowBalance: {
        levels: 5,
        onLowBalance: async (alert) => {
          calls.push(alert);
          if (calls.length < 3) throw new Error('mail server down');
        },
      },
    });
    await grant(credits, 'flaky-hook', 6, 'flaky-6');
    await credits.deductCredits('flaky-hook', 2);
    await credits.flush();
    for (let i = 0; i < 50 && calls.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    await credits.flush();
    expect(calls).toHaveLength(3);
    expect(new Set(calls.map((c) => c.id)).size).toBe(1);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(String(errors[0])).toMatch(/onLowBalance threw .*mail server down/);
    expect((await credits.reconcile({ olderThanMs: 0 })).alertsDelivered).toBe(0);
    expect(calls).toHaveLength(3);
  });

  it('are found by reconcile() on another instance when the spending instance died before moving its journal', async () => {
    const plan: CrashPlan = { point: 'before-move', mode: 'die' };
    const deadSeen: LowBalanceAlert[] = [];
    const dead = instance(deadSeen, { store: crashingMongoStore(connection, () => plan), hooks: { onBackgroundError: () => undefined } }, [10]);
    const seen: LowBalanceAlert[] = [];
    const survivor = instance(seen, {}, [10]);
    await grant(survivor, 'crash-move', 12, 'crash-move-12');
    expect(await dead.deductCredits('crash-move', 5)).toBe(true); // 7: below 10; the move then dies
    await dead.flush();
    expect(plan.dead).toBe(true);
    expect(deadSeen).toHaveLength(0);

    const report = await survivor.reconcile({ olderThanMs: 0 });
    expect(report.accountsMoved).toBe(1);
    await survivor.flush();
    expect(seen.map((x) => [x.level, x.balance])).toEqual([[10, 7]]);
    expect((await survivor.reconcile({ olderThanMs: 0 })).alertsDelivered).toBe(0);
    expect(seen).toHaveLength(1);
    await consistentAudit(survivor, 'crash-move');
  });

  it('recorded by an instance that died before delivering them are delivered by reconcile(), once', async () => {
    let dead = false;
    const inner = new MongoCreditStore({ connection, collectionPrefix: 'credit_' });
    // The process dies right after its alert is recorded: every later call of it fails, its hook never runs.
    const dying = decorateStore(inner, async (name, call) => {
      if (dead) throw new Error(`${name}: the process is gone`);
      const result = await call();
      if (name === 'insertAlerts' && (result as string[]).length > 0) dead = true;
      return result;
    });
    const deadSeen: LowBalanceAlert[] = [];
    const victim = createCredits({
      connection,
      getUserId: headerUser,
      store: dying,
      hooks: { onBackgroundError: () => undefined },
      lowBalance: {
        levels: 10,
        onLowBalance: (alert): void => {
          if (dead) throw new Error('the process is gone');
          deadSeen.push(alert);
        },
      },
    });
    const seen: LowBalanceAlert[] = [];
    const survivor = instance(seen, {}, [10]);
    await grant(survivor, 'crash-deliver', 11, 'crash-deliver-11');
    expect(await victim.deductCredits('crash-deliver', 4)).toBe(true);
    await victim.flush();
    expect(dead).toBe(true);
    expect(deadSeen).toHaveLength(0);

    // Not before its lease: the dying instance might still be delivering it.
    expect((await survivor.reconcile()).alertsDelivered).toBe(0);
    const report = await survivor.reconcile({ olderThanMs: 0 });
    expect(report.alertsDelivered).toBe(1);
    expect(seen.map((x) => [x.userId, x.level, x.balance])).toEqual([['crash-deliver', 10, 7]]);
    expect((await survivor.reconcile({ olderThanMs: 0 })).alertsDelivered).toBe(0);
    await consistentAudit(survivor, 'crash-deliver');
  });

  const refused: Array<[string, unknown, RegExp]> = [
    ['no hook', { levels: 10 }, /lowBalance.onLowBalance` must be a function/],
    ['no levels', { onLowBalance: () => undefined }, /lowBalance.levels` must be a positive integer or an array of 1 to 10/],
    ['an empty list', { levels: [], onLowBalance: () => undefined }, /lowBalance.levels` must be/],
    ['a negative level', { levels: [-5], onLowBalance: () => undefined }, /lowBalance.levels\[0\]` must be a positive integer, got -5/],
    ['a fractional level', { levels: [10, 2.5], onLowBalance: () => undefined }, /lowBalance.levels\[1\]` must be a positive integer, got 2.5/],
    ['a level twice', { levels: [10, 10], onLowBalance: () => undefined }, /lists a level twice/],
    ['eleven levels', { levels: Array.from({ length: 11 }, (_, i) => i + 1), onLowBalance: () => undefined }, /1 to 10/],
    ['a misspelt key', { level: 10, onLowBalance: () => undefined }, /unknown key `lowBalance.level`. Did you mean `lowBalance.levels`/],
    ['not an object', 10, /`lowBalance` must be an object/],
  ];
  it('recorded by an insert whose reply was lost are delivered by the next move, without waiting for reconcile()', async () => {
    let lose = true;
    const inner = new MongoCreditStore({ connection, collectionPrefix: 'credit_' });
    const lossy = decorateStore(inner, async (name, call) => {
      const result = await call();
      if (name === 'insertAlerts' && lose) {
        lose = false;
        throw new Error('connection reset after the insert was sent (injected)');
      }
      return result;
    });
    const seen: LowBalanceAlert[] = [];
    const credits = instance(seen, { store: lossy, hooks: { onBackgroundError: () => undefined } }, [10]);
    await grant(credits, 'lost-reply', 12, 'lost-reply-12');
    await credits.deductCredits('lost-reply', 5); // 7: the alert is recorded, its reply lost
    await credits.flush();
    expect(seen).toHaveLength(0);
    expect(lose).toBe(false);
    await credits.deductCredits('lost-reply', 1); // the journal, moved again with this entry, finds it recorded
    await credits.flush();
    expect(seen.map((x) => [x.level, x.balance])).toEqual([[10, 7]]);
    expect((await credits.reconcile({ olderThanMs: 0 })).alertsDelivered).toBe(0);
    await consistentAudit(credits, 'lost-reply');
  });

  it.each(refused)('refuse %s at createCredits', (_what, lowBalance, message) => {
    expect(() => createCredits({ connection, getUserId: headerUser, lowBalance: lowBalance as never })).toThrow(CreditsConfigError);
    expect(() => createCredits({ connection, getUserId: headerUser, lowBalance: lowBalance as never })).toThrow(message);
  });
});
