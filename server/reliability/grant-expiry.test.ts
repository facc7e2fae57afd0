/**
 * Expiry under faults: a grant's unspent rest leaves the balance exactly once, with the right amount,
 * whatever happens to the sweep. Database faults go through the fault-injecting proxy in tools/ (a stalled
 * link, a reply lost after the write landed); process crashes through the crashing store decorator (a
 * sweeper that dies after claiming the expiry, or after its write landed); two instances sweep at once;
 * clocks minutes apart. After each: one `expire` entry of the grant's rest, and the ledger (per grant too)
 * adds up to the balance.
 */
import type { Credits } from 'credit-kit/server';
import { expireKey, grantKey } from '../domain/keys';
import { claimId } from '../ledger';
import type { CrashPlan } from '../test/crashing-store';
import { audit } from '../test/helpers';
import { faultInstances, sleep } from './fault-instances';

jest.spyOn(console, 'error').mockImplementation(() => undefined);

const { db, diesAtEachPoint, instance, proxiedPair } = faultInstances('ck_expiry_');

const EXPIRES = new Date(Date.now() + 3_600_000);
const AFTER = new Date(EXPIRES.getTime() + 1);

/** A promotion of 50 (spent first: it expires) and a top-up of 20, then 15 spent: the promotion holds 35. */
async function seeded(credits: Credits, user: string): Promise<void> {
  await credits.grantCredits(user, 50, { idempotencyKey: 'promo', source: 'promotion', expiresAt: EXPIRES });
  await credits.grantCredits(user, 20, { idempotencyKey: 'topup' });
  expect(await credits.deductCredits(user, 15)).toBe(true);
}

/** Exactly one expiry of the promotion's rest, and every sum adds up. */
async function expiredOnce(credits: Credits, user: string, rest = 35): Promise<void> {
  await credits.flush();
  const a = await audit(credits, user);
  expect(a.sum).toBe(a.balance);
  expect(a.kinds.expire ?? 0).toBe(1);
  const { transactions } = await credits.listTransactions(user, { limit: 1000 });
  expect(transactions.find((t) => t.kind === 'expire')).toMatchObject({ amount: -rest, grants: [{ grant: grantKey('promo'), amount: -rest }] });
  const d = await credits.getBalanceDetails(user);
  expect(d.grants.find((g) => g.id === grantKey('promo'))).toBeUndefined();
  expect(d.balance).toBe(a.balance);
  expect(d.grants.reduce((s, g) => s + g.remaining, 0) - d.debt).toBe(d.balance);
  expect(await credits.store.getClaim(claimId(user, expireKey(grantKey('promo'))))).toMatchObject({ state: 'applied', amount: -rest });
}

it('a lost reply on the expiry write: settled by fencing and looking, one entry', async () => {
  const { proxy, a, b } = await proxiedPair({ timeoutMs: 1000 });
  await seeded(b, 'lost');
  await b.flush();
  proxy.dropNextReplies(1, ['findAndModify']); // the expiry lands; its reply never comes back
  const report = await a.expireGrants({ now: AFTER });
  expect(proxy.stats().repliesDropped).toBe(1);
  expect(report).toMatchObject({ grantsExpired: 1, creditsExpired: 35, errors: 0 });
  expect(await b.expireGrants({ now: AFTER })).toMatchObject({ grantsExpired: 0 });
  await expiredOnce(b, 'lost');
});

it('a stalled sweeper: the other instance decides its claim (fenced) and expires once; the late write is refused', async () => {
  const { proxy, a, b } = await proxiedPair({}, { claimLeaseMs: 300 });
  await seeded(b, 'stall');
  await b.flush();
  proxy.stall(['findAndModify']);
  const stalled = a.expireGrants({ userId: 'stall', now: AFTER });
  await sleep(700); // past B's lease: A looks gone
  expect(proxy.stats().stalled).toBeGreaterThan(0); // A's expiry write is held on the link
  // Spending goes on meanwhile, and B's sweep expires what the promotion holds after it.
  expect(await b.deductCredits('stall', 5)).toBe(true);
  expect(await b.expireGrants({ now: AFTER })).toMatchObject({ grantsExpired: 1, creditsExpired: 30 });
  proxy.release();
  expect(await stalled).toMatchObject({ grantsExpired: 0 });
  await a.flush();
  await expiredOnce(b, 'stall', 30);
});

it('a sweeper that dies after claiming the expiry, or after its write landed: reconcile finishes it, once', () =>
  diesAtEachPoint(
    seeded,
    (a, user) => a.expireGrants({ userId: user, now: AFTER }),
    async (b, user) => {
      await b.expireGrants({ now: AFTER });
      await b.expireGrants({ now: AFTER });
      await expiredOnce(b, user);
    },
  ));

it('two instances sweeping at once, repeatedly, while spends land: one entry', async () => {
  const name = db();
  const a = await instance(name);
  const b = await instance(name);
  await seeded(a, 'two');
  await a.flush();
  const sweeps = Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).expireGrants({ userId: i < 3 ? 'two' : undefined, now: AFTER }));
  const spends = Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).deductCredits('two', 1));
  const reports = await Promise.all(sweeps);
  const spent = (await Promise.all(spends)).filter(Boolean).length;
  expect(reports.reduce((s, r) => s + r.grantsExpired, 0)).toBe(1);
  await a.flush();
  await b.flush();
  const { transactions } = await a.listTransactions('two', { limit: 1000 });
  const expiry = transactions.find((t) => t.kind === 'expire')!;
  // What the promotion held when the expiry came: 35 less the spends ordered before it (the grace).
  const before = transactions.filter((t) => t.kind === 'usage' && t.seq < expiry.seq && t.seq > 3).length;
  await expiredOnce(a, 'two', 35 - before);
  expect(await a.getBalance('two')).toBe(70 - 15 - spent - (35 - before));
});

it('clocks minutes apart: an instance behind does not expire early, one ahead expires once, never twice', async () => {
  const name = db();
  const a = await instance(name);
  const b = await instance(name);
  await seeded(a, 'skew');
  const minutes = (n: number) => new Date(EXPIRES.getTime() + n * 60_000);
  // B's clock is five minutes behind: at the expiry by A's clock it is not due for B.
  expect(await b.expireGrants({ now: minutes(-5) })).toMatchObject({ grantsExpired: 0 });
  expect(await a.expireGrants({ userId: 'skew', now: minutes(-1) })).toMatchObject({ grantsExpired: 0 });
  const [ahead, behind] = await Promise.all([a.expireGrants({ now: minutes(3) }), b.expireGrants({ now: minutes(-2) })]);
  expect(ahead.grantsExpired + behind.grantsExpired).toBe(1);
  // Both later see it done.
  expect(await b.expireGrants({ now: minutes(10) })).toMatchObject({ grantsExpired: 0 });
  await expiredOnce(a, 'skew');
});

/** Runs `fn` with this process's wall clock `ms` ahead (as tools/skew-clock.cjs does for a whole process). */
async function withClockAhead<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  function Skewed(...args: unknown[]): unknown {
    if (!new.target) return new RealDate(realNow() + ms).toString();
    return Reflect.construct(RealDate, args.length === 0 ? [realNow() + ms] : args, new.target === Skewed ? RealDate : new.target);
  }
  Object.setPrototypeOf(Skewed, RealDate);
  Object.defineProperty(Skewed, 'prototype', { value: RealDate.prototype, writable: false });
  (Skewed as unknown as { now: () => number }).now = () => realNow() + ms;
  globalThis.Date = Skewed as unknown as DateConstructor;
  try {
    return await fn();
  } finally {
    globalThis.Date = RealDate;
  }
}

it('an instance whose clock runs ahead does not expire early: the sweep also asks the database’s clock', async () => {
  const name = db();
  const a = await instance(name);
  await a.grantCredits('ahead', 10, { idempotencyKey: 'soon', expiresAt: new Date(Date.now() + 60_000) });
  await a.grantCredits('ahead', 5, { idempotencyKey: 'brief', expiresAt: new Date(Date.now() + 300) });
  await a.flush();
  await sleep(400);
  // Five minutes ahead by its own clock: only the grant due by the database's clock too is expired.
  const real = Date.now();
  const report = await withClockAhead(5 * 60_000, async () => {
    expect(new Date().getTime() - real).toBeGreaterThan(4 * 60_000); // the skewed clock is in force
    return a.reconcile();
  });
  expect(report).toMatchObject({ grantsExpired: 1, errors: 0 });
  expect(await withClockAhead(5 * 60_000, () => a.expireGrants({ userId: 'ahead' }))).toMatchObject({ grantsExpired: 0 });
  await a.flush();
  const d = await a.getBalanceDetails('ahead');
  expect(d).toMatchObject({ balance: 10, grants: [{ id: grantKey('soon'), remaining: 10 }] });
  const a2 = await audit(a, 'ahead');
  expect(a2.sum).toBe(a2.balance);
});

it('a crash of the journal mover changes no allocation: the parts read from the journal are the parts moved', async () => {
  const name = db();
  const plan: { current?: CrashPlan } = {};
  const a = await instance(name, { crash: () => plan.current });
  await seeded(a, 'mover');
  expect(await a.deductCredits('mover', 40)).toBe(true); // promotion 35, top-up 5
  plan.current = { point: 'before-move' };
  await a.flush().catch(() => undefined);
  plan.current = undefined;
  const fromJournal = (await a.listTransactions('mover', { limit: 100 })).transactions;
  expect((await a.store.getAccount('mover'))!.journal.length).toBeGreaterThan(0);
  const b = await instance(name, { claimLeaseMs: 1 });
  await sleep(5);
  await b.reconcile({ olderThanMs: 0 });
  expect((await b.store.getAccount('mover'))!.journal).toEqual([]);
  expect((await b.listTransactions('mover', { limit: 100 })).transactions).toEqual(fromJournal);
  expect(await b.getBalanceDetails('mover')).toMatchObject({ balance: 15, grants: [{ id: grantKey('topup'), remaining: 15 }] });
});
