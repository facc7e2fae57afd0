/**
 * Rollover and revoke through the public surface, on the real embedded server: a grant with rollover terms
 * keeps min(max, rest) as `rollover:<grant>` in its one expiry entry, exactly once while spends race two
 * sweeping instances; revokeGrant takes a grant's rest out once while spends and a second revoke race it,
 * and closes the grant so that a give-back of a spend from it goes to `base`; bad rollover terms change
 * nothing.
 *
 * Every scenario ends with `grantAudit`: the ledger sums to the balance, and per grant, what the ledger's
 * parts added and took equals what the breakdown says is left.
 */
import { randomUUID } from 'node:crypto';
import express from 'express';
import { createCredits, type Credits } from 'credit-kit/server';
import type { Connection } from 'mongoose';
import { createFetchCredits } from 'credit-kit/fetch';
import { consistentAudit, connect, headerUser, listen, post } from './helpers';
import { claimId } from '../ledger';
import { grantKey, revokeKey } from '../domain/keys';
import { sweepsRacingSpends } from './sweep-race';

let connection: Connection;
let credits: Credits;
let other: Credits;
let server: { url: string; close(): Promise<void> };
/** Opens the gate of the held route's n-th request, which then fails (and is given back). */
const gates: Array<() => void> = [];

beforeAll(async () => {
  connection = await connect();
  credits = createCredits({ connection, getUserId: headerUser, timeoutMs: 60_000, claimLeaseMs: 60_000 });
  // A second instance on the same database: sweeps and revokes race between the two.
  other = createCredits({ connection, getUserId: headerUser, timeoutMs: 60_000, claimLeaseMs: 60_000 });
  await credits.init();
  const app = express();
  app.post(
    '/ai/held',
    credits.requireCredits(10, async () => {
      await new Promise<void>((open) => gates.push(open));
      throw new Error('model failed');
    }),
  );
  server = await listen(app);
});

afterAll(async () => {
  await credits.flush();
  await other.flush();
  await server.close();
  await connection.close();
});

const user = (tag: string) => `${tag}-${randomUUID()}`;
const HOUR = 3_600_000;

async function grantAudit(c: Credits, userId: string) {
  await consistentAudit(c, userId);
  const perGrant = new Map<string, number>();
  for (let cursor: string | null = null; ; ) {
    const page = await c.listTransactions(userId, { limit: 1000, cursor });
    for (const t of page.transactions) {
      expect((t.grants ?? []).reduce((s, p) => s + p.amount, 0) - (t.debt ?? 0)).toBe(t.amount);
      for (const p of t.grants ?? []) perGrant.set(p.grant, (perGrant.get(p.grant) ?? 0) + p.amount);
    }
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  const details = await c.getBalanceDetails(userId);
  for (const [id, sum] of perGrant) expect([id, details.grants.find((g) => g.id === id)?.remaining ?? 0]).toEqual([id, sum]);
  expect(details.grants.reduce((s, g) => s + g.remaining, 0) - details.debt).toBe(details.balance);
  return details;
}

async function transactions(userId: string) {
  await credits.flush();
  await other.flush();
  return (await credits.listTransactions(userId, { limit: 1000 })).transactions;
}

it('runs the README example (Rollover and revoke)', async () => {
  const u = user('user-2');
  const periodEnd = new Date('2030-12-01T00:00:00Z');
  await credits.grantCredits(u, 500, {
    idempotencyKey: 'sub-user-2-2030-11',
    source: 'subscription',
    priority: 10,
    expiresAt: periodEnd,
    rollover: { max: 100, expiresAt: new Date('2031-01-01T00:00:00Z') },
  });
  await credits.deductCredits(u, 320);
  await credits.expireGrants({ userId: u, now: new Date(periodEnd.getTime() + 1) });
  const [expiry] = (await transactions(u)).filter((t) => t.kind === 'expire');
  expect(expiry).toMatchObject({
    amount: -80,
    grants: [
      { grant: 'grant:sub-user-2-2030-11', amount: -180 },
      { grant: 'rollover:grant:sub-user-2-2030-11', amount: 100 },
    ],
  });
  expect((await credits.getBalanceDetails(u)).grants).toEqual([
    { id: 'rollover:grant:sub-user-2-2030-11', source: 'rollover', remaining: 100, priority: 10, expiresAt: '2031-01-01T00:00:00.000Z' },
  ]);
  expect(await credits.revokeGrant(u, 'rollover:grant:sub-user-2-2030-11', { reason: 'invoice refunded' })).toEqual({ revoked: 100, balance: 0 });
  expect((await transactions(u)).filter((t) => t.kind === 'revoke')).toEqual([expect.objectContaining({ amount: -100, reason: 'invoice refunded' })]);
  await grantAudit(credits, u);
});

describe('rollover', () => {
  it('keeps min(max, rest) as rollover:<grant> in the one expiry entry, once, while 300 spends race two sweepers', async () => {
    const u = user('rollover-race');
    const at = new Date(Date.now() + HOUR);
    const until = new Date(at.getTime() + 30 * 24 * HOUR);
    await credits.grantCredits(u, 100, { idempotencyKey: 'topup', priority: 10 });
    await credits.grantCredits(u, 400, { idempotencyKey: 'sub-1', source: 'subscription', priority: 90, expiresAt: at, rollover: { max: 50, expiresAt: until } });
    const after = new Date(at.getTime() + 1);
    const { expiredBy, spends } = await sweepsRacingSpends(credits, other, u, after);
    expect(expiredBy.reduce((a, b) => a + b, 0)).toBe(1);
    const spent = spends.filter(Boolean).length;
    expect(spent).toBe(300);

    const list = await transactions(u);
    const expiries = list.filter((t) => t.kind === 'expire');
    expect(expiries).toHaveLength(1);
    const [expiry] = expiries;
    const taken = -expiry!.grants!.find((p) => p.grant === grantKey('sub-1'))!.amount;
    const kept = Math.min(50, taken);
    // One entry: the subscription's whole rest out, the kept part into the rollover grant.
    expect(expiry).toMatchObject({
      amount: -(taken - kept),
      grants: [
        { grant: grantKey('sub-1'), amount: -taken, source: 'subscription' },
        ...(kept > 0 ? [{ grant: `rollover:${grantKey('sub-1')}`, amount: kept, source: 'rollover', expiresAt: until.toISOString() }] : []),
      ],
    });
    // Spent, expired and left add up to what was granted; the subscription gave exactly what it held.
    const d = await grantAudit(credits, u);
    expect(spent + (taken - kept) + d.balance).toBe(500);
    const fromSub = list.filter((t) => t.kind === 'usage').flatMap((t) => t.grants!).filter((p) => p.grant === grantKey('sub-1')).reduce((s, p) => s - p.amount, 0);
    expect(fromSub + taken).toBe(400);
    expect(await credits.store.getClaim(claimId(u, `expire:${grantKey('sub-1')}`))).toMatchObject({ state: 'applied' });

    // Sweeping again changes nothing; at the rollover's own expiry it expires and does not roll over.
    expect(await credits.expireGrants({ userId: u, now: after })).toMatchObject({ grantsExpired: 0 });
    const rolled = d.grants.find((g) => g.id === `rollover:${grantKey('sub-1')}`)?.remaining ?? 0;
    const report = await other.expireGrants({ userId: u, now: new Date(until.getTime() + 1) });
    expect(report).toMatchObject({ grantsExpired: rolled > 0 ? 1 : 0, creditsExpired: rolled });
    const second = (await transactions(u)).filter((t) => t.kind === 'expire');
    expect(second).toHaveLength(rolled > 0 ? 2 : 1);
    if (rolled > 0) expect(second[0]).toMatchObject({ amount: -rolled, grants: [{ grant: `rollover:${grantKey('sub-1')}`, amount: -rolled }] });
    const end = await grantAudit(credits, u);
    expect(end.balance).toBe(d.balance - rolled);
    expect(end.grants.filter((g) => g.source === 'rollover' || g.source === 'subscription')).toEqual([]);
  }, 120_000);

  it('keeps everything when the rest is within max (an expiry entry of 0), and nothing with max 0; never-expiring when rollover has no expiresAt', async () => {
    const u = user('rollover-all');
    const at = new Date(Date.now() + HOUR);
    await credits.grantCredits(u, 30, { idempotencyKey: 'sub-a', source: 'subscription', expiresAt: at, rollover: { max: 100 } });
    await credits.grantCredits(u, 20, { idempotencyKey: 'sub-b', source: 'subscription', expiresAt: at.toISOString(), rollover: { max: 0 } });
    expect(await credits.deductCredits(u, 10)).toBe(true); // same priority, same expiry: the older, sub-a
    const report = await credits.expireGrants({ userId: u, now: new Date(at.getTime() + 1) });
    expect(report).toMatchObject({ grantsExpired: 2, creditsExpired: 20 });
    const expiries = (await transactions(u)).filter((t) => t.kind === 'expire');
    expect(expiries.map((t) => [t.amount, t.grants!.map((p) => [p.grant, p.amount])])).toEqual(
      expect.arrayContaining([
        [0, [[grantKey('sub-a'), -20], [`rollover:${grantKey('sub-a')}`, 20]]],
        [-20, [[grantKey('sub-b'), -20]]],
      ]),
    );
    const d = await grantAudit(credits, u);
    expect(d).toMatchObject({ balance: 20, bySource: { rollover: 20 }, nextExpiry: null, grants: [{ id: `rollover:${grantKey('sub-a')}`, remaining: 20, expiresAt: null, priority: 50 }] });
  });

  it('refuses bad rollover terms with invalid_request, and nothing is written', async () => {
    const u = user('rollover-bad');
    const at = new Date(Date.now() + HOUR);
    const bad: Array<Record<string, unknown>> = [
      { rollover: { max: 10 } }, // no expiresAt on the grant
      { expiresAt: at, rollover: { max: -1 } },
      { expiresAt: at, rollover: { max: 1.5 } },
      { expiresAt: at, rollover: { max: '10' } },
      { expiresAt: at, rollover: {} },
      { expiresAt: at, rollover: 10 },
      { expiresAt: at, rollover: { max: 10, expiresAt: at } }, // not after the grant's expiry
      { expiresAt: at, rollover: { max: 10, expiresAt: new Date(at.getTime() - 1) } },
      { expiresAt: at, rollover: { max: 10, expiresAt: 'next month' } },
      { expiresAt: at, rollover: { max: 10, expiresAt: '2030-02-30T00:00:00Z' } },
    ];
    for (const [i, terms] of bad.entries()) {
      await expect(credits.grantCredits(u, 10, { idempotencyKey: `bad-${i}`, ...terms } as never)).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    }
    expect(await credits.getBalance(u)).toBe(0);
    expect(await credits.store.getAccount(u)).toBeNull();
  });

  it('refuses a rollover with a field it does not know (a misspelt expiresAt would keep the credits for good), and a max beyond a safe integer', async () => {
    const u = user('rollover-typo');
    const at = new Date(Date.now() + HOUR);
    const until = new Date(at.getTime() + HOUR).toISOString();
    for (const [i, rollover] of [{ max: 10, expireAt: until }, { max: 10, expires_at: until }, { max: 10, expiresAt: until, priority: 1 }, { max: 2 ** 53 }, { max: Infinity }].entries()) {
      await expect(credits.grantCredits(u, 10, { idempotencyKey: `typo-${i}`, expiresAt: at, rollover } as never)).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    }
    expect(await credits.store.getAccount(u)).toBeNull();
    // A max beyond the grant, up to the largest safe integer, is fine: only the rest is kept.
    await credits.grantCredits(u, 10, { idempotencyKey: 'huge', source: 'subscription', expiresAt: at, rollover: { max: Number.MAX_SAFE_INTEGER, expiresAt: until } });
    expect(await credits.deductCredits(u, 3)).toBe(true);
    expect(await credits.expireGrants({ userId: u, now: new Date(at.getTime() + 1) })).toMatchObject({ grantsExpired: 1, creditsExpired: 0 });
    expect((await grantAudit(credits, u)).grants).toEqual([{ id: `rollover:${grantKey('huge')}`, source: 'rollover', remaining: 7, priority: 50, expiresAt: until }]);
  });
});

describe('revokeGrant', () => {
  it('takes the rest out once while 200 spends and a second revoke from another instance race it', async () => {
    const u = user('revoke-race');
    await credits.grantCredits(u, 150, { idempotencyKey: 'sub-1', source: 'subscription', priority: 10, expiresAt: new Date(Date.now() + HOUR) });
    await credits.grantCredits(u, 100, { idempotencyKey: 'topup' });
    const spending = Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? credits : other).deductCredits(u, 1)));
    await new Promise((r) => setTimeout(r, 20));
    const [a, b] = await Promise.all([credits.revokeGrant(u, grantKey('sub-1')), other.revokeGrant(u, grantKey('sub-1'), { reason: 'invoice refunded' })]);
    const spent = (await spending).filter(Boolean).length;
    // At most one of the two revoked anything; together they took the grant's rest at their place in the ledger.
    expect([a!.revoked, b!.revoked].filter((n) => n > 0).length).toBeLessThanOrEqual(1);
    const list = await transactions(u);
    const revokes = list.filter((t) => t.kind === 'revoke');
    const revoked = a!.revoked + b!.revoked;
    expect(revokes).toHaveLength(revoked > 0 ? 1 : 0);
    if (revoked > 0) expect(revokes[0]).toMatchObject({ amount: -revoked, grants: [{ grant: grantKey('sub-1'), amount: -revoked, source: 'subscription' }] });
    const fromSub = list.filter((t) => t.kind === 'usage').flatMap((t) => t.grants!).filter((p) => p.grant === grantKey('sub-1')).reduce((s, p) => s - p.amount, 0);
    expect(fromSub + revoked).toBe(150);
    const d = await grantAudit(credits, u);
    expect(spent + revoked + d.balance).toBe(250);
    expect(d.grants.find((g) => g.id === grantKey('sub-1'))).toBeUndefined();
    // Again: nothing left, nothing changes.
    expect(await credits.revokeGrant(u, grantKey('sub-1'))).toEqual({ revoked: 0, balance: d.balance });
    expect((await transactions(u)).length).toBe(list.length);
  }, 120_000);

  it('revokes an untouched grant whole under its default key, exactly once', async () => {
    const u = user('revoke-once');
    await credits.grantCredits(u, 40, { idempotencyKey: 'promo', source: 'promotion' });
    await credits.grantCredits(u, 5, { idempotencyKey: 'keep' });
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? credits : other).revokeGrant(u, grantKey('promo'), { reason: 'promotion withdrawn' })));
    expect(results.map((r) => r.revoked).sort((x, y) => y - x)).toEqual([40, 0, 0, 0, 0, 0]);
    const list = await transactions(u);
    expect(list.filter((t) => t.kind === 'revoke')).toEqual([expect.objectContaining({ amount: -40, reason: 'promotion withdrawn', balanceAfter: 5 })]);
    expect(await credits.store.getClaim(claimId(u, revokeKey(grantKey('promo'))))).toMatchObject({ state: 'applied', amount: -40 });
    expect(await grantAudit(credits, u)).toMatchObject({ balance: 5, bySource: { admin: 5 } });
  });

  it('closes the grant: a failed request that spent from it is given back to base, not into the revoked grant', async () => {
    const u = user('revoke-giveback');
    await credits.grantCredits(u, 30, { idempotencyKey: 'sub-1', source: 'subscription', priority: 10, expiresAt: new Date(Date.now() + HOUR) });
    await credits.grantCredits(u, 5, { idempotencyKey: 'topup' });
    const before = gates.length;
    const held = post(`${server.url}/ai/held`, u); // charged 10 from the subscription, then held
    while (gates.length === before) await new Promise((r) => setTimeout(r, 5));
    await credits.flush();
    expect(await credits.revokeGrant(u, grantKey('sub-1'))).toEqual({ revoked: 20, balance: 5 });
    gates[before]!();
    expect((await held).status).toBe(500);
    const list = await transactions(u);
    expect(list.find((t) => t.kind === 'refund')).toMatchObject({ amount: 10, grants: [{ grant: 'base', amount: 10 }] });
    const d = await grantAudit(credits, u);
    expect(d).toMatchObject({ balance: 15, bySource: { admin: 5, base: 10 } });
    expect(d.grants.find((g) => g.id === grantKey('sub-1'))).toBeUndefined();
  });

  it('leaves a rollover grant to its own revoke; unknown grants, base and bad input change nothing', async () => {
    const u = user('revoke-rollover');
    const at = new Date(Date.now() + HOUR);
    await credits.grantCredits(u, 30, { idempotencyKey: 'sub-1', source: 'subscription', expiresAt: at, rollover: { max: 10 } });
    await credits.expireGrants({ userId: u, now: new Date(at.getTime() + 1) });
    expect(await credits.revokeGrant(u, grantKey('sub-1'))).toEqual({ revoked: 0, balance: 10 }); // already expired: nothing left
    expect(await credits.revokeGrant(u, 'grant:nope')).toEqual({ revoked: 0, balance: 10 });
    expect(await credits.revokeGrant(user('nobody'), grantKey('sub-1'))).toEqual({ revoked: 0, balance: 0 });
    await expect(credits.revokeGrant(u, 'base')).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    await expect(credits.revokeGrant(u, '' as string)).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(credits.revokeGrant(u, { $ne: '' } as never)).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(credits.revokeGrant(u, grantKey('sub-1'), { reason: 42 } as never)).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(credits.revokeGrant(u, grantKey('sub-1'), { key: '' })).rejects.toMatchObject({ code: 'invalid_request' });
    expect((await transactions(u)).length).toBe(2);
    // The longest ids the kit makes are revocable: rollover:grant:<a 256-character key>.
    const long = 'k'.repeat(256);
    await credits.grantCredits(u, 4, { idempotencyKey: long, expiresAt: at, rollover: { max: 4 } });
    await credits.expireGrants({ userId: u, now: new Date(at.getTime() + 1) });
    expect(await credits.revokeGrant(u, `rollover:${grantKey(long)}`)).toEqual({ revoked: 4, balance: 10 });
    // The rollover grant is revoked by its own id, under a key the caller names.
    expect(await credits.revokeGrant(u, `rollover:${grantKey('sub-1')}`, { key: 'refund-in_1' })).toEqual({ revoked: 10, balance: 0 });
    expect(await other.revokeGrant(u, `rollover:${grantKey('sub-1')}`, { key: 'refund-in_1' })).toEqual({ revoked: 0, balance: 0 });
    expect(await credits.store.getClaim(claimId(u, revokeKey('refund-in_1')))).toMatchObject({ state: 'applied', amount: -10 });
    expect(await grantAudit(credits, u)).toMatchObject({ balance: 0, grants: [] });
  });
});

it('is the same on the Fetch kit: rollover terms and revokeGrant on the shared core', async () => {
  const fetchCredits = createFetchCredits({ connection, getUserId: (req: Request) => req.headers.get('x-test-user'), timeoutMs: 60_000, claimLeaseMs: 60_000 });
  const u = user('fetch');
  const at = new Date(Date.now() + HOUR);
  await fetchCredits.grantCredits(u, 30, { idempotencyKey: 'sub', source: 'subscription', expiresAt: at, rollover: { max: 12, expiresAt: new Date(at.getTime() + HOUR).toISOString() } });
  expect(await fetchCredits.expireGrants({ userId: u, now: new Date(at.getTime() + 1) })).toMatchObject({ grantsExpired: 1, creditsExpired: 18 });
  expect(await fetchCredits.revokeGrant(u, `rollover:${grantKey('sub')}`)).toEqual({ revoked: 12, balance: 0 });
  await fetchCredits.flush();
  expect((await transactions(u)).map((t) => [t.kind, t.amount])).toEqual([['revoke', -12], ['expire', -18], ['grant', 30]]);
  await grantAudit(credits, u);
});

/**
 * Review of rollover and revoke (adversarial): a revoke whose key another call holds, one key reused for
 * two grants, and a revoke racing two sweepers and spends on a due grant with rollover terms.
 */
describe('revokeGrant, adversarial', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** The claim a revoke on another instance holds while it reads, writes, or stalls (its process froze). */
  async function holdKey(userId: string, key: string, amount: number) {
    const held = { id: claimId(userId, key), userId, key, entryId: randomUUID(), state: 'pending' as const, createdAt: new Date(), amount };
    expect(await credits.store.insertClaim(held)).toBeNull();
    return held;
  }

  it('never answers revoked: 0 for a revoke that did not happen: a call finding the key held waits, and revokes when the holder lets go', async () => {
    const u = user('revoke-held');
    await credits.grantCredits(u, 40, { idempotencyKey: 'promo', source: 'promotion' });
    await credits.grantCredits(u, 5, { idempotencyKey: 'keep' });
    // The holder read the account and is writing; its compare-and-set misses, it lets go of the key and
    // then fails (its process stops, or it gives up with `conflict`).
    const held = await holdKey(u, revokeKey(grantKey('promo')), -40);
    const revoking = other.revokeGrant(u, grantKey('promo'), { reason: 'promotion withdrawn' });
    await sleep(300);
    await credits.store.releaseClaim(held.id, held.entryId);
    expect(await revoking).toEqual({ revoked: 40, balance: 5 });
    expect((await transactions(u)).filter((t) => t.kind === 'revoke')).toEqual([expect.objectContaining({ amount: -40, reason: 'promotion withdrawn' })]);
    await grantAudit(credits, u);
  });

  it('a holder that neither lets go nor writes within the wait: conflict (retry), not revoked: 0; the retry after the lease revokes', async () => {
    const u = user('revoke-stalled');
    await credits.grantCredits(u, 40, { idempotencyKey: 'promo', source: 'promotion' });
    const held = await holdKey(u, revokeKey(grantKey('promo')), -40);
    await expect(other.revokeGrant(u, grantKey('promo'))).rejects.toMatchObject({ code: 'conflict', status: 409 });
    expect(await credits.getBalance(u)).toBe(40);
    // The holder is gone for good: after its lease anyone decides its claim (fenced, not landed: released).
    const quick = createCredits({ connection, getUserId: headerUser, claimLeaseMs: 50 });
    await sleep(100);
    expect(await quick.revokeGrant(u, grantKey('promo'))).toEqual({ revoked: 40, balance: 0 });
    await quick.flush();
    expect(await credits.store.isFenced(u, held.entryId)).toBe(true);
    await grantAudit(credits, u);
  });

  it('refuses a key already used to revoke another grant (idempotency_key_reused) instead of answering revoked: 0', async () => {
    const u = user('revoke-key-reuse');
    await credits.grantCredits(u, 30, { idempotencyKey: 'sub-1', source: 'subscription' });
    await credits.grantCredits(u, 20, { idempotencyKey: 'upgrade-1', source: 'subscription' });
    expect(await credits.revokeGrant(u, grantKey('sub-1'), { key: 'refund-in_1' })).toEqual({ revoked: 30, balance: 20 });
    await expect(other.revokeGrant(u, grantKey('upgrade-1'), { key: 'refund-in_1' })).rejects.toMatchObject({ code: 'idempotency_key_reused', status: 422 });
    // The same grant under the same key is a retry: nothing more, 0.
    expect(await other.revokeGrant(u, grantKey('sub-1'), { key: 'refund-in_1' })).toEqual({ revoked: 0, balance: 20 });
    await credits.flush();
    expect(await other.revokeGrant(u, grantKey('sub-1'), { key: 'refund-in_1' })).toEqual({ revoked: 0, balance: 20 }); // moved to the ledger
    await expect(other.revokeGrant(u, grantKey('upgrade-1'), { key: 'refund-in_1' })).rejects.toMatchObject({ code: 'idempotency_key_reused' });
    expect(await credits.getBalance(u)).toBe(20);
    await grantAudit(credits, u);
  });

  it('a revoke racing two sweepers and spends on a due grant with rollover: the rest leaves once, by whichever lands first', async () => {
    const u = user('revoke-vs-sweep');
    const at = new Date(Date.now() + HOUR);
    await credits.grantCredits(u, 100, { idempotencyKey: 'topup' });
    await credits.grantCredits(u, 200, { idempotencyKey: 'sub-1', source: 'subscription', priority: 10, expiresAt: at, rollover: { max: 50 } });
    const after = new Date(at.getTime() + 1);
    const spending = Promise.all(Array.from({ length: 120 }, (_, i) => (i % 2 ? credits : other).deductCredits(u, 1)));
    await sleep(20);
    const [r1, , , r2] = await Promise.all([
      credits.revokeGrant(u, grantKey('sub-1')),
      credits.expireGrants({ userId: u, now: after }),
      other.expireGrants({ userId: u, now: after }),
      other.revokeGrant(u, grantKey('sub-1')),
    ]);
    const spent = (await spending).filter(Boolean).length;
    expect(spent).toBe(120);
    const list = await transactions(u);
    const sub = grantKey('sub-1');
    const takes = list.filter((t) => (t.kind === 'expire' || t.kind === 'revoke') && t.grants!.some((p) => p.grant === sub && p.amount < 0));
    expect(takes).toHaveLength(1);
    const taken = -takes[0]!.grants!.find((p) => p.grant === sub)!.amount;
    const fromSub = list.filter((t) => t.kind === 'usage').flatMap((t) => t.grants!).filter((p) => p.grant === sub).reduce((s, p) => s - p.amount, 0);
    expect(fromSub + taken).toBe(200);
    expect(r1.revoked + r2.revoked).toBe(takes[0]!.kind === 'revoke' ? taken : 0);
    const rolled = takes[0]!.kind === 'expire' ? Math.min(50, taken) : 0;
    const d = await grantAudit(credits, u);
    expect(d.grants.find((g) => g.id === `rollover:${sub}`)?.remaining ?? 0).toBe(rolled);
    expect(spent + taken - rolled + d.balance).toBe(300);
    // A later sweep finds nothing more of it to expire, and no second revoke takes anything.
    expect(await credits.expireGrants({ userId: u, now: after })).toMatchObject({ grantsExpired: 0 });
    expect(await other.revokeGrant(u, sub)).toEqual({ revoked: 0, balance: d.balance });
  }, 120_000);
});
