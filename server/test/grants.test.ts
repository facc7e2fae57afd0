/**
 * Grants through the public surface, on the real embedded server: the order credits are spent in and the
 * history that shows it, give-backs returning to what they took from, purchases as grants, accounts from
 * before grants, bad input, and expiry exactly once while the account is being spent from.
 *
 * Every scenario ends with `grantAudit`: the ledger sums to the balance (consistentAudit), and per grant,
 * what the ledger's parts added and took equals what the breakdown says is left.
 */
import { randomUUID } from 'node:crypto';
import express from 'express';
import { createCredits, type Credits } from 'credit-kit/server';
import type { Connection } from 'mongoose';
import { aiRoutes, consistentAudit, connect, get, headerUser, listen, post, recordedSession, signedDelivery, stripeMockClient, WEBHOOK_SECRET } from './helpers';
import { claimId } from '../ledger';
import { expireKey, grantKey } from '../domain/keys';
import { sweepsRacingSpends } from './sweep-race';

const stripe = stripeMockClient();
let connection: Connection;
let credits: Credits;
let server: { url: string; close(): Promise<void> };

beforeAll(async () => {
  connection = await connect();
  credits = createCredits({
    connection,
    getUserId: headerUser,
    stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    timeoutMs: 60_000,
    claimLeaseMs: 60_000,
    overage: 'debt',
  });
  await credits.init();
  const app = express();
  app.use('/api', credits.router());
  aiRoutes(app, credits, { fail: 10, meter: 10 });
  server = await listen(app);
});

afterAll(async () => {
  await credits.flush();
  await server.close();
  await connection.close();
});

const user = (tag: string) => `${tag}-${randomUUID()}`;
const inAnHour = () => new Date(Date.now() + 3_600_000);

/**
 * The ledger sums to the balance, and per grant the parts of every entry sum to what is left in it; the
 * open grants less the debt are the balance. Returns the breakdown.
 */
async function grantAudit(c: Credits, userId: string) {
  await consistentAudit(c, userId);
  const perGrant = new Map<string, number>();
  let debt = 0;
  for (let cursor: string | null = null; ; ) {
    const page = await c.listTransactions(userId, { limit: 1000, cursor });
    for (const t of page.transactions) {
      const parts = (t.grants ?? []).reduce((s, p) => s + p.amount, 0);
      expect(parts + -(t.debt ?? 0)).toBe(t.amount); // every credit of every entry is in some grant, or debt
      for (const p of t.grants ?? []) perGrant.set(p.grant, (perGrant.get(p.grant) ?? 0) + p.amount);
      debt += t.debt ?? 0;
    }
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  const details = await c.getBalanceDetails(userId);
  for (const [id, sum] of perGrant) {
    expect([id, details.grants.find((g) => g.id === id)?.remaining ?? 0]).toEqual([id, sum]);
  }
  expect(details.debt).toBe(debt);
  expect(details.grants.reduce((s, g) => s + g.remaining, 0) - details.debt).toBe(details.balance);
  return details;
}

async function usageParts(c: Credits, userId: string) {
  await c.flush();
  const { transactions } = await c.listTransactions(userId, { limit: 100 });
  return transactions
    .filter((t) => t.kind === 'usage')
    .reverse()
    .map((t) => (t.grants ?? []).map((p) => [p.grant, p.amount]));
}

/** Every entry but the grants, oldest first, as [kind, "a-4 b2"]: grant ids without `grant:`, and amounts. */
async function spendParts(userId: string) {
  await credits.flush();
  return (await credits.listTransactions(userId, { limit: 100 })).transactions
    .filter((t) => t.kind !== 'grant')
    .reverse()
    .map((t) => [t.kind, t.grants!.map((p) => `${p.grant.slice(6)}${p.amount}`).join(' ')]);
}

describe('spending order and history', () => {
  it('spends by priority, then soonest expiry, then oldest, and each entry says which grants it took from', async () => {
    const u = user('order');
    const soon = new Date(Date.now() + 3_600_000);
    const later = new Date(Date.now() + 7_200_000);
    await credits.grantCredits(u, 10, { idempotencyKey: 'old', priority: 50 });
    await credits.grantCredits(u, 10, { idempotencyKey: 'new', priority: 50 });
    await credits.grantCredits(u, 10, { idempotencyKey: 'later', priority: 50, expiresAt: later, source: 'promotion' });
    await credits.grantCredits(u, 10, { idempotencyKey: 'soon', priority: 50, expiresAt: soon, source: 'subscription' });
    await credits.grantCredits(u, 10, { idempotencyKey: 'first', priority: 5 });
    await credits.grantCredits(u, 10, { idempotencyKey: 'last', priority: 100 });
    for (const n of [15, 10, 10, 10, 10]) expect(await credits.deductCredits(u, n)).toBe(true);
    expect(await usageParts(credits, u)).toEqual([
      [['grant:first', -10], ['grant:soon', -5]],
      [['grant:soon', -5], ['grant:later', -5]],
      [['grant:later', -5], ['grant:old', -5]],
      [['grant:old', -5], ['grant:new', -5]],
      [['grant:new', -5], ['grant:last', -5]],
    ]);
    const d = await grantAudit(credits, u);
    expect(d).toMatchObject({ balance: 5, bySource: { admin: 5 }, nextExpiry: null, grants: [{ id: 'grant:last', remaining: 5, priority: 100 }] });
  });

  it('breaks the balance down by source and says what expires next, over HTTP as in the API', async () => {
    const u = user('details');
    const dec1 = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 11, 1));
    await credits.grantCredits(u, 80, { idempotencyKey: 'topup' });
    await credits.grantCredits(u, 25, { idempotencyKey: 'promo-a', source: 'promotion', expiresAt: dec1 });
    await credits.grantCredits(u, 15, { idempotencyKey: 'promo-b', source: 'promotion', expiresAt: dec1.toISOString() });
    await credits.grantCredits(u, 10, { idempotencyKey: 'plan', source: 'subscription', expiresAt: new Date(dec1.getTime() + 86_400_000) });
    expect(await credits.deductCredits(u, 10)).toBe(true); // the soonest expiry first: promo-a
    const expected = {
      balance: 120,
      bySource: { admin: 80, promotion: 30, subscription: 10 },
      nextExpiry: { amount: 30, expiresAt: dec1.toISOString() },
      debt: 0,
    };
    expect(await credits.getBalanceDetails(u)).toMatchObject(expected);
    const res = await get(`${server.url}/api/credits/grants`, u);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toEqual(await credits.getBalanceDetails(u));
    expect(body.grants.map((g: { id: string }) => g.id)).toEqual(['grant:promo-a', 'grant:promo-b', 'grant:plan', 'grant:topup']);
    expect(await credits.listGrants(u)).toEqual(body.grants);
    expect(await credits.getBalance(u)).toBe(120); // still a number
    expect((await get(`${server.url}/api/credits/grants`, null)).status).toBe(401);
    expect((await get(`${server.url}/api/credits/grants?x=1`, u)).status).toBe(400);
    await grantAudit(credits, u);
  });
});

it('runs the README example (Grants)', async () => {
  const u = user('readme');
  await credits.grantCredits(u, 100, { idempotencyKey: 'topup-1' });
  await credits.grantCredits(u, 40, { idempotencyKey: `black-friday-${u}`, source: 'promotion', expiresAt: new Date('2030-12-01T00:00:00Z') });
  await credits.deductCredits(u, 20);
  expect(await credits.getBalance(u)).toBe(120);
  const promo = { id: `grant:black-friday-${u}`, source: 'promotion', remaining: 20, priority: 50, expiresAt: '2030-12-01T00:00:00.000Z' };
  expect(await credits.getBalanceDetails(u)).toEqual({
    balance: 120,
    creditName: 'credits',
    bySource: { promotion: 20, admin: 100 },
    debt: 0,
    nextExpiry: { amount: 20, expiresAt: '2030-12-01T00:00:00.000Z' },
    grants: [promo, { id: 'grant:topup-1', source: 'admin', remaining: 100, priority: 50, expiresAt: null }],
  });
  expect((await credits.listTransactions(u)).transactions[0]!.grants).toEqual([
    { grant: promo.id, source: 'promotion', amount: -20, expiresAt: '2030-12-01T00:00:00.000Z' },
  ]);
});

describe('bad input changes nothing', () => {
  it.each([
    ['an expiry in the past', { expiresAt: new Date(Date.now() - 1000) }, /expiresAt must be in the future/],
    ['an expiry now-ish as a string', { expiresAt: '2001-01-01T00:00:00Z' }, /in the future/],
    ['an invalid date', { expiresAt: new Date('nope') }, /expiresAt must be a Date or an ISO 8601/],
    ['a date-like object', { expiresAt: { $gt: 0 } }, /expiresAt must be a Date/],
    ['a number for the expiry', { expiresAt: Date.now() + 10_000 }, /expiresAt must be a Date/],
    ['an expiry past year 9999', { expiresAt: new Date(Date.UTC(10000, 0, 2)) }, /before the year 10000/],
    ['a priority below 0', { priority: -1 }, /priority must be a whole number from 0 to 100/],
    ['a priority above 100', { priority: 101 }, /priority/],
    ['a fractional priority', { priority: 1.5 }, /priority/],
    ['a priority as a string', { priority: '5' }, /priority/],
    ['the reserved source', { source: 'base' }, /source must be/],
    ['a source with capitals', { source: 'Promo' }, /source must be/],
    ['a source object', { source: { $ne: 1 } }, /source must be/],
  ])('refuses %s', async (_what, terms, message) => {
    const u = user('bad');
    await credits.grantCredits(u, 5, { idempotencyKey: 'seed' });
    await expect(credits.grantCredits(u, 10, { idempotencyKey: 'bad', ...(terms as object) })).rejects.toMatchObject({ code: 'invalid_request', message: expect.stringMatching(message) });
    expect(await credits.getBalance(u)).toBe(5);
    expect(await credits.store.getClaim(claimId(u, grantKey('bad')))).toBeNull();
    await grantAudit(credits, u);
  });

  it.each([[-5], [0], [2.5], [Number.NaN], ['10'], [Number.MAX_SAFE_INTEGER + 1]])('refuses the amount %p', async (amount) => {
    const u = user('amount');
    await expect(credits.grantCredits(u, amount as number, { idempotencyKey: 'x', expiresAt: inAnHour() })).rejects.toMatchObject({ code: 'invalid_amount' });
    expect(await credits.store.getAccount(u)).toBeNull();
  });

  it('keeps the first terms of a key retried with others', async () => {
    const u = user('retry');
    await credits.grantCredits(u, 10, { idempotencyKey: 'k', source: 'promotion', expiresAt: inAnHour() });
    expect(await credits.grantCredits(u, 99, { idempotencyKey: 'k', priority: 1 })).toEqual({ granted: false, balance: 10 });
    expect(await credits.listGrants(u)).toMatchObject([{ id: 'grant:k', source: 'promotion', remaining: 10, priority: 50 }]);
  });
});

describe('give-backs return to what they took from', () => {
  it('a failed request gives back to the grants it was charged from, reopening one it used up', async () => {
    const u = user('fail');
    await credits.grantCredits(u, 6, { idempotencyKey: 'promo', source: 'promotion', expiresAt: inAnHour(), priority: 10 });
    await credits.grantCredits(u, 20, { idempotencyKey: 'topup' });
    expect((await post(`${server.url}/ai/fail`, u)).status).toBe(500);
    await credits.flush();
    const [refund, charge] = (await credits.listTransactions(u, { limit: 2 })).transactions;
    expect(charge!.grants!.map((p) => [p.grant, p.amount])).toEqual([['grant:promo', -6], ['grant:topup', -4]]);
    expect(refund!.grants!.map((p) => [p.grant, p.amount])).toEqual([['grant:topup', 4], ['grant:promo', 6]]);
    const d = await grantAudit(credits, u);
    expect(d.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 6], ['grant:topup', 20]]);
  });

  it('a settlement below the reservation gives back the last taken first; an overage takes in order', async () => {
    const u = user('meter');
    await credits.grantCredits(u, 4, { idempotencyKey: 'a', priority: 1 });
    await credits.grantCredits(u, 4, { idempotencyKey: 'b', priority: 2 });
    await credits.grantCredits(u, 100, { idempotencyKey: 'c', priority: 3 });
    const used = async (n: number) => (await post(`${server.url}/ai/meter`, u, undefined, { 'x-used': String(n) })).json();
    expect(await used(5)).toMatchObject({ charged: 5 }); // reserved 10 from a:4 b:4 c:2, 5 back: c:2 b:3
    expect(await used(13)).toMatchObject({ charged: 13 }); // reserved 10 (b:3 c:7), 3 more from c
    expect(await spendParts(u)).toEqual([
      ['usage', 'a-4 b-4 c-2'],
      ['settle', 'c2 b3'],
      ['usage', 'b-3 c-7'],
      ['settle', 'c-3'],
    ]);
    const d = await grantAudit(credits, u);
    expect(d.balance).toBe(108 - 18);
  });

  it('a give-back after a settlement returns only what is still charged, to the right grants', async () => {
    const u = user('settle-then-fail');
    await credits.grantCredits(u, 3, { idempotencyKey: 'a', priority: 1 });
    await credits.grantCredits(u, 100, { idempotencyKey: 'b', priority: 2 });
    // A handler that settles below the reservation and then fails: the give-back returns what settle kept.
    const app = express();
    // requireCredits(cost, handler): a rejected handler reaches next(err) on Express 4 too.
    app.post('/x', credits.requireCredits(10, async (req) => {
      await req.credits!.settle(4);
      throw new Error('failed after settling');
    }));
    const s = await listen(app);
    try {
      expect((await post(`${s.url}/x`, u)).status).toBe(500);
    } finally {
      await s.close();
    }
    expect(await spendParts(u)).toEqual([
      ['usage', 'a-3 b-7'],
      ['settle', 'b6'],
      ['refund', 'b1 a3'],
    ]);
    expect((await grantAudit(credits, u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:a', 3], ['grant:b', 100]]);
  });

  it('credits given back after their grant expired go to base, never expiring', async () => {
    const u = user('late-refund');
    await credits.grantCredits(u, 10, { idempotencyKey: 'promo', source: 'promotion', expiresAt: new Date(Date.now() + 1500) });
    await credits.grantCredits(u, 5, { idempotencyKey: 'topup' });
    // A request charged before the expiry whose give-back comes after it.
    const app = express();
    app.post('/slow', credits.requireCredits(4, async () => {
      await new Promise((r) => setTimeout(r, 2000));
      throw new Error('failed late');
    }));
    const s = await listen(app);
    try {
      const slow = post(`${s.url}/slow`, u);
      await new Promise((r) => setTimeout(r, 1600));
      expect(await credits.expireGrants({ userId: u })).toMatchObject({ grantsExpired: 1, creditsExpired: 6 });
      expect((await slow).status).toBe(500);
    } finally {
      await s.close();
    }
    const d = await grantAudit(credits, u);
    expect(d.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:topup', 5], ['base', 4]]);
    expect(d.balance).toBe(9);
  });
});

describe('purchases and accounts from before grants', () => {
  it('a purchase is a never-expiring grant; its clawback takes from it first, a won dispute adds back to it', async () => {
    const u = user('buyer');
    const deliver = (event: { type: string; object: unknown }) => {
      const { body, headers } = signedDelivery(stripe, event);
      return fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers, body });
    };
    const session = await recordedSession(server.url, u, 50);
    expect((await deliver({ type: 'checkout.session.completed', object: session })).status).toBe(200);
    await credits.grantCredits(u, 20, { idempotencyKey: 'promo', source: 'promotion', priority: 60 });
    expect(await credits.deductCredits(u, 30)).toBe(true); // the purchase first (priority 50)
    const dispute = { id: `dp_${randomUUID().slice(0, 8)}`, object: 'dispute', payment_intent: session.payment_intent, status: 'needs_response', amount: 500 };
    await deliver({ type: 'charge.dispute.created', object: dispute });
    let d = await grantAudit(credits, u);
    // The clawback took the purchase's 20 left, then 30 more: the promotion's 20 and 10 of debt.
    expect(d).toMatchObject({ balance: -10, debt: 10, grants: [] });
    await deliver({ type: 'charge.dispute.closed', object: { ...dispute, status: 'won' } });
    d = await grantAudit(credits, u);
    expect(d).toMatchObject({ balance: 40, debt: 0, bySource: { purchase: 40 }, grants: [{ id: `checkout:${session.id as string}`, source: 'purchase', remaining: 40 }] });
  });

  it('treats the balance of an account from before grants as one never-expiring base grant, spent last', async () => {
    const u = user('legacy');
    // As the kit before grants left it: a balance, entries in the ledger without parts, no grant book.
    const accounts = connection.collection('credit_accounts');
    const ledger = connection.collection('credit_ledger');
    await accounts.insertOne({ _id: u as never, balance: 70, count: 2, journal: [] });
    await ledger.insertMany([
      { _id: randomUUID() as never, userId: u, kind: 'grant', amount: 100, at: new Date(), seq: 1, balanceAfter: 100, key: 'grant:old' },
      { _id: randomUUID() as never, userId: u, kind: 'usage', amount: -30, at: new Date(), seq: 2, balanceAfter: 70 },
    ]);
    expect(await credits.getBalanceDetails(u)).toMatchObject({ balance: 70, bySource: { base: 70 }, grants: [{ id: 'base', remaining: 70, expiresAt: null }] });
    await credits.grantCredits(u, 20, { idempotencyKey: 'promo', source: 'promotion', expiresAt: inAnHour() });
    expect(await credits.deductCredits(u, 25)).toBe(true);
    expect(await usageParts(credits, u)).toEqual([[], [['grant:promo', -20], ['base', -5]]]);
    const d = await credits.getBalanceDetails(u);
    expect(d).toMatchObject({ balance: 65, bySource: { base: 65 } });
    await consistentAudit(credits, u);
  });
});

describe('expiry', () => {
  it('takes a due grant’s rest out once, as its own entry, and the sweep is idempotent', async () => {
    const u = user('expire');
    const at = inAnHour();
    await credits.grantCredits(u, 30, { idempotencyKey: 'promo', source: 'promotion', expiresAt: at });
    await credits.grantCredits(u, 10, { idempotencyKey: 'keep' });
    expect(await credits.deductCredits(u, 12)).toBe(true);
    expect(await credits.expireGrants({ userId: u, now: new Date(at.getTime() - 1) })).toMatchObject({ grantsExpired: 0 });
    const after = new Date(at.getTime() + 1);
    expect(await credits.expireGrants({ now: after })).toMatchObject({ errors: 0 });
    expect(await credits.expireGrants({ userId: u, now: after })).toMatchObject({ grantsExpired: 0 });
    await credits.flush();
    const { transactions } = await credits.listTransactions(u);
    const expiries = transactions.filter((t) => t.kind === 'expire');
    expect(expiries).toHaveLength(1);
    expect(expiries[0]).toMatchObject({ amount: -18, grants: [{ grant: 'grant:promo', amount: -18, source: 'promotion' }] });
    expect(await grantAudit(credits, u)).toMatchObject({ balance: 10, grants: [{ id: 'grant:keep', remaining: 10 }] });
    expect(await credits.store.getClaim(claimId(u, expireKey('grant:promo')))).toMatchObject({ state: 'applied', amount: -18 });
  });

  it('expires exactly once, the exact rest, while 300 spends race two instances sweeping', async () => {
    const u = user('race');
    const at = inAnHour();
    const other = createCredits({ connection, getUserId: headerUser, timeoutMs: 60_000, claimLeaseMs: 60_000 });
    await credits.grantCredits(u, 100, { idempotencyKey: 'topup', priority: 10 });
    await credits.grantCredits(u, 300, { idempotencyKey: 'promo', source: 'promotion', priority: 90, expiresAt: at });
    const after = new Date(at.getTime() + 1);
    const { expiredBy, spends } = await sweepsRacingSpends(credits, other, u, after);
    expect(expiredBy[0]! + expiredBy[1]!).toBe(1);
    await other.flush();
    const spent = spends.filter(Boolean).length;
    const d = await grantAudit(credits, u);
    const { transactions } = await credits.listTransactions(u, { limit: 1000 });
    const expiry = transactions.filter((t) => t.kind === 'expire');
    expect(expiry).toHaveLength(1);
    // Everything granted is spent, expired or left: nothing counted twice, nothing lost.
    expect(spent - expiry[0]!.amount + d.balance).toBe(400);
    expect(d.balance).toBe(0);
    // The expiry took exactly what the promotion held at its place in the ledger.
    const takenFromPromo = transactions.filter((t) => t.kind === 'usage').flatMap((t) => t.grants!).filter((p) => p.grant === 'grant:promo').reduce((s, p) => s - p.amount, 0);
    expect(takenFromPromo - expiry[0]!.amount).toBe(300);
  }, 120_000);

  it('lets exactly 120 of 500 concurrent spends through on an account of 60 grants, each credit drawn once', async () => {
    const u = user('many');
    const at = inAnHour();
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        credits.grantCredits(u, 2, { idempotencyKey: `g${i}`, priority: i % 7, ...(i % 3 === 0 ? { expiresAt: new Date(at.getTime() + i * 1000) } : {}) }),
      ),
    );
    const results = await Promise.all(Array.from({ length: 500 }, () => credits.deductCredits(u, 1)));
    expect(results.filter(Boolean)).toHaveLength(120);
    const d = await grantAudit(credits, u);
    expect(d).toMatchObject({ balance: 0, grants: [], debt: 0 });
    // Each grant gave exactly its 2 credits, in the stated order: priority, soonest expiry, oldest.
    const { transactions } = await credits.listTransactions(u, { limit: 1000 });
    const order = transactions.filter((t) => t.kind === 'usage').reverse().flatMap((t) => t.grants!.map((p) => p.grant));
    expect(order).toHaveLength(120);
    expect(new Set(order).size).toBe(60);
    const priorities = order.map((g) => Number(g.slice('grant:g'.length)) % 7);
    expect(priorities).toEqual([...priorities].sort((a, b) => a - b));
  }, 120_000);

  it('starts expiring from reconcile(): a grant due by the clock leaves the balance with no call of its own', async () => {
    const u = user('reconcile');
    await credits.grantCredits(u, 7, { idempotencyKey: 'brief', expiresAt: new Date(Date.now() + 300) });
    await credits.flush();
    await new Promise((r) => setTimeout(r, 400));
    const report = await credits.reconcile();
    expect(report.grantsExpired).toBeGreaterThanOrEqual(1);
    expect(await grantAudit(credits, u)).toMatchObject({ balance: 0, grants: [] });
  });
});

it('works out grants across entries an older instance moved without keeping the grant book (a rolling upgrade)', async () => {
  const u = user('upgrade');
  await credits.grantCredits(u, 30, { idempotencyKey: 'promo', source: 'promotion', expiresAt: inAnHour() });
  await credits.grantCredits(u, 10, { idempotencyKey: 'keep' });
  await credits.flush(); // the book is stored at seq 2
  expect(await credits.deductCredits(u, 5)).toBe(true);
  // An instance from before grants moves the journal: into the ledger without parts, out of the journal,
  // and the book stays at seq 2.
  const account = (await credits.store.getAccount(u))!;
  const moved = account.journal.map((e, i) => ({ ...e, _id: e.id, userId: u, seq: account.count - account.journal.length + 1 + i, balanceAfter: account.balance }));
  await connection.collection('credit_ledger').insertMany(moved.map(({ id: _id, ...rest }) => rest as never));
  await connection.collection('credit_accounts').updateOne({ _id: u as never }, { $set: { journal: [] } });
  expect(await credits.deductCredits(u, 7)).toBe(true);
  const d = await credits.getBalanceDetails(u);
  expect(d.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 18], ['grant:keep', 10]]);
  await credits.flush();
  expect((await credits.store.getBooks([u]))[0]?.book).toMatchObject({ seq: 4, grants: [{ id: 'grant:promo', remaining: 18 }, { id: 'grant:keep', remaining: 10 }] });
  await consistentAudit(credits, u);
});
