/**
 * Grants at their edges, over the embedded database: a give-back while the account is in debt, sources
 * named like Object's own keys, impossible calendar days, and a grant retried after its expiry passed.
 */
import { randomUUID } from 'node:crypto';
import express from 'express';
import type { Connection } from 'mongoose';
import { createCredits, type Credits } from 'credit-kit/server';
import { connect, headerUser, listen, post } from './helpers';
import { decorateStore } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';

let connection: Connection;
let credits: Credits;
let server: { url: string; close(): Promise<void> };
const gates = new Map<string, () => void>();
const gate = (name: string) => new Promise<void>((r) => gates.set(name, r));
async function open(name: string): Promise<void> {
  while (!gates.has(name)) await new Promise((r) => setTimeout(r, 5));
  gates.get(name)!();
  gates.delete(name);
}
async function balanceReaches(user: string, n: number): Promise<void> {
  while ((await credits.getBalance(user)) !== n) await new Promise((r) => setTimeout(r, 5));
}

beforeAll(async () => {
  connection = await connect();
  credits = createCredits({ connection, getUserId: headerUser, timeoutMs: 60_000, claimLeaseMs: 60_000, overage: 'debt' });
  await credits.init();
  const app = express();
  app.post('/meter', credits.requireCredits(5, async (req, res) => {
    await gate(`meter:${req.get('x-test-user')}`);
    res.json(await req.credits!.settle(10));
  }));
  app.post('/fail', credits.requireCredits(10, async (req) => {
    await gate(`fail:${req.get('x-test-user')}`);
    throw new Error('model failed');
  }));
  server = await listen(app);
});
afterAll(async () => {
  await credits.flush();
  await server.close();
  await connection.close();
});

/** Promo 15 expiring; a metered request runs 5 over into debt; optionally a request charged meanwhile fails. */
async function balanceAfterExpiry(withFailedCall: boolean): Promise<number> {
  const user = `debt-${randomUUID()}`;
  const expiresAt = new Date(Date.now() + 3_600_000);
  await credits.grantCredits(user, 15, { idempotencyKey: 'promo', source: 'promotion', expiresAt });
  const meter = post(`${server.url}/meter`, user);
  await balanceReaches(user, 10);
  let fail: Promise<Response> | undefined;
  if (withFailedCall) {
    fail = post(`${server.url}/fail`, user);
    await balanceReaches(user, 0);
  }
  await open(`meter:${user}`);
  expect((await meter).status).toBe(200);
  if (fail) {
    await open(`fail:${user}`);
    expect((await fail).status).toBe(500);
  }
  await credits.flush();
  expect(await credits.getBalance(user)).toBe(5);
  await credits.expireGrants({ userId: user, now: new Date(expiresAt.getTime() + 1) });
  await credits.flush();
  return credits.getBalance(user);
}

describe('grants at their edges', () => {
  it('a failed request given back while the account is in debt leaves the balance after the expiry as without it', async () => {
    const without = await balanceAfterExpiry(false);
    expect(without).toBe(0);
    expect(await balanceAfterExpiry(true)).toBe(without);
  });

  it('sums a source named like one of Object\'s own keys as a number', async () => {
    const user = `src-${randomUUID()}`;
    await credits.grantCredits(user, 5, { idempotencyKey: 'a', source: 'constructor' });
    await credits.grantCredits(user, 7, { idempotencyKey: 'b', source: 'tostring' });
    await credits.flush();
    const details = await credits.getBalanceDetails(user);
    expect(details.bySource).toEqual({ constructor: 5, tostring: 7 });
    expect(JSON.parse(JSON.stringify(details.bySource))).toEqual({ constructor: 5, tostring: 7 });
  });

  it.each(['2030-02-30', '2030-02-29T00:00:00Z', '2031-13-01', '2030-04-31T10:00:00Z', '2030-01-01T24:00:00Z', '2030-01-01T23:60:00Z', '2030-01-01T23:59:60Z'])(
    'refuses the impossible time %s instead of rolling it over, changing nothing',
    async (expiresAt) => {
      const user = `date-${randomUUID()}`;
      await expect(credits.grantCredits(user, 5, { idempotencyKey: 'c', expiresAt })).rejects.toMatchObject({ code: 'invalid_request' });
      expect(await credits.getBalance(user)).toBe(0);
    },
  );

  it('takes real calendar times, leap days and offsets included', async () => {
    const user = `date-ok-${randomUUID()}`;
    await credits.grantCredits(user, 5, { idempotencyKey: 'leap', expiresAt: '2032-02-29T23:59:59+05:30' });
    await credits.flush();
    expect((await credits.getBalanceDetails(user)).nextExpiry).toEqual({ amount: 5, expiresAt: '2032-02-29T18:29:59.000Z' });
  });

  it('answers a retry of a grant whose expiry has passed since as applied before, not as bad input', async () => {
    const user = `retry-${randomUUID()}`;
    const expiresAt = new Date(Date.now() + 300);
    expect(await credits.grantCredits(user, 5, { idempotencyKey: 'period-1', source: 'subscription', expiresAt })).toMatchObject({ granted: true });
    await new Promise((r) => setTimeout(r, 400));
    await expect(credits.grantCredits(user, 5, { idempotencyKey: 'period-1', source: 'subscription', expiresAt })).resolves.toMatchObject({ granted: false });
    // A new grant with that expiry is still refused.
    await expect(credits.grantCredits(user, 5, { idempotencyKey: 'period-2', source: 'subscription', expiresAt })).rejects.toMatchObject({
      code: 'invalid_request',
      message: expect.stringMatching(/expiresAt must be in the future/),
    });
  });

  it("moves the other accounts when one account's fold cannot read what it needs", async () => {
    let refuse = false;
    const store = decorateStore(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), async (name, call) => {
      if (name === 'getLedgerEntries' && refuse) throw new Error('connection reset (injected)');
      return call();
    });
    const errors: unknown[] = [];
    const c = createCredits({ connection, getUserId: headerUser, store, hooks: { onBackgroundError: (e) => void errors.push(e) } });
    const [a, b] = [`fold-a-${randomUUID()}`, `fold-b-${randomUUID()}`];
    await c.grantCredits(a, 20, { idempotencyKey: 'a' });
    await c.grantCredits(b, 20, { idempotencyKey: 'b' });
    // A refund of a's charge after the charge left the journal: folding it reads the charge from the ledger.
    expect(await c.deductCredits(a, 5, { idempotencyKey: 'spend-a' })).toBe(true);
    await c.flush();
    const account = await c.store.getAccount(a);
    expect(account?.journal).toEqual([]);
    const charge = (await c.listTransactions(a, { limit: 1 })).transactions[0]!;
    refuse = true;
    await c.store.applyEntry(a, { id: randomUUID(), kind: 'refund', amount: 5, at: new Date(), key: `test:${randomUUID()}`, ref: { chargeId: charge.id } });
    expect(await c.deductCredits(b, 3)).toBe(true);
    // The store's own mover is not told of the raw applyEntry above; the spend of b schedules b, and a
    // deduction of a schedules a, whose fold fails.
    expect(await c.deductCredits(a, 1)).toBe(true);
    await c.flush();
    expect(errors.length).toBeGreaterThan(0);
    expect((await c.store.getAccount(b))?.journal).toEqual([]);
    expect((await c.store.getAccount(a))?.journal.length).toBeGreaterThan(0);
    refuse = false;
    await c.reconcile({ olderThanMs: 0 });
    await c.flush();
    expect((await c.store.getAccount(a))?.journal).toEqual([]);
    expect(await c.getBalance(a)).toBe(19);
  });
});
