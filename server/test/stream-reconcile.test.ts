/**
 * Metered streamed answers whose reservation nobody settled in time, over real HTTP against the embedded
 * database: reconcile() gives each back once past `settleWithinMs`, with two instances reconciling at once,
 * and a settle() from the stalled route afterwards changes nothing. A database outage at the end of a
 * stream (the settle cannot be written) is retried from the background queue, or decided by reconcile() if
 * the process never gets to write it: credits are never lost or doubled. The outage is a store decorator
 * here in the tests; the product has no hook for it.
 */
import express, { type Request, type Response as ExpressResponse } from 'express';
import mongoose, { type Connection } from 'mongoose';
import { createCredits, type Credits } from 'credit-kit/server';
import { decorateStore } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';
import { connect, consistentAudit, headerUser, listen, mongoUri } from './helpers';

const COST = 10;
const SETTLE_WITHIN_MS = 400;

/** Routes held at a gate the test opens, by request id: a route stalled mid-stream, or waiting for an outage. */
const gates = new Map<string, { open: () => void; opened: Promise<void> }>();
const gate = (id: string) => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  gates.set(id, { open, opened });
  return opened;
};
/** What each route's settle() answered after its gate, by request id. */
const afterGate = new Map<string, { settled?: unknown; error?: string }>();

let down = false;
let connection: Connection;
let other: Connection;
let credits: Credits;
let instanceB: Credits;
let server: { url: string; close: () => Promise<void> };

beforeAll(async () => {
  connection = await connect();
  // An outage the test switches on and off: every call of instance A's store fails while it lasts.
  const store = decorateStore(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), (name, call) =>
    down ? Promise.reject(new Error(`injected outage: ${name}`)) : call(),
  );
  // A metered named cost is a metered guard too: requireCredits('chat') below.
  const costs = { chat: { metered: true as const, reserve: COST, label: 'Chat' } };
  const options = { getUserId: headerUser, timeoutMs: 20_000, settleWithinMs: SETTLE_WITHIN_MS, logger: () => undefined, costs };
  credits = createCredits({ ...options, store });
  await credits.init();
  // A second instance on the same database, as another process of the app would be.
  other = mongoose.createConnection(mongoUri(), { dbName: connection.name, serverSelectionTimeoutMS: 2000 });
  await other.asPromise();
  instanceB = createCredits({ ...options, connection: other });

  const app = express();
  const route = async (req: Request, res: ExpressResponse) => {
    const id = req.get('x-id') ?? '';
    const tokens = Number(req.get('x-tokens') ?? 0);
    const then = req.get('x-then') ?? 'settle';
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = 0; i < tokens; i++) res.write(`data: t${i}\n\n`);
    if (then === 'settle') await req.credits!.settle(tokens);
    if (then === 'settle-all') await req.credits!.settle(COST);
    if (then === 'stall') {
      // The route stops here (a stalled process) and settles long after: the test opens the gate.
      await gate(id);
      afterGate.set(id, { settled: await req.credits!.settle(tokens) });
    }
    if (then === 'outage') {
      await gate(id);
      try {
        afterGate.set(id, { settled: await req.credits!.settle(tokens) });
      } catch (err) {
        afterGate.set(id, { error: (err as { code?: string }).code ?? String(err) });
      }
    }
    res.end('data: [DONE]\n\n');
  };
  app.post('/ai/chat', credits.requireCredits(COST, { metered: true }), route);
  app.post('/ai/named', credits.requireCredits('chat'), route);
  server = await listen(app);
}, 60_000);

afterAll(async () => {
  down = false;
  await credits.flush();
  await instanceB.flush();
  await server.close();
  await other.close();
  await connection.close();
});

let users = 0;
async function funded(): Promise<string> {
  const user = `r${++users}`;
  await credits.grantCredits(user, 100, { idempotencyKey: `grant-${user}` });
  return user;
}

/** Sends a metered stream and reads `read` events (all of them when not given), then lets the connection go. */
async function stream(user: string, headers: Record<string, string>, read?: number, path = '/ai/chat'): Promise<string[]> {
  const abort = new AbortController();
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'x-test-user': user, ...headers }, signal: abort.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const text = new TextDecoder();
  let all = '';
  for (;;) {
    const events = all.split('\n\n').filter(Boolean);
    if (read !== undefined && events.length >= read) {
      abort.abort();
      return events.slice(0, read);
    }
    const next = await reader.read();
    if (next.done) return events;
    all += text.decode(next.value, { stream: true });
  }
}

/** Waits until the user's metered charge is past its settle-by time (read from its own ledger entry). */
async function pastSettleBy(user: string, instance: Credits = credits): Promise<void> {
  const { transactions } = await instance.listTransactions(user, { limit: 100 });
  const charge = transactions.find((t) => t.kind === 'usage')!;
  const settleBy = new Date(charge.ref!.settleBy!).getTime();
  expect(Number.isFinite(settleBy)).toBe(true);
  while (Date.now() <= settleBy) await new Promise((r) => setTimeout(r, 20));
}

const kinds = async (user: string) => (await consistentAudit(credits, user)).kinds;

it('leaves a settled metered stream as it was settled, also one settled at exactly its reservation', async () => {
  const some = await funded();
  const all = await funded();
  expect(await stream(some, { 'x-tokens': '3', 'x-then': 'settle' })).toEqual(['data: t0', 'data: t1', 'data: t2', 'data: [DONE]']);
  await stream(all, { 'x-tokens': '2', 'x-then': 'settle-all' });
  await pastSettleBy(some);
  await pastSettleBy(all);
  expect((await credits.reconcile()).reservationsGivenBack).toBe(0);
  expect(await credits.getBalance(some)).toBe(97);
  // Settling the whole reservation is written too (an entry of 0), so that reconcile() sees it was settled.
  expect(await credits.getBalance(all)).toBe(90);
  expect(await kinds(all)).toEqual({ grant: 1, usage: 1, settle: 1 });
});

it('gives back a reservation its stalled route never settled, once across two instances, and a late settle changes nothing', async () => {
  const user = await funded();
  const id = `${user}-stalled`;
  expect(await stream(user, { 'x-id': id, 'x-tokens': '2', 'x-then': 'stall' }, 2)).toEqual(['data: t0', 'data: t1']);
  expect(await credits.getBalance(user)).toBe(90);
  await pastSettleBy(user);

  const [a, b] = await Promise.all([credits.reconcile(), instanceB.reconcile()]);
  expect(a.reservationsGivenBack + b.reservationsGivenBack).toBe(1);
  expect(a.errors + b.errors).toBe(0);
  expect(await credits.getBalance(user)).toBe(100);
  // Decided for good: later passes find nothing to decide.
  expect((await instanceB.reconcile()).reservationsGivenBack).toBe(0);

  // The stalled route wakes up and settles what it delivered: the reservation was given back, nothing changes.
  gates.get(id)!.open();
  await until(() => afterGate.has(id));
  expect(afterGate.get(id)).toEqual({ settled: { charged: 0, balance: 100 } });
  expect(await kinds(user)).toEqual({ grant: 1, usage: 1, refund: 1 });
  const { transactions } = await credits.listTransactions(user, { limit: 10 });
  expect(transactions[0]).toMatchObject({ kind: 'refund', amount: COST, reason: 'Not settled within settleWithinMs: the reservation was given back' });
});

it('retries a settle the database refused at the end of a stream, and charges it once', async () => {
  const user = await funded();
  const id = `${user}-outage`;
  const read = stream(user, { 'x-id': id, 'x-tokens': '3', 'x-then': 'outage' });
  await until(() => gates.has(id));
  down = true;
  gates.get(id)!.open();
  expect(await read).toEqual(['data: t0', 'data: t1', 'data: t2', 'data: [DONE]']);
  expect(afterGate.get(id)).toEqual({ error: 'store_unavailable' });
  down = false;
  await credits.flush(); // the queued settlement is written now
  expect(await credits.getBalance(user)).toBe(97);
  await pastSettleBy(user);
  expect((await instanceB.reconcile()).reservationsGivenBack).toBe(0);
  expect(await kinds(user)).toEqual({ grant: 1, usage: 1, settle: 1 });
});

it('gives back the reservation of a process that never got to write its settle, and its retry afterwards changes nothing', async () => {
  const user = await funded();
  const id = `${user}-died`;
  const read = stream(user, { 'x-id': id, 'x-tokens': '3', 'x-then': 'outage' });
  await until(() => gates.has(id));
  down = true; // for instance A, for good: as if it died with its settlement queued
  gates.get(id)!.open();
  await read;
  expect(afterGate.get(id)).toEqual({ error: 'store_unavailable' });
  await pastSettleBy(user, instanceB);

  // The charge is still in the account's journal (A died before moving it): B moves it, as it would once
  // the claim lease is over (here at once: `olderThanMs: 0`), and decides the reservation in the same pass.
  expect((await instanceB.reconcile({ olderThanMs: 0 })).reservationsGivenBack).toBe(1);
  expect(await instanceB.getBalance(user)).toBe(100);
  // A comes back and its queued settlement runs: the reservation was decided, so it changes nothing.
  down = false;
  await credits.flush();
  expect(await kinds(user)).toEqual({ grant: 1, usage: 1, refund: 1 });
  expect(await credits.getBalance(user)).toBe(100);
});

it('treats a metered named cost as a metered guard: unsettled, its reservation is given back', async () => {
  const user = await funded();
  expect(await stream(user, { 'x-tokens': '2', 'x-then': 'end' }, undefined, '/ai/named')).toEqual(['data: t0', 'data: t1', 'data: [DONE]']);
  expect(await credits.getBalance(user)).toBe(90);
  await credits.flush();
  await pastSettleBy(user);
  expect((await instanceB.reconcile()).reservationsGivenBack).toBe(1);
  expect(await kinds(user)).toEqual({ grant: 1, usage: 1, refund: 1 });
  const { transactions } = await credits.listTransactions(user, { limit: 10 });
  expect(transactions.find((t) => t.kind === 'usage')?.ref).toMatchObject({ cost: 'chat', label: 'Chat' });
});

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 10));
}
