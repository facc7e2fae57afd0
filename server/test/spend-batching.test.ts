/**
 * Group commit of one account's guarded spends (server/ledger/spends.ts), over real HTTP on the embedded
 * database: spends of one account that arrive while its update is on its way share the next update, and
 * each request is answered exactly as its own update would have answered it.
 */
import express from 'express';
import { createCredits, type Credits } from 'credit-kit/server';
import type { Connection } from 'mongoose';
import { decorateStore } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';
import type { CreditStore } from '../store/types';
import { connect, consistentAudit, headerUser, listen, post } from './helpers';

interface Kit {
  credits: Credits;
  url: string;
  /** Store calls that changed balances, by method. */
  writes: Record<string, number>;
  /** Entries per applyEntries call, in order. */
  batches: number[];
  close(): Promise<void>;
}

let connection: Connection;
beforeAll(async () => {
  connection = await connect();
});
afterAll(() => connection.close());

/**
 * A kit whose store counts its spend writes. `loseReply` makes the next batched update's reply get lost;
 * `stall` holds each single or batched spend update that long before it is sent (a slow database), with
 * `timeoutMs` as the kit's bound.
 */
async function kit(options: { loseReply?: { armed: boolean }; stall?: { applyEntry?: number; applyEntries?: number }; timeoutMs?: number } = {}): Promise<Kit> {
  const writes: Record<string, number> = {};
  const batches: number[] = [];
  const inner: CreditStore = new MongoCreditStore({ connection, collectionPrefix: 'credit_' });
  const store = decorateStore(inner, async (name, call) => {
    if (name === 'applyEntry' || name === 'applyEntries') writes[name] = (writes[name] ?? 0) + 1;
    const stall = name === 'applyEntry' || name === 'applyEntries' ? options.stall?.[name] : undefined;
    if (stall) await new Promise((r) => setTimeout(r, stall));
    const result = await call();
    if (name === 'applyEntries' && options.loseReply?.armed && result !== null) {
      options.loseReply.armed = false;
      throw new Error('connection reset after the update was sent (injected)');
    }
    return result;
  });
  const batched = store.applyEntries!;
  store.applyEntries = (userId, entries, minBalance) => {
    batches.push(entries.length);
    return batched(userId, entries, minBalance);
  };
  const credits = createCredits({
    store,
    getUserId: headerUser,
    timeoutMs: options.timeoutMs ?? 20_000,
    claimLeaseMs: 60_000,
    ...(options.loseReply || options.stall ? { logger: () => undefined } : {}), // the injected 503s are expected
  });
  await credits.init();
  const app = express();
  app.post('/ai', credits.requireCredits((req) => Number(req.get('x-cost') ?? 1)), (req, res) => {
    res.json({ charged: req.credits!.charged, balance: req.credits!.balance });
  });
  const server = await listen(app);
  return {
    credits,
    url: server.url,
    writes,
    batches,
    async close() {
      await credits.flush();
      await server.close();
    },
  };
}

const spend = (k: Kit, user: string, cost = 1) => post(`${k.url}/ai`, user, undefined, { 'x-cost': String(cost) });

describe('spends of one account that arrive together', () => {
  it('share updates, let exactly as many through as the balance covers, and each answer tells its own balance', async () => {
    const k = await kit();
    try {
      await k.credits.grantCredits('group-1', 137, { idempotencyKey: 'start' });
      const responses = await Promise.all(Array.from({ length: 200 }, () => spend(k, 'group-1')));
      const ok = responses.filter((r) => r.status === 200);
      expect(ok).toHaveLength(137);
      expect(responses.filter((r) => r.status === 402)).toHaveLength(63);
      // Every balance from 136 down to 0 was some request's balance right after its own spend, once.
      const balances = (await Promise.all(ok.map(async (r) => ((await r.json()) as { balance: number }).balance))).sort((a, b) => a - b);
      expect(balances).toEqual(Array.from({ length: 137 }, (_, i) => i));
      // Fewer updates than spends: some went together, none larger than the bound.
      expect(k.batches.length).toBeGreaterThan(0);
      expect(k.batches.every((n) => n >= 2 && n <= 64)).toBe(true);
      expect((k.writes.applyEntry ?? 0) + (k.writes.applyEntries ?? 0)).toBeLessThan(200);
      const a = await consistentAudit(k.credits, 'group-1');
      expect(a).toMatchObject({ balance: 0, kinds: { grant: 1, usage: 137 } });
    } finally {
      await k.close();
    }
  });

  it('sends a batch the balance cannot cover one by one, so the spends it covers still pass', async () => {
    const k = await kit();
    try {
      await k.credits.grantCredits('group-2', 10, { idempotencyKey: 'start' });
      const responses = await Promise.all(Array.from({ length: 12 }, () => spend(k, 'group-2', 3)));
      expect(responses.filter((r) => r.status === 200)).toHaveLength(3);
      expect(responses.filter((r) => r.status === 402)).toHaveLength(9);
      const a = await consistentAudit(k.credits, 'group-2');
      expect(a).toMatchObject({ balance: 1, kinds: { grant: 1, usage: 3 } });
    } finally {
      await k.close();
    }
  });

  it('fails every spend of a batch whose reply was lost with 503, and gives each charge back once', async () => {
    const loseReply = { armed: true };
    const k = await kit({ loseReply });
    try {
      await k.credits.grantCredits('group-3', 100, { idempotencyKey: 'start' });
      const responses = await Promise.all(Array.from({ length: 30 }, () => spend(k, 'group-3', 2)));
      expect(loseReply.armed).toBe(false); // a batch's reply was lost
      const failed = responses.filter((r) => r.status === 503).length;
      const passed = responses.filter((r) => r.status === 200).length;
      expect(failed).toBeGreaterThanOrEqual(2); // the whole batch, not one of its spends
      expect(failed + passed).toBe(30);
      const a = await consistentAudit(k.credits, 'group-3');
      // The lost batch landed: each of its charges is in the ledger, and given back once.
      expect(a).toMatchObject({ balance: 100 - 2 * passed, kinds: { grant: 1, usage: 30, refund: failed } });
    } finally {
      await k.close();
    }
  });

  it('refuses a spend whose time ran out while it waited, never sending it: nothing charged', async () => {
    // The first spend's update takes 1,900 of the 2,000 ms allowed; the ones asked for 20 ms later have less
    // than a tenth of their time left when it is done, so they are refused without being sent. (deductCredits
    // is the same guarded spend as requireCredits' charge, asked for at a moment the test chooses.)
    const k = await kit({ timeoutMs: 2000, stall: { applyEntry: 1900 } });
    try {
      await k.credits.grantCredits('group-4', 100, { idempotencyKey: 'start' });
      const first = k.credits.deductCredits('group-4', 1);
      await new Promise((r) => setTimeout(r, 20)); // the first update is on its way
      const waiting = await Promise.allSettled(Array.from({ length: 8 }, () => k.credits.deductCredits('group-4', 1)));
      expect(await first).toBe(true);
      expect(waiting.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : r.value))).toEqual(Array(8).fill('store_unavailable'));
      // Only the grant and the first spend were ever sent.
      expect({ writes: k.writes, batches: k.batches }).toEqual({ writes: { applyEntry: 2 }, batches: [] });
      const a = await consistentAudit(k.credits, 'group-4');
      expect(a).toMatchObject({ balance: 99, kinds: { grant: 1, usage: 1 } }); // nothing charged, nothing to give back
    } finally {
      await k.close();
    }
  });

  it("fails a batch whose update outlasts its spends' time as uncertain, and each charge that lands is given back once", async () => {
    // The batch's update is held past the earliest limit among its spends, then lands: each spend is
    // refused (503) before its own request's limit, and each of their charges is given back.
    const k = await kit({ timeoutMs: 400, stall: { applyEntry: 60, applyEntries: 500 } });
    try {
      await k.credits.grantCredits('group-5', 100, { idempotencyKey: 'start' });
      const first = spend(k, 'group-5');
      await new Promise((r) => setTimeout(r, 20));
      const waiting = await Promise.all(Array.from({ length: 6 }, () => spend(k, 'group-5')));
      expect((await first).status).toBe(200);
      expect(waiting.map((r) => r.status)).toEqual(Array(6).fill(503));
      expect(k.batches).toEqual([6]);
      await new Promise((r) => setTimeout(r, 600)); // the held batch lands
      const a = await consistentAudit(k.credits, 'group-5');
      // Either the batch landed and each of its six charges was given back, or a fence refused it.
      expect(a.balance).toBe(99);
      expect(a.kinds.usage! - 1).toBe(a.kinds.refund ?? 0);
    } finally {
      await k.close();
    }
  });
});
