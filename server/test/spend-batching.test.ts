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

/** A kit whose store counts its spend writes; `loseReply` makes the next batched update's reply get lost. */
async function kit(options: { loseReply?: { armed: boolean } } = {}): Promise<Kit> {
  const writes: Record<string, number> = {};
  const batches: number[] = [];
  const inner: CreditStore = new MongoCreditStore({ connection, collectionPrefix: 'credit_' });
  const store = decorateStore(inner, async (name, call) => {
    if (name === 'applyEntry' || name === 'applyEntries') writes[name] = (writes[name] ?? 0) + 1;
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
    timeoutMs: 20_000,
    claimLeaseMs: 60_000,
    ...(options.loseReply ? { logger: () => undefined } : {}), // the injected 503s are expected
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
});
