/**
 * Idempotent replay on guarded routes, over real HTTP against the embedded database: a retry of a finished
 * request with the same Idempotency-Key gets the first answer (status, Content-Type and bytes) and is
 * neither run nor charged again; a retry while the first runs is 409; the key reused for another route or
 * body is 422; keys are per user; answers that are not kept say so.
 */
import express, { type Express } from 'express';
import mongoose from 'mongoose';
import { createCredits, type Credits } from 'credit-kit/server';
import { claimId } from '../ledger';
import { requestKey } from '../domain/keys';
import { audit, harness, headerUser, listen, mongoUri, post, type Harness } from './helpers';

let h: Harness;
const runs: string[] = [];
/** The running /ai/slow request: told when it has started, and held until released. */
let slow: { started: () => void; release?: () => void } | undefined;

function routes(app: Express, credits: Credits) {
  app.use(express.json());
  app.post('/ai/echo', credits.requireCredits(2), (req, res) => {
    runs.push('echo');
    res.json({ run: runs.length, got: req.body as unknown, chargeId: req.credits!.chargeId, balance: req.credits!.balance, text: 'é ✓' });
  });
  app.post('/ai/slow', credits.requireCredits(2), async (_req, res) => {
    runs.push('slow');
    const held = slow!;
    const gate = new Promise<void>((r) => (held.release = r));
    held.started();
    await gate;
    res.status(201).json({ slow: true });
  });
  app.post('/ai/fail', credits.requireCredits(2), (_req, res) => {
    runs.push('fail');
    res.status(502).json({ error: { code: 'model_failed', message: 'the model is down' } });
  });
  app.post('/ai/throws', credits.requireCredits(2), () => {
    runs.push('throws');
    throw new Error('the model crashed');
  });
  app.post('/ai/big', credits.requireCredits(2), (_req, res) => {
    runs.push('big');
    res.json({ blob: 'x'.repeat(70_000) });
  });
  app.post('/ai/text', credits.requireCredits(2), (_req, res) => {
    runs.push('text');
    res.type('text/plain').send('a summary in plain text');
  });
  app.post('/ai/empty', credits.requireCredits(2), (_req, res) => {
    runs.push('empty');
    res.status(204).end();
  });
}

beforeAll(async () => {
  h = await harness(routes);
});
afterAll(() => h.close());
beforeEach(() => (runs.length = 0));

/** Posts JSON with an Idempotency-Key; returns status, replay header and the exact body text. */
async function send(path: string, user: string, key: string, body: unknown = { prompt: 'hi' }) {
  const res = await post(`${h.url}${path}`, user, body, { 'idempotency-key': key });
  return { status: res.status, replayed: res.headers.get('idempotent-replayed'), type: res.headers.get('content-type'), text: await res.text() };
}

async function ledgerOf(user: string) {
  await h.credits.flush();
  const a = await audit(h.credits, user);
  expect(a.sum).toBe(a.balance);
  return a;
}

/** Holds the next /ai/slow request once it is charged and running. */
function holdSlow(): { started: Promise<void>; release: () => void } {
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const held: { started: () => void; release?: () => void } = { started };
  slow = held;
  return { started: running, release: () => held.release!() };
}

describe('a retry of a finished request', () => {
  it('gets the same status, Content-Type and bytes, marked Idempotent-Replayed, and is neither run nor charged again', async () => {
    await h.credits.grantCredits('ada', 10, { idempotencyKey: 'start' });
    const first = await send('/ai/echo', 'ada', 'job-1');
    expect(first).toMatchObject({ status: 200, replayed: null });
    await h.credits.flush(); // the answer is stored after it has gone out
    for (let i = 0; i < 3; i++) {
      const retry = await send('/ai/echo', 'ada', 'job-1');
      expect(retry).toEqual({ ...first, replayed: 'true' });
    }
    expect(runs).toEqual(['echo']);
    expect(await ledgerOf('ada')).toMatchObject({ balance: 8, kinds: { grant: 1, usage: 1 } });
  });

  it('is told apart from another request by the body as parsed, whatever the order of its keys', async () => {
    await h.credits.grantCredits('bea', 10, { idempotencyKey: 'start' });
    const first = await send('/ai/echo', 'bea', 'job-1', { prompt: 'hi', model: 'small' });
    await h.credits.flush();
    const retry = await post(`${h.url}/ai/echo`, 'bea', '{ "model": "small",  "prompt": "hi" }', { 'idempotency-key': 'job-1' });
    expect(retry.status).toBe(200);
    expect(await retry.text()).toBe(first.text);
    expect(runs).toEqual(['echo']);
  });

  it('is answered from the database by another instance: the kept answer is durable', async () => {
    await h.credits.grantCredits('cy', 10, { idempotencyKey: 'start' });
    const first = await send('/ai/echo', 'cy', 'job-1');
    await h.credits.flush();
    const connection = await mongoose.createConnection(mongoUri(), { dbName: h.connection.name }).asPromise();
    try {
      const other = createCredits({ connection, getUserId: headerUser });
      const app = express();
      const otherRuns: string[] = [];
      app.use(express.json());
      app.post('/ai/echo', other.requireCredits(2), (_req, res) => {
        otherRuns.push('echo');
        res.json({ other: true });
      });
      const server = await listen(app);
      try {
        const res = await post(`${server.url}/ai/echo`, 'cy', { prompt: 'hi' }, { 'idempotency-key': 'job-1' });
        expect(res.status).toBe(200);
        expect(res.headers.get('idempotent-replayed')).toBe('true');
        expect(await res.text()).toBe(first.text);
        expect(otherRuns).toEqual([]);
      } finally {
        await server.close();
      }
    } finally {
      await connection.close();
    }
    expect((await ledgerOf('cy')).balance).toBe(8);
  });

  it('replays a failure answer as it was, and its charge is refunded once', async () => {
    await h.credits.grantCredits('dee', 10, { idempotencyKey: 'start' });
    const first = await send('/ai/fail', 'dee', 'job-1');
    expect(first.status).toBe(502);
    expect(await h.credits.getBalance('dee')).toBe(10);
    await h.credits.flush();
    expect(await send('/ai/fail', 'dee', 'job-1')).toEqual({ ...first, replayed: 'true' });
    expect(runs).toEqual(['fail']);
    expect(await ledgerOf('dee')).toMatchObject({ balance: 10, kinds: { grant: 1, usage: 1, refund: 1 } });
  });

  it('after a thrown error (Express answers an HTML 500): refunded once, and a retry gets 409 reply_not_kept', async () => {
    await h.credits.grantCredits('dan', 10, { idempotencyKey: 'start' });
    const first = await send('/ai/throws', 'dan', 'job-1');
    expect(first.status).toBe(500);
    expect(first.type).toMatch(/text\/html/);
    await h.credits.flush();
    const retry = await send('/ai/throws', 'dan', 'job-1');
    expect(retry.status).toBe(409);
    expect(JSON.parse(retry.text).error).toMatchObject({ code: 'reply_not_kept', status: 500 });
    expect(runs).toEqual(['throws']);
    expect(await ledgerOf('dan')).toMatchObject({ balance: 10, kinds: { grant: 1, usage: 1, refund: 1 } });
  });

  it('replays an empty answer (204)', async () => {
    await h.credits.grantCredits('eve', 10, { idempotencyKey: 'start' });
    expect(await send('/ai/empty', 'eve', 'job-1')).toMatchObject({ status: 204, text: '' });
    await h.credits.flush();
    expect(await send('/ai/empty', 'eve', 'job-1')).toMatchObject({ status: 204, replayed: 'true', text: '' });
    expect(runs).toEqual(['empty']);
  });

  it.each([
    ['larger than 64 KiB', '/ai/big', /larger than the kit keeps/],
    ['not JSON', '/ai/text', /not a JSON body/],
  ])('with an answer %s: 409 reply_not_kept, not run or charged again', async (_what, path, why) => {
    const user = `fay-${path}`;
    await h.credits.grantCredits(user, 10, { idempotencyKey: 'start' });
    expect((await send(path, user, 'job-1')).status).toBe(200);
    await h.credits.flush();
    const retry = await send(path, user, 'job-1');
    expect(retry.status).toBe(409);
    expect(JSON.parse(retry.text)).toEqual({ error: { code: 'reply_not_kept', message: expect.stringMatching(why), idempotencyKey: 'job-1', status: 200 } });
    expect(runs).toHaveLength(1);
    expect((await ledgerOf(user)).balance).toBe(8);
  });
});

describe('a retry while the first request is still running', () => {
  it('gets 409 conflict, and the first answer once it has finished; a different body meanwhile is 422', async () => {
    await h.credits.grantCredits('gus', 10, { idempotencyKey: 'start' });
    const l = holdSlow();
    const first = send('/ai/slow', 'gus', 'job-1');
    await l.started; // charged, and the route is running
    const during = await send('/ai/slow', 'gus', 'job-1');
    expect(during.status).toBe(409);
    expect(JSON.parse(during.text).error).toMatchObject({ code: 'conflict', idempotencyKey: 'job-1', message: expect.stringMatching(/still running/) });
    expect((await send('/ai/slow', 'gus', 'job-1', { prompt: 'other' })).status).toBe(422);
    l.release();
    const done = await first;
    expect(done).toMatchObject({ status: 201, replayed: null });
    await h.credits.flush();
    expect(await send('/ai/slow', 'gus', 'job-1')).toEqual({ ...done, replayed: 'true' });
    expect(runs).toEqual(['slow']);
    expect((await ledgerOf('gus')).balance).toBe(8);
  });

  it('many at once: one runs and is charged; every other answer is 409 or that answer replayed', async () => {
    await h.credits.grantCredits('hal', 10, { idempotencyKey: 'start' });
    const answers = await Promise.all(Array.from({ length: 10 }, () => send('/ai/echo', 'hal', 'job-1')));
    const original = answers.filter((a) => a.status === 200 && a.replayed === null);
    expect(original).toHaveLength(1);
    for (const a of answers) {
      if (a === original[0]) continue;
      if (a.status === 409) expect(JSON.parse(a.text).error.code).toBe('conflict');
      else expect(a).toEqual({ ...original[0], replayed: 'true' });
    }
    expect(runs).toEqual(['echo']);
    expect((await ledgerOf('hal')).balance).toBe(8);
  });
});

describe('the same key for another request', () => {
  it('another body, another query or another route is 422 idempotency_key_reused; nothing runs or is charged', async () => {
    await h.credits.grantCredits('ivy', 10, { idempotencyKey: 'start' });
    const first = await send('/ai/echo', 'ivy', 'job-1');
    await h.credits.flush();
    const body = await send('/ai/echo', 'ivy', 'job-1', { prompt: 'something else' });
    expect(body.status).toBe(422);
    expect(JSON.parse(body.text)).toEqual({
      error: { code: 'idempotency_key_reused', idempotencyKey: 'job-1', message: expect.stringMatching(/another body or query on POST \/ai\/echo/) },
    });
    const query = await post(`${h.url}/ai/echo?model=large`, 'ivy', { prompt: 'hi' }, { 'idempotency-key': 'job-1' });
    expect(query.status).toBe(422);
    const route = await send('/ai/fail', 'ivy', 'job-1');
    expect(route.status).toBe(422);
    expect(JSON.parse(route.text).error.message).toMatch(/another route \(POST \/ai\/echo\)/);
    // The first request's answer is still there for a real retry.
    expect(await send('/ai/echo', 'ivy', 'job-1')).toEqual({ ...first, replayed: 'true' });
    expect(runs).toEqual(['echo']);
    expect((await ledgerOf('ivy')).balance).toBe(8);
  });
});

describe('keys', () => {
  it('are per user: another user’s same key is another request', async () => {
    await h.credits.grantCredits('jo', 10, { idempotencyKey: 'start' });
    await h.credits.grantCredits('kim', 10, { idempotencyKey: 'start' });
    const jo = await send('/ai/echo', 'jo', 'shared-key');
    await h.credits.flush();
    const kim = await send('/ai/echo', 'kim', 'shared-key', { prompt: 'something else' });
    expect(kim).toMatchObject({ status: 200, replayed: null });
    expect(kim.text).not.toBe(jo.text);
    expect(runs).toEqual(['echo', 'echo']);
    expect((await ledgerOf('jo')).balance).toBe(8);
    expect((await ledgerOf('kim')).balance).toBe(8);
  });

  it('refused with 402 stay free: the same key runs once the balance covers it', async () => {
    const first = await send('/ai/echo', 'lee', 'job-1');
    expect(first.status).toBe(402);
    await h.credits.grantCredits('lee', 10, { idempotencyKey: 'start' });
    expect((await send('/ai/echo', 'lee', 'job-1')).status).toBe(200);
    expect(runs).toEqual(['echo']);
  });

  it('expire after idempotencyKeyTtlMs: reconcile() deletes them, and the key is a new request again', async () => {
    const short = await harness(routes, { idempotencyKeyTtlMs: 300 });
    try {
      await short.credits.grantCredits('max', 10, { idempotencyKey: 'start' });
      const res = await post(`${short.url}/ai/echo`, 'max', { prompt: 'hi' }, { 'idempotency-key': 'job-1' });
      expect(res.status).toBe(200);
      await short.credits.flush();
      const claim = await short.credits.store.getClaim(claimId('max', requestKey('job-1')));
      expect(claim).toMatchObject({ state: 'applied', reply: { kept: true, status: 200 }, expiresAt: expect.any(Date) });
      const kept = claim!.expiresAt!.getTime() - new Date(claim!.createdAt).getTime();
      expect(kept).toBeGreaterThan(250);
      expect(kept).toBeLessThanOrEqual(300);
      await new Promise((r) => setTimeout(r, 400));
      const report = await short.credits.reconcile();
      // On MongoDB the TTL index may have deleted it first; on the embedded server reconcile() does.
      expect(report.keysExpired).toBeLessThanOrEqual(1);
      expect(await short.credits.store.getClaim(claimId('max', requestKey('job-1')))).toBeNull();
      const again = await post(`${short.url}/ai/echo`, 'max', { prompt: 'hi' }, { 'idempotency-key': 'job-1' });
      expect(again.status).toBe(200);
      expect(again.headers.get('idempotent-replayed')).toBeNull();
      await short.credits.flush();
      expect(await short.credits.getBalance('max')).toBe(6);
    } finally {
      await short.close();
    }
  });
});
