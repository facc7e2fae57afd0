/**
 * revokeGrant under faults, as grant-expiry.test.ts does the expiry: a lost reply on the revoke's write, a
 * revoker stalled on the link past the lease while another instance revokes, a sweeper stalled on the due
 * grant's expiry (with rollover terms) while a revoke lands, and a revoker that dies after its claim or
 * after its write. After each: at most one entry takes the grant's rest (a `revoke`, or the `expire` of a
 * sweep that got there first), for exactly what it held, and the ledger (per grant too) adds up.
 */
import type { Credits } from 'credit-kit/server';
import { expireKey, grantKey, revokeKey } from '../domain/keys';
import { claimId } from '../ledger';
import { audit } from '../test/helpers';
import { faultInstances, sleep } from './fault-instances';

jest.spyOn(console, 'error').mockImplementation(() => undefined);

const { diesAtEachPoint, proxiedPair } = faultInstances('ck_revoke_', { flushOnClose: true });

const EXPIRES = new Date(Date.now() + 3_600_000);
const AFTER = new Date(EXPIRES.getTime() + 1);
const SUB = grantKey('sub');

/** A subscription allowance of 50 (spent first), with rollover terms, and a top-up of 20; 15 spent: it holds 35. */
async function seeded(credits: Credits, user: string): Promise<void> {
  await credits.grantCredits(user, 50, { idempotencyKey: 'sub', source: 'subscription', priority: 10, expiresAt: EXPIRES, rollover: { max: 10 } });
  await credits.grantCredits(user, 20, { idempotencyKey: 'topup' });
  expect(await credits.deductCredits(user, 15)).toBe(true);
}

/** One entry took the allowance's rest (`kind`), for `rest`; nothing else took from it but spends; sums add up. */
async function takenOnce(credits: Credits, user: string, kind: 'revoke' | 'expire', rest: number): Promise<void> {
  await credits.flush();
  const a = await audit(credits, user);
  expect(a.sum).toBe(a.balance);
  const { transactions } = await credits.listTransactions(user, { limit: 1000 });
  const takes = transactions.filter((t) => (t.kind === 'revoke' || t.kind === 'expire') && t.grants!.some((p) => p.grant === SUB));
  expect(takes).toHaveLength(1);
  expect(takes[0]).toMatchObject({ kind, grants: expect.arrayContaining([{ grant: SUB, amount: -rest, source: 'subscription', expiresAt: EXPIRES.toISOString() }]) });
  const fromSub = transactions.filter((t) => t.kind === 'usage').flatMap((t) => t.grants!).filter((p) => p.grant === SUB).reduce((s, p) => s - p.amount, 0);
  expect(fromSub + rest).toBe(50);
  const d = await credits.getBalanceDetails(user);
  expect(d.grants.find((g) => g.id === SUB)).toBeUndefined();
  expect(d.grants.reduce((s, g) => s + g.remaining, 0) - d.debt).toBe(d.balance);
  expect(d.balance).toBe(a.balance);
}

it('a lost reply on the revoke write: settled by fencing and looking, answered as revoked, one entry', async () => {
  const { proxy, a, b } = await proxiedPair({ timeoutMs: 1000 });
  await seeded(b, 'lost');
  await b.flush();
  proxy.dropNextReplies(1, ['findAndModify']); // the revoke lands; its reply never comes back
  expect(await a.revokeGrant('lost', SUB)).toEqual({ revoked: 35, balance: 20 });
  expect(proxy.stats().repliesDropped).toBe(1);
  expect(await b.revokeGrant('lost', SUB)).toEqual({ revoked: 0, balance: 20 }); // the caller's retry
  expect(await b.store.getClaim(claimId('lost', revokeKey(SUB)))).toMatchObject({ state: 'applied', amount: -35 });
  await takenOnce(b, 'lost', 'revoke', 35);
});

it('a revoker stalled on the link past the lease: the other instance decides its claim (fenced) and revokes once; the late write is refused', async () => {
  const { proxy, a, b } = await proxiedPair({}, { claimLeaseMs: 300 });
  await seeded(b, 'stall');
  await b.flush();
  proxy.stall(['findAndModify']);
  const stalled = a.revokeGrant('stall', SUB);
  await sleep(700); // past B's lease: A looks gone
  expect(proxy.stats().stalled).toBeGreaterThan(0);
  expect(await b.deductCredits('stall', 5)).toBe(true);
  expect(await b.revokeGrant('stall', SUB)).toEqual({ revoked: 30, balance: 20 });
  proxy.release();
  expect(await stalled).toEqual({ revoked: 0, balance: 20 });
  await takenOnce(b, 'stall', 'revoke', 30);
});

it('a sweeper stalled on the due grant’s expiry while a revoke lands: its write misses, it reads again and finds nothing to expire (no rollover)', async () => {
  const { proxy, a, b } = await proxiedPair();
  await seeded(b, 'sweep');
  await b.flush();
  proxy.stall(['findAndModify']);
  const sweeping = a.expireGrants({ userId: 'sweep', now: AFTER });
  await sleep(300);
  expect(proxy.stats().stalled).toBeGreaterThan(0); // A computed the expiry (35: 25 out, 10 rolled over) and is writing it
  expect(await b.revokeGrant('sweep', SUB, { reason: 'invoice refunded' })).toEqual({ revoked: 35, balance: 20 });
  proxy.release();
  expect(await sweeping).toMatchObject({ grantsExpired: 0, errors: 0 });
  expect(await b.expireGrants({ userId: 'sweep', now: AFTER })).toMatchObject({ grantsExpired: 0 });
  expect(await b.store.getClaim(claimId('sweep', expireKey(SUB)))).toBeNull();
  await takenOnce(b, 'sweep', 'revoke', 35);
  expect((await b.getBalanceDetails('sweep')).grants.map((g) => g.id)).toEqual([grantKey('topup')]);
});

it('a revoker that dies after claiming the key, or after its write landed: reconcile settles it, and the retry revokes once', () =>
  diesAtEachPoint(
    seeded,
    (a, user) => a.revokeGrant(user, SUB),
    async (b, user, point) => {
      const retry = await b.revokeGrant(user, SUB);
      expect(retry).toEqual(point === 'after-claim' ? { revoked: 35, balance: 20 } : { revoked: 0, balance: 20 });
      await takenOnce(b, user, 'revoke', 35);
    },
  ));
