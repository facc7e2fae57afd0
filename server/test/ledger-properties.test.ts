/**
 * Property-based test of the ledger rules. Random batches of concurrent grants, deductions (with and
 * without retried idempotency keys), guarded requests that fail (refund) or are metered (settle), with
 * crashes injected between steps; then recovery. After every run:
 *   1. no balance is below zero (nothing here may take it there);
 *   2. every balance equals the sum of its ledger entries, and recovery leaves no entry unmoved;
 *   3. every idempotency key was applied at most once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import express from 'express';
import fc from 'fast-check';
import { createCredits, type Credits, type LedgerEntry } from 'credit-kit/server';
import { grantKey } from '../domain/keys';
import { claimId } from '../ledger';
import { crashingMongoStore, type CrashPlan, type CrashPoint } from './crashing-store';
import { aiRoutes, connect, headerUser, listen, post } from './helpers';
import type { Connection } from 'mongoose';

const POINTS: CrashPoint[] = ['after-claim', 'after-apply', 'before-move'];
/** The crash planned for one operation: its store calls fail at the point (see crashing-store.ts). */
const crashPlan = new AsyncLocalStorage<CrashPlan>();

let connection: Connection;
let credits: Credits;
let server: { url: string; close(): Promise<void> };

beforeAll(async () => {
  // Injected crashes are reported as 500s by design; keep their logs out of the test output.
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
  connection = await connect();
  credits = createCredits({
    store: crashingMongoStore(connection, () => crashPlan.getStore()),
    getUserId: headerUser,
    // Operations here take milliseconds; a short lease lets retries decide crashed claims quickly.
    claimLeaseMs: 300,
    // Injected crashes fail give-backs and moves on purpose; what they would log is not the test's subject.
    hooks: { onBackgroundError: () => undefined },
    logger: () => undefined,
  });
  await credits.init();
  const app = express();
  app.use((req, _res, next) => {
    const point = req.get('x-crash') as CrashPoint | undefined;
    if (point) crashPlan.run({ point }, next);
    else next();
  });
  // An injected crash rejects settle(): a 500 and a give-back.
  aiRoutes(app, credits, { fail: 3, meter: 5 });
  server = await listen(app);
});

afterAll(async () => {
  await credits.flush();
  await server.close();
  await connection.close();
});

type Op =
  | { type: 'grant'; user: number; amount: number; key: number }
  | { type: 'deduct'; user: number; amount: number; key: number | null }
  | { type: 'fail'; user: number; key: number | null }
  | { type: 'meter'; user: number; used: number };
type Planned = Op & { crash: CrashPoint | null };

const op: fc.Arbitrary<Planned> = fc
  .tuple(
    fc.oneof(
      fc.record({ type: fc.constant('grant' as const), user: fc.nat(1), amount: fc.integer({ min: 1, max: 20 }), key: fc.nat(4) }),
      fc.record({
        type: fc.constant('deduct' as const),
        user: fc.nat(1),
        amount: fc.integer({ min: 1, max: 15 }),
        key: fc.option(fc.nat(4), { nil: null }),
      }),
      fc.record({ type: fc.constant('fail' as const), user: fc.nat(1), key: fc.option(fc.nat(4), { nil: null }) }),
      fc.record({ type: fc.constant('meter' as const), user: fc.nat(1), used: fc.integer({ min: 0, max: 12 }) }),
    ),
    fc.option(fc.constantFrom(...POINTS), { nil: null, freq: 3 }),
  )
  .map(([o, crash]) => ({ ...o, crash }));

async function run(o: Planned, users: string[]): Promise<void> {
  const user = users[o.user]!;
  const act = async () => {
    switch (o.type) {
      case 'grant':
        await credits.grantCredits(user, o.amount, { idempotencyKey: `g${o.key}` });
        return;
      case 'deduct':
        await credits.deductCredits(user, o.amount, o.key === null ? {} : { idempotencyKey: `d${o.key}` });
        return;
      case 'fail':
        await post(`${server.url}/ai/fail`, user, undefined, {
          ...(o.crash ? { 'x-crash': o.crash } : {}),
          ...(o.key !== null ? { 'idempotency-key': `r${o.key}` } : {}),
        });
        return;
      case 'meter':
        await post(`${server.url}/ai/meter`, user, undefined, { 'x-used': String(o.used), ...(o.crash ? { 'x-crash': o.crash } : {}) });
        return;
    }
  };
  // An injected crash rejects the call, as a dead process would; an idempotency conflict may too.
  await (o.crash ? crashPlan.run({ point: o.crash }, act) : act()).catch(() => undefined);
}

async function allEntries(userId: string): Promise<{ balance: number; entries: LedgerEntry[]; journal: number }> {
  const account = await credits.store.getAccount(userId);
  const ledger = await credits.store.listLedger(userId, { limit: 100_000 });
  const byId = new Map(ledger.map((e) => [e.id, e.amount]));
  for (const j of account?.journal ?? []) byId.set(j.id, j.amount);
  return {
    balance: account?.balance ?? 0,
    entries: ledger,
    journal: account?.journal.length ?? 0,
    ...{ sum: [...byId.values()].reduce((a, b) => a + b, 0) },
  } as { balance: number; entries: LedgerEntry[]; journal: number; sum: number };
}

it('keeps rules 1-3 under random concurrent operations, retries and crashes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 2, maxLength: 6 }), async (batches) => {
      const users = [`p-${randomUUID()}`, `p-${randomUUID()}`];
      await credits.grantCredits(users[0]!, 10, { idempotencyKey: 'seed' });
      for (const batch of batches) await Promise.all(batch.map((o) => run(o, users)));
      await credits.flush();

      // Recovery, as after a restart: claims older than the lease are decided, journals moved.
      await new Promise((r) => setTimeout(r, 5));
      const recovery = createCredits({ connection, getUserId: headerUser, claimLeaseMs: 1 });
      await recovery.reconcile();

      for (const user of users) {
        const state = (await allEntries(user)) as Awaited<ReturnType<typeof allEntries>> & { sum: number };
        expect(state.balance).toBeGreaterThanOrEqual(0); // rule 1
        expect(state.sum).toBe(state.balance); // rule 2
        expect(state.journal).toBe(0);
        const keys = state.entries.filter((e) => e.key).map((e) => e.key);
        expect(new Set(keys).size).toBe(keys.length); // rule 3
        const page = await credits.listTransactions(user, { limit: 1000 });
        expect(page.transactions.reduce((s, t) => s + t.amount, 0)).toBe(page.balance);
      }
    }),
    { numRuns: 40 },
  );
}, 120_000);

it('startReconciler repairs what a crash left behind, on its own', async () => {
  const user = `r-${randomUUID()}`;
  await credits.grantCredits(user, 10, { idempotencyKey: 'seed' });
  // A grant whose process dies after claiming its key (nothing it still had queued reaches the database),
  // and a deduction whose move to the ledger crashes.
  const dying: CrashPlan = { point: 'after-claim', mode: 'die' };
  const doomed = createCredits({ store: crashingMongoStore(connection, () => dying), getUserId: headerUser, hooks: { onBackgroundError: () => undefined }, logger: () => undefined });
  await doomed.grantCredits(user, 5, { idempotencyKey: 'crashed' }).catch(() => undefined);
  expect(dying.dead).toBe(true);
  await crashPlan.run({ point: 'before-move' }, async () => {
    await credits.deductCredits(user, 3);
    await credits.flush();
  });
  expect((await credits.store.getAccount(user))?.journal.length).toBeGreaterThan(0);
  expect(await credits.store.getClaim(claimId(user, grantKey('crashed')))).toMatchObject({ state: 'pending' });
  const recovery = createCredits({ connection, getUserId: headerUser, claimLeaseMs: 1 });
  await new Promise((r) => setTimeout(r, 5));
  const stop = recovery.startReconciler({ everyMs: 20 });
  try {
    for (let i = 0; i < 100; i++) {
      const account = await credits.store.getAccount(user);
      const claim = await credits.store.getClaim(claimId(user, grantKey('crashed')));
      if (account?.journal.length === 0 && claim === null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await stop(); // a pass still running would otherwise report errors after the test closed the connection
  }
  await recovery.flush();
  expect((await credits.store.getAccount(user))?.journal).toEqual([]);
  expect(await credits.store.getClaim(claimId(user, grantKey('crashed')))).toBeNull(); // released: never applied
  // The key is free again: a retry applies the grant once.
  expect(await credits.grantCredits(user, 5, { idempotencyKey: 'crashed' })).toMatchObject({ granted: true, balance: 12 });
});
