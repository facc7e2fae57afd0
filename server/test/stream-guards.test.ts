/**
 * Streaming AI routes over real HTTP against the embedded database, the same cases on both guards: server-sent
 * events written by an Express route guarded by requireCredits, and a ReadableStream returned by a Fetch
 * handler guarded by withCredits (served the way Next.js serves it: fetch-helpers.ts). The rule under test is
 * server/http/stream.ts's: a stream cut before its first byte is given back whole; after it, what the route
 * settles (or else the reservation) stands; a client that goes away aborts `credits.signal`.
 */
import type { NextFunction, Request as ExpressRequest, Response as ExpressResponse } from 'express';
import type { CreditsContext } from 'credit-kit/server';
import { consistentAudit, harness } from './helpers';
import { fetchHarness } from './fetch-helpers';

const COST = 10;

/** What a route does, from the request's headers: `x-tokens` events, then `x-then`. */
interface Plan {
  id: string;
  tokens: number;
  /** settle: settle the tokens and end; end: end without a settle; throw: fail; settle-throw: settle, then fail; wait: until the client goes away. */
  then: 'settle' | 'end' | 'throw' | 'settle-throw' | 'wait';
  /** With `wait`: settle the tokens delivered once the signal aborts, or ignore it. */
  onAbort: 'settle' | 'ignore';
}

/** What each route saw, by request id: for the test to wait on the server's side of an abort. */
const seen = new Map<string, { aborted: boolean; settled?: unknown }>();

function planOf(header: (name: string) => string | null | undefined): Plan {
  return {
    id: header('x-id') ?? '',
    tokens: Number(header('x-tokens') ?? 0),
    then: (header('x-then') ?? 'settle') as Plan['then'],
    onAbort: (header('x-on-abort') ?? 'settle') as Plan['onAbort'],
  };
}

const event = (data: string) => `data: ${data}\n\n`;

/** The part of a route after its tokens, the same on both sides: true when the answer should end normally. */
async function play(plan: Plan, credits: CreditsContext): Promise<boolean> {
  const note = { aborted: false as boolean, settled: undefined as unknown };
  seen.set(plan.id, note);
  if (plan.then === 'settle' || plan.then === 'settle-throw') note.settled = await credits.settle(plan.tokens);
  if (plan.then === 'throw' || plan.then === 'settle-throw') throw new Error('the model stream broke');
  if (plan.then !== 'wait') return true;
  await new Promise<void>((resolve) => {
    if (credits.signal.aborted) resolve();
    else credits.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  if (plan.onAbort === 'settle') note.settled = await credits.settle(plan.tokens);
  note.aborted = true;
  return false;
}

/** Short enough for a test to wait out: only the metered routes' reservations are bound by it. */
const SETTLE_WITHIN_MS = 300;

async function expressSide() {
  const route = async (req: ExpressRequest, res: ExpressResponse, next: NextFunction) => {
    const plan = planOf((name) => req.get(name));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    try {
      // Each token handed to the connection before the next, as a route that honours backpressure writes.
      for (let i = 0; i < plan.tokens; i++) await new Promise((taken) => res.write(event(`t${i}`), taken));
      if (await play(plan, req.credits!)) res.end(event('[DONE]'));
    } catch (err) {
      next(err); // after the headers: Express cuts the connection
    }
  };
  const h = await harness(
    (app, credits) => {
      app.post('/ai/chat', credits.requireCredits(COST), route);
      app.post('/ai/metered', credits.requireCredits(COST, { metered: true }), route);
    },
    { settleWithinMs: SETTLE_WITHIN_MS },
  );
  return { name: 'Express SSE', ...h };
}

async function fetchSide() {
  const route = (request: Request, { credits: c }: { credits: CreditsContext }) => {
    const plan = planOf((name) => request.headers.get(name));
    const bytes = new TextEncoder();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent < plan.tokens) return controller.enqueue(bytes.encode(event(`t${sent++}`)));
        try {
          if (await play(plan, c)) {
            controller.enqueue(bytes.encode(event('[DONE]')));
            controller.close();
          }
        } catch (err) {
          controller.error(err);
        }
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  };
  const h = await fetchHarness(
    (credits) => ({
      'POST /ai/chat': credits.withCredits(COST, route),
      'POST /ai/metered': credits.withCredits(COST, { metered: true }, route),
    }),
    { settleWithinMs: SETTLE_WITHIN_MS },
  );
  return { name: 'Fetch ReadableStream', ...h };
}

interface Side {
  name: string;
  url: string;
  credits: Awaited<ReturnType<typeof fetchSide>>['credits'] | Awaited<ReturnType<typeof expressSide>>['credits'];
  close(): Promise<void>;
}

/**
 * Streams one answer: reads its events, aborting the request after `abortAfter` of them if given. `cut`:
 * the connection ended before the body did.
 */
async function stream(
  side: Side,
  user: string,
  plan: Partial<Plan> & { metered?: boolean },
  abortAfter?: number,
): Promise<{ status: number; events: string[]; cut: boolean }> {
  const abort = new AbortController();
  const headers: Record<string, string> = { 'x-id': plan.id ?? `${user}-${Math.random()}` };
  if (plan.tokens !== undefined) headers['x-tokens'] = String(plan.tokens);
  if (plan.then) headers['x-then'] = plan.then;
  if (plan.onAbort) headers['x-on-abort'] = plan.onAbort;
  const res = await fetch(`${side.url}${plan.metered ? '/ai/metered' : '/ai/chat'}`, { method: 'POST', headers: { 'x-test-user': user, ...headers }, signal: abort.signal });
  const events: string[] = [];
  if (res.status !== 200) return { status: res.status, events, cut: false };
  const reader = res.body!.getReader();
  const text = new TextDecoder();
  let buffered = '';
  try {
    for (;;) {
      if (abortAfter !== undefined && events.length >= abortAfter) {
        abort.abort();
        return { status: res.status, events, cut: true };
      }
      const next = await reader.read();
      if (next.done) return { status: res.status, events, cut: false };
      buffered += text.decode(next.value, { stream: true });
      for (let at = buffered.indexOf('\n\n'); at >= 0; at = buffered.indexOf('\n\n')) {
        events.push(buffered.slice('data: '.length, at));
        buffered = buffered.slice(at + 2);
      }
    }
  } catch {
    return { status: res.status, events, cut: true };
  }
}

/** Waits for a condition the server reaches on its own time (an abort arriving, a give-back written). */
async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 10));
}

describe.each<[string, () => Promise<Side>]>([
  ['Express SSE', expressSide],
  ['Fetch ReadableStream', fetchSide],
])('%s', (_name, start) => {
  let side: Side;
  let users = 0;
  beforeAll(async () => {
    side = await start();
  }, 60_000);
  afterAll(() => side.close());

  /** A user holding 100 credits. */
  async function funded(credits = 100): Promise<string> {
    const user = `u${++users}-${side.name.split(' ')[0]}`;
    await side.credits.grantCredits(user, credits, { idempotencyKey: `grant-${user}` });
    return user;
  }
  const settled = async (user: string, balance: number) => {
    await until(async () => (await side.credits.getBalance(user)) === balance);
    return consistentAudit(side.credits, user);
  };
  const amounts = async (user: string) => (await side.credits.listTransactions(user, { limit: 100 })).transactions.map((t) => [t.kind, t.amount]).reverse();

  it('settles at the end of the stream: charged what the route settled, and the rest given back', async () => {
    const user = await funded();
    const out = await stream(side, user, { tokens: 3, then: 'settle' });
    expect(out).toEqual({ status: 200, events: ['t0', 't1', 't2', '[DONE]'], cut: false });
    expect((await settled(user, 97)).kinds).toEqual({ grant: 1, usage: 1, settle: 1 });
    expect(await amounts(user)).toEqual([['grant', 100], ['usage', -COST], ['settle', 7]]);
  });

  it('keeps the reservation of a stream that ends without a settle', async () => {
    const user = await funded();
    expect((await stream(side, user, { tokens: 2, then: 'end' })).events).toEqual(['t0', 't1', '[DONE]']);
    expect((await settled(user, 90)).kinds).toEqual({ grant: 1, usage: 1 });
  });

  it('gives back the whole charge of a stream that fails before its first byte (its headers already sent)', async () => {
    const user = await funded();
    const out = await stream(side, user, { tokens: 0, then: 'throw' });
    expect(out).toEqual({ status: 200, events: [], cut: true });
    expect((await settled(user, 100)).kinds).toEqual({ grant: 1, usage: 1, refund: 1 });
  });

  it('keeps the reservation of a stream that fails after some bytes without a settle, and what a settle said when there was one', async () => {
    const bare = await funded();
    expect(await stream(side, bare, { tokens: 2, then: 'throw' })).toEqual({ status: 200, events: ['t0', 't1'], cut: true });
    expect((await settled(bare, 90)).kinds).toEqual({ grant: 1, usage: 1 });

    const reported = await funded();
    expect(await stream(side, reported, { tokens: 2, then: 'settle-throw' })).toEqual({ status: 200, events: ['t0', 't1'], cut: true });
    expect(await amounts(reported)).toEqual([['grant', 100], ['usage', -COST], ['settle', 8]]);
    await settled(reported, 98);
  });

  it('tells the route of a client that goes away mid-stream, which settles what it delivered', async () => {
    const user = await funded();
    const id = `${user}-abort`;
    expect((await stream(side, user, { id, tokens: 3, then: 'wait', onAbort: 'settle' }, 3)).events).toEqual(['t0', 't1', 't2']);
    await until(() => seen.get(id)?.aborted === true);
    expect(seen.get(id)?.settled).toEqual({ charged: 3, balance: 97 });
    expect(await amounts(user)).toEqual([['grant', 100], ['usage', -COST], ['settle', 7]]);
    await settled(user, 97);
  });

  it('keeps the reservation when the client goes away after some bytes and the route does not settle', async () => {
    const user = await funded();
    const id = `${user}-abort`;
    await stream(side, user, { id, tokens: 2, then: 'wait', onAbort: 'ignore' }, 1);
    await until(() => seen.get(id)?.aborted === true);
    expect((await settled(user, 90)).kinds).toEqual({ grant: 1, usage: 1 });
  });

  it('gives back the whole charge when the client goes away before the first byte', async () => {
    const user = await funded();
    const id = `${user}-abort`;
    expect(await stream(side, user, { id, tokens: 0, then: 'wait', onAbort: 'ignore' }, 0)).toEqual({ status: 200, events: [], cut: true });
    await until(() => seen.get(id)?.aborted === true);
    expect((await settled(user, 100)).kinds).toEqual({ grant: 1, usage: 1, refund: 1 });
  });

  it('gives back through reconcile() a metered stream nobody settled within settleWithinMs, and leaves a settled one', async () => {
    const unsettled = await funded();
    const reported = await funded();
    expect((await stream(side, unsettled, { metered: true, tokens: 2, then: 'end' })).events).toEqual(['t0', 't1', '[DONE]']);
    await stream(side, reported, { metered: true, tokens: 3, then: 'settle' });
    expect(await side.credits.getBalance(unsettled)).toBe(90);
    await side.credits.flush(); // the charges are moved from the journals to the ledger, where reconcile() looks
    const charge = (await side.credits.listTransactions(unsettled, { limit: 10 })).transactions.find((t) => t.kind === 'usage')!;
    // Its settle-by time is in the charge's own entry (set from settleWithinMs as it was charged).
    expect(Number.isFinite(new Date(charge.ref!.settleBy!).getTime())).toBe(true);
    await until(() => Date.now() > new Date(charge.ref!.settleBy!).getTime());

    expect((await side.credits.reconcile()).reservationsGivenBack).toBe(1);
    expect((await settled(unsettled, 100)).kinds).toEqual({ grant: 1, usage: 1, refund: 1 });
    expect((await settled(reported, 97)).kinds).toEqual({ grant: 1, usage: 1, settle: 1 });
    expect((await side.credits.reconcile()).reservationsGivenBack).toBe(0);
  });

  it('charges exactly the admitted streams of 200 concurrent ones on a balance that covers some', async () => {
    const user = await funded(300);
    // Every fourth stream fails before its first byte (given back); the others deliver 3 tokens and settle 3.
    const outs = await Promise.all(
      Array.from({ length: 200 }, (_, i) => stream(side, user, i % 4 === 0 ? { tokens: 0, then: 'throw' } : { tokens: 3, then: 'settle' })),
    );
    const ok = outs.filter((o, i) => o.status === 200 && i % 4 !== 0);
    const failed = outs.filter((o, i) => o.status === 200 && i % 4 === 0);
    expect(outs.filter((o) => o.status !== 200).every((o) => o.status === 402)).toBe(true);
    // At least the 30 the balance holds with nothing given back yet; more once settlements and refunds land.
    expect(ok.length + failed.length).toBeGreaterThanOrEqual(30);
    expect(ok.every((o) => o.events.length === 4 && !o.cut)).toBe(true);
    expect(failed.every((o) => o.events.length === 0 && o.cut)).toBe(true);
    const a = await settled(user, 300 - 3 * ok.length);
    expect(a.kinds).toEqual({ grant: 1, usage: ok.length + failed.length, ...(ok.length ? { settle: ok.length } : {}), ...(failed.length ? { refund: failed.length } : {}) });
  }, 120_000);
});
