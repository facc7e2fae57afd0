/**
 * A model-based checker in the style of Jepsen's bank test. Three instances of an app (separate Node
 * processes, server/reliability/checker-instance.ts) share one database, each through its own fault proxy
 * (tools/fault-proxy.ts) and each with its own clock: 0, +70 s and -90 s (tools/skew-clock.cjs). Client
 * workers drive them with a schedule drawn from one seed: keyed grants (half of them expiring, some with a
 * priority or a source, some rolling over) re-sent to other instances, expiry sweeps on a simulated clock,
 * revokes of grants and of their rollover grants, guarded
 * fixed and metered requests (failing or not, with and without Idempotency-Key, retried elsewhere after a
 * 503), metered streams (server-sent events: whole, failing before their first byte, failing after their
 * settlement), deductions with and without keys, and Checkout purchases whose signed Stripe events (completion,
 * refunds, refunds that fail, disputes won or lost) are delivered shuffled, duplicated, concurrently and
 * re-delivered until acknowledged, and subscriptions: a few users subscribe (POST /credits/subscribe), then
 * their signed events (the checkout's completion, the subscription's created and updated states, each
 * period's invoice.paid, sometimes a re-issued invoice for the same period with its start, end or both drifted,
 * upgrades' proration invoices mid-period, a refund or dispute of one of a period's payments, delivered in
 * that period or after the next sweep) go through the same delivery machinery, period after period, with
 * a sweep of the simulated clock at each period's end (the allowance expires, its plan's rollover is kept);
 * some are cancelled (customer.subscription.deleted at once, or a cancel_at_period_end update then the
 * deletion at the period's end), and after the deletion an invoice.paid for the next period is sent anyway.
 * Meanwhile the proxies stall, delay, lose replies and reset connections,
 * and whole instances stall for longer than the claim lease.
 *
 * Then every fault is turned off, unacknowledged events are re-delivered, each instance reconciles twice
 * (a lease apart) and flushes, and the database is read directly and checked against the model:
 *   1. every balance is the sum of its ledger (collection ∪ journal, by id); no journal left; seq 1..n;
 *      balance-after chains; and, during the run, every paged read of a history adds up to its balance;
 *   2. no idempotency key applied twice (ledger keys unique per user), no request key ran twice, and a
 *      replayed answer (Idempotent-Replayed) is the answer of the attempt that ran;
 *   3. each purchase holds exactly the credits its true final history owes (refunds, failed refunds,
 *      disputes), never more than bought nor below 0; no adjustment left pending;
 *   4. no request given back more than it was charged: charge + its refunds/settlements in [-max, 0];
 *   5. every 200 paid exactly what it reported; every 5xx/503/402/409 ended at net 0; a 503/402/409 never
 *      ran; a charge whose route never ran was given back;
 *   6. grants and keyed deductions applied at most once, and exactly once when a call said so; an unkeyed
 *      deduction that failed was undone;
 *   7. spending never took a balance below zero;
 *   8. grants: each entry's grant parts and debt make its amount; replayed in seq order they never take a
 *      grant below zero and lead to the stored grant book, which adds up to the balance; an expiry takes
 *      exactly its grant's rest, once per grant, never before a sweep's clock reached the grant's expiry.
 *   9. every fall of a balance below a lowBalance level in the final ledger was recorded as one alert and
 *      delivered to the hook, and no alert or hook call names a fall that did not happen;
 *  10. a stream cut before its first byte was given back whole; one cut after it is charged what its route
 *      settled;
 *  11. revokes (revokeGrant of a grant or its rollover grant, under its default key or its own, from one or
 *      two instances, retried elsewhere): each takes exactly its grant's rest, a grant is revoked once and
 *      stays closed (nothing added to it or expired after), and a call says it revoked credits only once
 *      per key, for exactly what its entry took;
 *  12. auto-recharge: never two payments in flight for one user (no success ever arrives, so a user has at
 *      most one attempt), each attempt started for a real crossing of the user's threshold in the final
 *      ledger, recorded as seen, and no credits from a payment Stripe never confirmed; a crossing kept owed
 *      for later (cooldown, open payment) is a real one, seen, on an idle record (nothing in flight beside it).
 *  13. subscriptions, against what the schedule sent and Stripe's final truth: each period's allowance granted
 *      exactly once (of its own and its re-issued invoice, one key), each upgrade's difference once, each
 *      payment granting what it pays for (the allowance its plan, an upgrade the new plan less the old),
 *      whatever the order, so the period holds the biggest plan paid for in it; every grant an entry of its
 *      own (purchased credits never touched), expiring at its invoice's period end; a refunded or disputed
 *      payment's grant and its rollover left holding nothing, each revoked at most once and never for more
 *      than it granted, and a grant whose payment was never refunded never revoked; an expiry rolls over at
 *      most its plan's max (exactly min(rest, max) for a period's only grant), a period at most its biggest
 *      plan's; no subscription grant without its invoice; deliveries report each credit granted or revoked
 *      at most once; the record ends with Stripe's newest state (plan, current period, status, ended_at,
 *      cancel_at_period_end, linked) and every grant it claimed made. Cancelled subscriptions (deleted at
 *      once mid-period, or cancel_at_period_end then deleted at its end): the last period's grants run to
 *      its end, an invoice.paid for a later period sent after the deletion was acknowledged grants nothing,
 *      and POST /credits/subscribe opens a new checkout (201), where a live subscription still answers 409.
 *      Expiries, revokes and balances are also judged by 1, 8 and 11.
 *
 * CHECKER_SEED=n replays a schedule (timing still varies); the seed is printed at the start and in every
 * failure. CHECKER_SECONDS sets the length of the load phase (default 24); CHECKER_FAULTS=0 runs the same
 * schedule without faults.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Connection } from 'mongoose';
import { deductKey, grantKey, REQUEST_KEY_PREFIX, requestKey } from '../domain/keys';
import { claimId } from '../ledger';
import { startFaultProxy, type FaultProxy } from '../../tools/fault-proxy';
import { readyPort } from './instance-ready';
import { eventPayload, signPayload } from '../../tools/stripe-events';
import { checkoutSession, connect, mongoUri, stripeMockClient, WEBHOOK_SECRET } from '../test/helpers';
import { invoice, sessionCompleted, subscription, type InvoiceLine, type Sub } from '../test/subscription-events';
import { periodKey, upgradeKey } from '../stripe/subscriptions';
import { mulberry32 } from '../../tools/prng';

jest.spyOn(console, 'error').mockImplementation(() => undefined);

const ROOT = join(__dirname, '..', '..');
const SKEWS = [0, 70_000, -90_000];
const LEASE_MS = 4000;
const LOAD_MS = Number(process.env.CHECKER_SECONDS ?? 24) * 1000;
const WORKERS = 14;
const MAX_OPS_PER_WORKER = 600;
const USERS = ['ada', 'bob', 'cy', 'dee', 'eve', 'fay'];
/** The instances' lowBalance levels: the opening balances (60) start above both. */
const ALERT_LEVELS = [40, 15];
/** The auto-recharge threshold of the users opted in (all of them), below the opening balances. */
const RECHARGE_THRESHOLD = 30;
/** The instances' subscription plans (invariant 13): two roll over (each its own max), the biggest does not. */
const PLANS = {
  basic: { price: 'price_ck_basic', credits: 40, rollover: { max: 15 } },
  pro: { price: 'price_ck_pro', credits: 90, rollover: { max: 25 }, priority: 30 },
  max: { price: 'price_ck_max', credits: 150, priority: 70 },
} as const;
type PlanId = keyof typeof PLANS;
const PLAN_ORDER: readonly PlanId[] = ['basic', 'pro', 'max'];
const PLAN_CENTS: Record<PlanId, number> = { basic: 900, pro: 1900, max: 4900 };
const rolloverMaxOf = (plan: PlanId): number => (PLANS[plan] as { rollover?: { max: number } }).rollover?.max ?? 0;
/** Subscribers, each paying this many billing periods of SUB_PERIOD_S on the sweeps' simulated clock. */
const SUBSCRIBERS = 3;
const SUB_PERIODS = 3;
const SUB_PERIOD_S = 12 * 60;

// ---------------------------------------------------------------------------------------------------------
// A seeded schedule


class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  weighted<T extends string>(choices: ReadonlyArray<readonly [T, number]>): T {
    const total = choices.reduce((s, [, w]) => s + w, 0);
    let x = this.next() * total;
    for (const [c, w] of choices) {
      if ((x -= w) < 0) return c;
    }
    return choices[choices.length - 1]![0];
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/** A sub-seed per part of the schedule, so that each part's draws do not depend on the others'. */
const subSeed = (seed: number, part: number) => (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(part + 1, 0x85ebca6b)) >>> 0;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------
// Instances

interface Instance {
  index: number;
  name: string;
  skewMs: number;
  url: string;
  proxy: FaultProxy;
  child: ChildProcess;
  stderr: string[];
}

async function startInstance(index: number, dbName: string, seed: number): Promise<Instance> {
  const proxy = await startFaultProxy(mongoUri(), { seed: subSeed(seed, 100 + index) });
  const name = `i${index}`;
  const child = spawn(
    process.execPath,
    ['-r', 'tsx/cjs', '--require', './tools/skew-clock.cjs', 'server/reliability/checker-instance.ts', proxy.uri, dbName, name],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        CK_CLOCK_SKEW_MS: String(SKEWS[index]),
        CK_WEBHOOK_SECRET: WEBHOOK_SECRET,
        CK_ALERT_LEVELS: ALERT_LEVELS.join(','),
        CK_RECHARGE: '1',
        CK_PLANS: JSON.stringify(PLANS),
        // Now and then a journal move fails between its writes (before or after storing the books, after
        // the pull); turned off for the end phase.
        CK_MOVE_CRASHES: process.env.CHECKER_FAULTS === '0' ? '0' : '0.15',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 40) stderr.shift();
  });
  try {
    const port = await readyPort(child, `instance ${name}`, () => `: ${stderr.join('\n')}`);
    return { index, name, skewMs: SKEWS[index]!, url: `http://127.0.0.1:${port}`, proxy, child, stderr };
  } catch (err) {
    child.kill('SIGKILL');
    await proxy.close();
    throw err;
  }
}

async function stopInstance(instance: Instance): Promise<void> {
  const { child } = instance;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  await instance.proxy.close();
}

interface Answer {
  /** HTTP status, or 'error' when no answer came (the client gave up). */
  status: number | 'error';
  body: Record<string, unknown>;
  /** `Idempotent-Replayed: true`: a keyed request's earlier answer, given again. */
  replayed: boolean;
}

async function http(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}, timeoutMs = 10_000): Promise<Answer> {
  try {
    const res = await fetch(url, { method: init.method ?? 'POST', headers: init.headers ?? {}, body: init.body, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = { text };
    }
    return { status: res.status, body, replayed: res.headers.get('idempotent-replayed') === 'true' };
  } catch (err) {
    return { status: 'error', body: { error: String(err) }, replayed: false };
  }
}

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

// ---------------------------------------------------------------------------------------------------------
// What the model records

type Route = 'fixed' | 'metered' | 'stream';
type MeteredFail = 'none' | 'before-settle' | 'after-settle';
/** A streamed answer (/ai/stream): whole, failed after its headers before any byte, or failed after settling. */
type StreamFail = 'none' | 'error-first' | 'error-later';

interface RequestRecord {
  /** The x-req id: one per attempt. */
  id: string;
  route: Route;
  instance: number;
  user: string;
  fail: boolean | MeteredFail | StreamFail;
  used?: number;
  /** The Idempotency-Key header, when sent. */
  key?: string;
  status: number | 'error';
  chargeId?: string;
  charged?: number;
  /** The answer was a replay of an earlier attempt's (Idempotent-Replayed), with this body. */
  replayed?: boolean;
  body?: Record<string, unknown>;
}

interface GrantRecord {
  key: string;
  user: string;
  amount: number;
  /** Grant terms, sent the same on every attempt. */
  terms: { source?: string; priority?: number; expiresAt?: string; rollover?: { max: number; expiresAt?: string } };
  attempts: Array<{ instance: number; status: number | 'error'; granted?: boolean }>;
}

/** One revocation (one ledger key): its grant, and what each call answered. */
interface RevokeRecord {
  user: string;
  grant: string;
  /** The caller's key, when one was named (else the ledger key is `revoke:<grant>`). */
  key?: string;
  attempts: Array<{ instance: number; status: number | 'error'; revoked?: number }>;
}

interface DeductRecord {
  id: string;
  user: string;
  amount: number;
  key?: string;
  attempts: Array<{ instance: number; status: number | 'error'; deducted?: boolean }>;
}

type PurchaseKind = 'paid' | 'async-paid' | 'async-failed' | 'expired' | 'none';

interface EventRecord {
  id: string;
  type: string;
  payload: string;
  acked: boolean;
  deliveries: Array<{ instance: number; status: number | 'error'; outcome?: Record<string, unknown> }>;
}

interface PurchaseRecord {
  n: string;
  user: string;
  credits: number;
  sessionId: string;
  amountTotal: number;
  paymentIntent: string;
  kind: PurchaseKind;
  /** The true final history, as the generator decided it. */
  refundedFinal: number;
  disputeHeld: number;
  expected: number;
  story: string[];
  events: EventRecord[];
}

/** One paid invoice of a subscription, as the schedule sent it. */
interface SubInvoice {
  id: string;
  /** The period's own invoice, a re-issued one for the same period (its start or end drifted), or an upgrade's proration. */
  kind: 'base' | 'reissue' | 'upgrade';
  period: number;
  /** The plan of its positive line (an upgrade's new plan); an upgrade's `from` is the plan it leaves. */
  plan: PlanId;
  from?: PlanId;
  start: number;
  end: number;
  amount: number;
  pi: string;
  /** The grant key the kit grants under when this invoice is the one that claims its grant. */
  key: string;
}

interface SubscriptionModel {
  n: string;
  user: string;
  ref: string;
  subscriptionId: string;
  /** Each billing period, with every plan paid for in it (its own, and each upgrade's old and new). */
  periods: Array<{ start: number; end: number; paid: PlanId[] }>;
  invoices: SubInvoice[];
  /** Payments with a refund or a dispute (not won, not warning_closed) in Stripe's history: what they paid for is taken back. */
  takenBack: Set<string>;
  /** Stripe's final truth: the newest subscription state sent. */
  final: { plan: PlanId; start: number; end: number; status: string; endedAt: number | null; cancelAtPeriodEnd: boolean };
  /** Cancelled: at the end of period `period` (cancel_at_period_end, then deleted at its end) or `now`, mid-period at `endedAt`. */
  cancel?: { mode: 'period-end' | 'now'; period: number; endedAt: number };
  /** Invoices for a period after the subscription ended, sent once its deletion was acknowledged: they must grant nothing. */
  afterEnd: SubInvoice[];
  /** What POST /credits/subscribe answered once every event was in (201 once cancelled, else 409: the slot is held). */
  subscribeAgain?: number | 'error';
  story: string[];
  events: EventRecord[];
}

/** round(credits × part / whole), half up, in integers: as the kit's contract states it. */
const proportion = (credits: number, part: number, whole: number) => Math.floor((2 * credits * part + whole) / (2 * whole));

// ---------------------------------------------------------------------------------------------------------
// The checker

it('keeps every money rule under faults, skewed clocks and Stripe chaos across three instances', async () => {
  const seed = process.env.CHECKER_SEED ? Number(process.env.CHECKER_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 31);
  const tag = `[checker seed=${seed}]`;
  console.log(`${tag} starting; replay with CHECKER_SEED=${seed}`);
  const stripe = stripeMockClient();
  const connection: Connection = await connect();
  const dbName = connection.name;
  const instances: Instance[] = [];
  const started = Date.now();

  const requests: RequestRecord[] = [];
  const grants = new Map<string, GrantRecord>();
  const deducts = new Map<string, DeductRecord>();
  const revokes = new Map<string, RevokeRecord>();
  const purchases: PurchaseRecord[] = [];
  const ops: Record<string, Record<string, number>> = {};
  const count = (kind: string, status: number | string) => {
    ops[kind] ??= {};
    ops[kind]![String(status)] = (ops[kind]![String(status)] ?? 0) + 1;
  };
  const faultLog: Record<string, number> = {};
  const fault = (what: string) => (faultLog[what] = (faultLog[what] ?? 0) + 1);

  try {
    // Each instance is kept as soon as it is up, so that one that fails to start leaves none running.
    const starting = await Promise.allSettled(SKEWS.map(async (_, i) => (instances[i] = await startInstance(i, dbName, seed))));
    for (const r of starting) if (r.status === 'rejected') throw r.reason;
    const inst = (i: number) => instances[i]!;
    const other = (rng: Rng, i: number) => (i + rng.int(1, instances.length - 1)) % instances.length;

    // Opening balances, before any fault.
    for (const user of USERS) {
      const key = `open-${user}`;
      const amount = 60;
      const a = await http(`${inst(0).url}/admin/grant`, json({ user, amount, key }));
      if (a.status !== 200) throw new Error(`${tag} opening grant failed: ${a.status} ${JSON.stringify(a.body)}`);
      grants.set(key, { key, user, amount, terms: {}, attempts: [{ instance: 0, status: 200, granted: a.body.granted as boolean }] });
    }
    // Every user opted in to auto-recharge with a card on file, as the routes would leave them.
    const monthNow = new Date().toISOString().slice(0, 7);
    await connection.getClient().db(dbName).collection('credit_recharges').insertMany(
      USERS.map((user) => ({
        _id: user as never,
        enabled: true,
        threshold: RECHARGE_THRESHOLD,
        topUp: { bundle: null, credits: 50, amount: 500, currency: 'usd' },
        customerId: 'cus_checker',
        card: { paymentMethodId: 'pm_checker', brand: 'visa', last4: '4242', expMonth: 12, expYear: 2040, savedAt: new Date() },
        setupSessions: [],
        state: 'idle',
        attempt: null,
        declines: 0,
        crossingSeq: 0,
        lastAttemptAt: null,
        month: { key: monthNow, credits: 0 },
        lastResult: null,
        updatedAt: new Date(),
        version: 1,
      })),
    );

    const loadEnd = Date.now() + LOAD_MS;
    const faultsEnd = loadEnd - 1000;

    // ----- guarded requests -----
    const guarded = async (rec: Omit<RequestRecord, 'status'>): Promise<RequestRecord> => {
      const headers: Record<string, string> = { 'x-user': rec.user, 'x-req': rec.id };
      if (rec.key) headers['idempotency-key'] = rec.key;
      if (rec.route === 'fixed' && rec.fail === true) headers['x-fail'] = '1';
      if (rec.route === 'metered') {
        headers['x-used'] = String(rec.used);
        if (rec.fail !== 'none') headers['x-fail'] = String(rec.fail);
      }
      const a = await http(`${inst(rec.instance).url}/ai/${rec.route}`, { headers });
      const done: RequestRecord = { ...rec, status: a.status, body: a.body, ...(a.replayed ? { replayed: true } : {}) };
      if (typeof a.body.chargeId === 'string') done.chargeId = a.body.chargeId;
      if (typeof a.body.charged === 'number') done.charged = a.body.charged;
      requests.push(done);
      count(rec.route, a.status);
      return done;
    };

    /**
     * A metered stream, read as server-sent events: its first event names the charge and its last one what was
     * charged. Answered 200 only when that last event came; a stream cut short is `error` (the checks below
     * judge it by what its route did).
     */
    const streamed = async (rec: Omit<RequestRecord, 'status'>): Promise<RequestRecord> => {
      const headers: Record<string, string> = { 'x-user': rec.user, 'x-req': rec.id, 'x-used': String(rec.used) };
      if (rec.fail !== 'none') headers['x-fail'] = String(rec.fail);
      let status: RequestRecord['status'] = 'error';
      const events: Array<Record<string, unknown>> = [];
      try {
        const res = await fetch(`${inst(rec.instance).url}/ai/stream`, { method: 'POST', headers, signal: AbortSignal.timeout(10_000) });
        status = res.status;
        const text = await res.text();
        for (const part of text.split('\n\n')) if (part.startsWith('data: ')) events.push(JSON.parse(part.slice('data: '.length)) as Record<string, unknown>);
        if (status === 200 && events.at(-1)?.done !== true) status = 'error';
      } catch {
        if (status === 200) status = 'error'; // cut mid-stream
      }
      const done: RequestRecord = { ...rec, status, body: { events: events.length } };
      if (typeof events[0]?.chargeId === 'string') done.chargeId = events[0].chargeId;
      if (typeof events.at(-1)?.charged === 'number') done.charged = events.at(-1)!.charged as number;
      requests.push(done);
      count('stream', status);
      return done;
    };
    const streamOp = async (rng: Rng, w: number, n: number) => {
      const fail = rng.weighted<StreamFail>([
        ['none', 60],
        ['error-first', 20],
        ['error-later', 20],
      ]);
      await streamed({ id: `s${w}-${n}-0`, route: 'stream', user: rng.pick(USERS), instance: rng.int(0, instances.length - 1), fail, used: rng.int(0, 16) });
    };

    const guardedOp = async (rng: Rng, w: number, n: number, route: Route) => {
      const user = rng.pick(USERS);
      const instance = rng.int(0, instances.length - 1);
      const fail: RequestRecord['fail'] =
        route === 'fixed'
          ? rng.chance(0.2)
          : rng.weighted<MeteredFail>([
              ['none', 60],
              ['before-settle', 20],
              ['after-settle', 20],
            ]);
      const used = rng.int(0, 16);
      const keyed = rng.chance(0.4);
      const racing = rng.chance(0.12);
      const retryAfter503 = rng.chance(0.75);
      const resendAfter200 = rng.chance(0.12);
      const key = keyed ? `rk-${w}-${n}` : undefined;
      const base = { route, user, fail, ...(route === 'metered' ? { used } : {}), ...(key ? { key } : {}) };
      const first = { ...base, id: `r${w}-${n}-0`, instance };
      if (key && racing) {
        // The same key at two instances at once.
        await Promise.all([guarded(first), guarded({ ...base, id: `r${w}-${n}-1`, instance: other(rng, instance) })]);
        return;
      }
      const a = await guarded(first);
      if (!key) return;
      if ((a.status === 503 || a.status === 'error') && retryAfter503) {
        await sleep(rng.int(0, 300));
        const b = await guarded({ ...base, id: `r${w}-${n}-1`, instance: other(rng, instance) });
        if (b.status === 503 && rng.chance(0.5)) await guarded({ ...base, id: `r${w}-${n}-2`, instance: rng.int(0, instances.length - 1) });
      } else if (a.status === 200 && resendAfter200) {
        await guarded({ ...base, id: `r${w}-${n}-1`, instance: other(rng, instance) });
      }
    };

    // ----- grants -----
    const grantAttempt = async (g: GrantRecord, instance: number) => {
      const a = await http(`${inst(instance).url}/admin/grant`, json({ user: g.user, amount: g.amount, key: g.key, ...g.terms }));
      g.attempts.push({ instance, status: a.status, ...(typeof a.body.granted === 'boolean' ? { granted: a.body.granted } : {}) });
      count('grant', a.status);
    };
    const grantOp = async (rng: Rng, w: number, n: number, mine: GrantRecord[]) => {
      const resend = mine.length > 0 && rng.chance(0.35);
      const twice = rng.chance(0.3);
      const instance = rng.int(0, instances.length - 1);
      const g: GrantRecord = resend ? rng.pick(mine) : { key: `g-${w}-${n}`, user: rng.pick(USERS), amount: rng.int(5, 40), terms: grantTerms(rng), attempts: [] };
      if (!resend) {
        grants.set(g.key, g);
        mine.push(g);
      }
      if (twice) await Promise.all([grantAttempt(g, instance), grantAttempt(g, other(rng, instance))]);
      else await grantAttempt(g, instance);
    };

    // ----- grant terms and expiry -----
    // Half the grants expire, 5-30 minutes ahead (later than any instance's skew, so every instance takes
    // them as in the future); the expiry sweep is driven with a simulated clock up to 40 minutes ahead.
    function grantTerms(rng: Rng): GrantRecord['terms'] {
      const terms: GrantRecord['terms'] = {};
      if (rng.chance(0.5)) terms.expiresAt = new Date(started + rng.int(5, 30) * 60_000).toISOString();
      if (rng.chance(0.5)) terms.priority = rng.int(0, 100);
      if (rng.chance(0.5)) terms.source = rng.pick(['promotion', 'subscription', 'admin']);
      // Some expiring grants roll over up to `max` of their rest, into a grant that may expire within the run too.
      if (terms.expiresAt && rng.chance(0.4)) {
        const max = rng.int(0, 20);
        terms.rollover = rng.chance(0.5) ? { max, expiresAt: new Date(Date.parse(terms.expiresAt) + rng.int(1, 10) * 60_000).toISOString() } : { max };
      }
      return terms;
    }
    let latestSweep = 0;
    const sweepAt = async (now: number, instance: number) => {
      latestSweep = Math.max(latestSweep, now);
      const a = await http(`${inst(instance).url}/admin/expire`, json({ now: new Date(now).toISOString() }));
      count('expire', a.status);
    };
    const expireOp = async (rng: Rng) => {
      const now = started + rng.int(0, 40) * 60_000;
      await sweepAt(now, rng.int(0, instances.length - 1));
    };

    // ----- revokeGrant -----
    // A grant made in the run (the opening balances are left alone), or the rollover grant of one, revoked
    // under its default key or one of two keys of its own; sometimes from two instances at once, and after
    // an error, a 503 or a 409 again on another instance.
    const revokeAttempt = async (r: RevokeRecord, instance: number) => {
      const a = await http(`${inst(instance).url}/admin/revoke`, json({ user: r.user, grant: r.grant, ...(r.key ? { key: r.key } : {}), reason: 'checker revoke' }));
      r.attempts.push({ instance, status: a.status, ...(typeof a.body.revoked === 'number' ? { revoked: a.body.revoked } : {}) });
      count('revoke', a.status);
      return a;
    };
    const revokeOp = async (rng: Rng) => {
      const made = [...grants.values()].filter((g) => !g.key.startsWith('open-'));
      if (made.length === 0) return;
      const g = rng.pick(made);
      const grant = g.terms.rollover && rng.chance(0.4) ? `rollover:${grantKey(g.key)}` : grantKey(g.key);
      const key = rng.chance(0.5) ? undefined : `rk-${rng.int(0, 1)}-${grant}`;
      const id = `${g.user}\n${key ? `revoke:${key}` : `revoke:${grant}`}`;
      const r = revokes.get(id) ?? { user: g.user, grant, ...(key ? { key } : {}), attempts: [] };
      revokes.set(id, r);
      const instance = rng.int(0, instances.length - 1);
      if (rng.chance(0.3)) {
        await Promise.all([revokeAttempt(r, instance), revokeAttempt(r, other(rng, instance))]);
        return;
      }
      const a = await revokeAttempt(r, instance);
      if (a.status !== 200 && rng.chance(0.7)) await revokeAttempt(r, other(rng, instance));
    };

    // ----- deductCredits -----
    const deductAttempt = async (d: DeductRecord, instance: number) => {
      const a = await http(`${inst(instance).url}/admin/deduct`, json({ user: d.user, amount: d.amount, reason: `checker ${d.id}`, ...(d.key ? { key: d.key } : {}) }));
      d.attempts.push({ instance, status: a.status, ...(typeof a.body.deducted === 'boolean' ? { deducted: a.body.deducted } : {}) });
      count(d.key ? 'deduct-keyed' : 'deduct', a.status);
      return a;
    };
    const deductOp = async (rng: Rng, w: number, n: number, mine: DeductRecord[]) => {
      const keyed = rng.chance(0.5);
      const resend = keyed && mine.length > 0 && rng.chance(0.3);
      const instance = rng.int(0, instances.length - 1);
      const retry = rng.chance(0.8);
      const d: DeductRecord = resend
        ? rng.pick(mine)
        : { id: `d-${w}-${n}`, user: rng.pick(USERS), amount: rng.int(1, 8), ...(keyed ? { key: `dk-${w}-${n}` } : {}), attempts: [] };
      if (!resend) {
        deducts.set(d.id, d);
        if (keyed) mine.push(d);
      }
      const a = await deductAttempt(d, instance);
      // A keyed deduction that failed is retried: the retry learns what the first call did.
      if (d.key && a.status !== 200 && retry) await deductAttempt(d, other(rng, instance));
    };

    // ----- purchases -----
    const deliver = async (e: EventRecord, instance: number) => {
      const { body, headers } = signPayload(stripe, e.payload, { secret: WEBHOOK_SECRET });
      const a = await http(`${inst(instance).url}/api/stripe/webhook`, { headers, body });
      e.deliveries.push({ instance, status: a.status, ...(a.status === 200 ? { outcome: a.body } : {}) });
      if (typeof a.status === 'number' && a.status >= 200 && a.status < 300) e.acked = true;
      count('webhook', a.status);
    };

    const purchaseOp = async (rng: Rng, w: number, n: number) => {
      const user = rng.pick(USERS);
      const credits = rng.pick([10, 25, 50, 100, 120, 333]);
      const kind = rng.weighted<PurchaseKind>([
        ['paid', 68],
        ['async-paid', 9],
        ['async-failed', 7],
        ['expired', 8],
        ['none', 8],
      ]);
      const checkoutAt = [0, 1, 2].map(() => rng.int(0, instances.length - 1)); // drawn first: the plan does not depend on outcomes
      let created: { id: string; amount: number } | undefined;
      for (let attempt = 0; attempt < 3 && !created; attempt++) {
        const a = await http(`${inst(checkoutAt[attempt]!).url}/api/stripe/checkout/credits`, json({ quantity: credits }, { 'x-user': user }));
        count('checkout', a.status);
        if (a.status === 201 && typeof a.body.id === 'string' && typeof a.body.amount === 'number') created = { id: a.body.id, amount: a.body.amount };
      }
      if (!created) return;
      const p: PurchaseRecord = {
        n: `p-${w}-${n}`,
        user,
        credits,
        sessionId: created.id,
        amountTotal: created.amount,
        paymentIntent: `pi_ck_${seed}_${w}_${n}`,
        kind,
        refundedFinal: 0,
        disputeHeld: 0,
        expected: 0,
        story: [kind],
        events: [],
      };
      purchases.push(p);

      // The true history, in order; `created` increases with it.
      let t = Math.floor(Date.now() / 1000) - 3600;
      const ev = (type: string, object: Record<string, unknown>) => {
        t += rng.int(1, 30);
        const id = `evt_ck_${seed}_${w}_${n}_${p.events.length}`;
        const payload = JSON.parse(eventPayload({ id, type, object })) as Record<string, unknown>;
        payload.created = t;
        p.events.push({ id, type, payload: JSON.stringify(payload), acked: false, deliveries: [] });
        return t;
      };
      const session = (overrides: Record<string, unknown>) =>
        checkoutSession(user, credits, { id: p.sessionId, amount_total: p.amountTotal, payment_intent: p.paymentIntent, ...overrides });
      if (kind === 'paid') ev('checkout.session.completed', session({}));
      if (kind === 'async-paid' || kind === 'async-failed') {
        ev('checkout.session.completed', session({ payment_status: 'unpaid' }));
        if (kind === 'async-paid') ev('checkout.session.async_payment_succeeded', session({ payment_status: 'paid' }));
        else ev('checkout.session.async_payment_failed', session({ payment_status: 'unpaid' }));
      }
      if (kind === 'expired') ev('checkout.session.expired', session({ status: 'expired', payment_status: 'unpaid', payment_intent: null }));

      const paid = kind === 'paid' || kind === 'async-paid';
      if (paid) {
        const A = p.amountTotal;
        const charge = `ch_ck_${seed}_${w}_${n}`;
        // Steps after the payment, in a random order that keeps each refund before its failure and each
        // dispute's opening before its close.
        const nRefunds = rng.weighted<'0' | '1' | '2'>([
          ['0', 45],
          ['1', 35],
          ['2', 20],
        ]);
        const steps: string[] = [];
        for (let r = 0; r < Number(nRefunds); r++) {
          steps.push(`refund${r}`);
          if (rng.chance(0.3)) steps.push(`fail${r}`);
        }
        if (rng.chance(0.3)) {
          steps.push('dispute');
          if (rng.chance(0.75)) steps.push('close');
        }
        rng.shuffle(steps);
        // Restore the required order within each pair.
        const order = (a: string, b: string) => {
          const i = steps.indexOf(a);
          const j = steps.indexOf(b);
          if (i >= 0 && j >= 0 && j < i) [steps[i], steps[j]] = [steps[j]!, steps[i]!];
        };
        for (let r = 0; r < 2; r++) order(`refund${r}`, `fail${r}`);
        order('dispute', 'close');

        let live = 0;
        const refunds: Array<{ id: string; amount: number; created: number; failed: boolean } | null> = [];
        let dispute: { id: string; amount: number; status: string } | null = null;
        for (const step of steps) {
          if (step.startsWith('refund')) {
            const r = Number(step.slice(6));
            const room = A - live;
            if (room <= 0) {
              refunds[r] = null;
              continue;
            }
            const amount = rng.chance(0.25) ? room : rng.int(1, room);
            live += amount;
            const at = ev('charge.refunded', { id: charge, object: 'charge', amount: A, amount_refunded: live, refunded: live === A, payment_intent: p.paymentIntent, currency: 'usd' });
            const refund = { id: `re_ck_${seed}_${w}_${n}_${r}`, amount, created: at, failed: false };
            refunds[r] = refund;
            p.story.push(`refund ${amount} (cumulative ${live})`);
            if (rng.chance(0.4)) {
              ev('charge.refund.updated', { id: refund.id, object: 'refund', amount, status: 'succeeded', created: at, payment_intent: p.paymentIntent, charge, currency: 'usd' });
            }
          } else if (step.startsWith('fail')) {
            const refund = refunds[Number(step.slice(4))];
            if (!refund) continue;
            refund.failed = true;
            live -= refund.amount;
            ev('charge.refund.updated', { id: refund.id, object: 'refund', amount: refund.amount, status: 'failed', created: refund.created, payment_intent: p.paymentIntent, charge, currency: 'usd' });
            p.story.push(`refund of ${refund.amount} failed (cumulative ${live})`);
          } else if (step === 'dispute') {
            dispute = { id: `dp_ck_${seed}_${w}_${n}`, amount: rng.chance(0.6) ? A : rng.int(1, A), status: 'needs_response' };
            ev('charge.dispute.created', { id: dispute.id, object: 'dispute', amount: dispute.amount, status: dispute.status, payment_intent: p.paymentIntent, charge, currency: 'usd' });
            p.story.push(`dispute ${dispute.amount} opened`);
          } else if (step === 'close' && dispute) {
            dispute.status = rng.pick(['won', 'lost', 'warning_closed']);
            ev('charge.dispute.closed', { id: dispute.id, object: 'dispute', amount: dispute.amount, status: dispute.status, payment_intent: p.paymentIntent, charge, currency: 'usd' });
            p.story.push(`dispute ${dispute.status}`);
          }
        }
        p.refundedFinal = live;
        p.disputeHeld = dispute && (dispute.status === 'lost' || dispute.status === 'needs_response') ? dispute.amount : 0;
        p.expected = credits - proportion(credits, Math.min(A, p.refundedFinal + p.disputeHeld), A);
      }

      await deliverShuffled(rng, p.events);
    };

    /** Deliveries: each event once to three times, to random instances, shuffled, some at once; then Stripe's retries. */
    const deliverShuffled = async (rng: Rng, events: EventRecord[]) => {
      const copies: Array<{ e: EventRecord; instance: number }> = [];
      for (const e of events) {
        const k = rng.weighted<'1' | '2' | '3'>([
          ['1', 55],
          ['2', 33],
          ['3', 12],
        ]);
        const first = rng.int(0, instances.length - 1);
        for (let c = 0; c < Number(k); c++) copies.push({ e, instance: (first + c) % instances.length }); // copies go to different instances
      }
      rng.shuffle(copies);
      for (let i = 0; i < copies.length; ) {
        const group = rng.chance(0.3) ? rng.int(2, 3) : 1;
        await Promise.all(copies.slice(i, i + group).map((c) => deliver(c.e, c.instance)));
        i += group;
        await sleep(rng.int(0, 60));
      }
      // Stripe retries what was not acknowledged, for a while.
      for (let round = 0; round < 3 && events.some((e) => !e.acked); round++) {
        await sleep(rng.int(200, 600));
        for (const e of events.filter((x) => !x.acked)) await deliver(e, rng.int(0, instances.length - 1));
      }
    };

    // ----- subscriptions -----
    // A few users subscribe (POST /credits/subscribe under faults), then pay SUB_PERIODS periods of the
    // simulated clock: each period's invoice.paid and subscription state, sometimes a re-issued invoice for the
    // same period (its start or end drifted), one or two upgrades' proration invoices mid-period, a refund or
    // dispute of one of the period's payments (delivered in the period or after the next sweep), and between
    // periods a sweep at the period's end (its allowance expires, what its plan rolls over is kept). Every
    // event goes through deliverShuffled, as the purchases' do. The history is drawn before any answer.
    const subscriptions: SubscriptionModel[] = [];
    const subscriptionRun = async (k: number, user: string) => {
      const rng = new Rng(subSeed(seed, 200 + k));
      const first = rng.pick<PlanId>(['basic', 'pro']);
      const subscribeAt = [0, 1, 2, 3].map(() => rng.int(0, instances.length - 1));
      let sessionId: string | undefined;
      for (let attempt = 0; attempt < subscribeAt.length && !sessionId; attempt++) {
        if (attempt > 0) await sleep(400 * attempt);
        const a = await http(`${inst(subscribeAt[attempt]!).url}/api/credits/subscribe`, json({ plan: first }, { 'x-user': user }));
        count('subscribe', a.status);
        if (a.status === 201 && typeof a.body.id === 'string') sessionId = a.body.id;
      }
      // The kit's id for the subscription, which the metadata of its session and subscription carry: from the
      // record the subscribe wrote first (a subscribe that failed after writing it leaves it: the session's
      // completion then links the session).
      const [doc] = (await connection.getClient().db(dbName).collection('credit_subscriptions').find({ userId: user }).sort({ slot: -1 }).limit(1).toArray()) as unknown as Array<{
        _id: string;
        checkoutSessionId: string | null;
      }>;
      if (!doc) return;
      const s: Sub = {
        ref: doc._id,
        userId: user,
        plan: first,
        sessionId: sessionId ?? doc.checkoutSessionId ?? `cs_test_cksub_${seed}_${k}`,
        subscriptionId: `sub_1ck${seed}x${k}`,
        customerId: `cus_1ck${seed}x${k}`,
      };
      const m: SubscriptionModel = {
        n: `sub-${k}`,
        user,
        ref: s.ref,
        subscriptionId: s.subscriptionId,
        periods: [],
        invoices: [],
        takenBack: new Set(),
        final: { plan: first, start: 0, end: 0, status: 'active', endedAt: null, cancelAtPeriodEnd: false },
        afterEnd: [],
        story: [first],
        events: [],
      };
      subscriptions.push(m);

      // Some subscriptions are cancelled (drawn from a generator of their own, so the rest of the schedule is
      // the seed's as before): at the end of a period (cancel_at_period_end in it, then deleted at its end,
      // delivered after its sweep), or at once mid-period (deleted with ended_at then, delivered with the
      // period's other events, in any order). No period follows; once the deletion is acknowledged, an
      // invoice.paid for the next period is sent anyway (Stripe would not bill one: it must grant nothing).
      const cx = new Rng(subSeed(seed, 300 + k));
      const cancelPlan = cx.chance(0.6) ? { mode: cx.pick(['period-end', 'now'] as const), period: cx.int(0, SUB_PERIODS - 1) } : null;
      // The true history, in order (`created` increases with it), in one batch per period and one after the
      // last, and one more for what comes after a cancellation.
      const batches: EventRecord[][] = Array.from({ length: SUB_PERIODS + 2 }, () => []);
      let lateBatch = -1;
      let deletion: EventRecord | undefined;
      let t = Math.floor(Date.now() / 1000) - 3600;
      const ev = (batch: EventRecord[], type: string, object: Record<string, unknown>) => {
        t += rng.int(1, 30);
        const id = `evt_cksub_${seed}_${k}_${m.events.length}`;
        const payload = JSON.parse(eventPayload({ id, type, object })) as Record<string, unknown>;
        payload.created = t;
        const e: EventRecord = { id, type, payload: JSON.stringify(payload), acked: false, deliveries: [] };
        m.events.push(e);
        batch.push(e);
      };
      const state = (batch: EventRecord[], type: string, plan: PlanId, p: { start: number; end: number }, end: { status?: string; endedAt?: number; cancelAtPeriodEnd?: boolean } = {}) => {
        ev(batch, type, subscription(s, { price: PLANS[plan].price, start: p.start, end: p.end, ...end }));
        m.final = { plan, start: p.start, end: p.end, status: end.status ?? 'active', endedAt: end.endedAt ?? null, cancelAtPeriodEnd: end.cancelAtPeriodEnd ?? false };
      };
      const paid = (batch: EventRecord[], inv: SubInvoice, lines: InvoiceLine[], billingReason: string) => {
        m.invoices.push(inv);
        ev(batch, 'invoice.paid', invoice(s, lines, { id: inv.id, billingReason, paymentIntent: inv.pi }));
      };
      ev(batches[0]!, 'checkout.session.completed', sessionCompleted(s));
      const base = Math.floor(started / 1000) - 120;
      let plan = first;
      for (let i = 0; i < SUB_PERIODS; i++) {
        const batch = batches[i]!;
        const start = base + i * SUB_PERIOD_S;
        const end = start + SUB_PERIOD_S;
        const period = { start, end, paid: [plan] };
        m.periods.push(period);
        state(batch, i === 0 ? 'customer.subscription.created' : 'customer.subscription.updated', plan, period);
        const id = `in_ck_${seed}_${k}_${i}`;
        const pi = `pi_cksub_${seed}_${k}_${i}`;
        paid(batch, { id, kind: 'base', period: i, plan, start, end, amount: PLAN_CENTS[plan], pi, key: periodKey(s.subscriptionId, start) }, [{ price: PLANS[plan].price, amount: PLAN_CENTS[plan], start, end }], i === 0 ? 'subscription_create' : 'subscription_cycle');
        if (rng.chance(0.3)) {
          const how = rng.pick(['start', 'end', 'both'] as const);
          const drift = { start: how === 'end' ? start : start + rng.int(1, 30), end: how === 'start' ? end : end + rng.int(60, 600) };
          paid(batch, { id: `${id}_r`, kind: 'reissue', period: i, plan, ...drift, amount: PLAN_CENTS[plan], pi: `${pi}_r`, key: periodKey(s.subscriptionId, drift.start) }, [{ price: PLANS[plan].price, amount: PLAN_CENTS[plan], ...drift }], 'manual');
          m.story.push(`p${i} re-issued (${drift.start - start}s, ${drift.end - end}s)`);
        }
        let mid = start + rng.int(60, SUB_PERIOD_S / 2);
        for (let u = 1; u <= 2 && plan !== 'max' && rng.chance(u === 1 ? 0.4 : 0.35); u++) {
          const from = plan;
          const to = PLAN_ORDER[rng.int(PLAN_ORDER.indexOf(from) + 1, PLAN_ORDER.length - 1)]!;
          const credit = Math.round((PLAN_CENTS[from] * (end - mid)) / SUB_PERIOD_S);
          const charge = Math.round((PLAN_CENTS[to] * (end - mid)) / SUB_PERIOD_S);
          paid(
            batch,
            { id: `${id}_u${u}`, kind: 'upgrade', period: i, plan: to, from, start: mid, end, amount: charge, pi: `${pi}_u${u}`, key: upgradeKey(s.subscriptionId, end, to) },
            [
              { price: PLANS[from].price, amount: -credit, start: mid, end },
              { price: PLANS[to].price, amount: charge, start: mid, end },
            ],
            'subscription_update',
          );
          state(batch, 'customer.subscription.updated', to, period);
          period.paid.push(to);
          m.story.push(`p${i} ${from}→${to}`);
          plan = to;
          mid += rng.int(10, 60);
        }
        if (rng.chance(0.4)) {
          // One of the period's payments refunded (partly or in full) or disputed, delivered now or after the sweep.
          const target = rng.pick(m.invoices.filter((x) => x.period === i));
          const later = batches[rng.chance(0.5) ? i : i + 1]!;
          const charge = `ch_cksub_${seed}_${k}_${i}`;
          if (rng.chance(0.6)) {
            const refunded = rng.chance(0.5) ? target.amount : rng.int(1, target.amount - 1);
            ev(later, 'charge.refunded', { id: charge, object: 'charge', amount: target.amount, amount_refunded: refunded, refunded: refunded === target.amount, payment_intent: target.pi, currency: 'usd' });
            m.story.push(`p${i} ${target.kind} ${target.id} refunded ${refunded}`);
          } else {
            const dispute = { id: `dp_cksub_${seed}_${k}_${i}`, object: 'dispute', amount: target.amount, payment_intent: target.pi, charge, currency: 'usd' };
            ev(later, 'charge.dispute.created', { ...dispute, status: 'needs_response' });
            const closed = rng.pick(['open', 'won', 'lost'] as const);
            if (closed !== 'open') ev(later, 'charge.dispute.closed', { ...dispute, status: closed });
            m.story.push(`p${i} ${target.kind} ${target.id} disputed (${closed})`);
          }
          m.takenBack.add(target.pi);
        }
        if (cancelPlan?.period === i) {
          if (cancelPlan.mode === 'period-end') {
            state(batch, 'customer.subscription.updated', plan, period, { cancelAtPeriodEnd: true });
            state(batches[i + 1]!, 'customer.subscription.deleted', plan, period, { status: 'canceled', cancelAtPeriodEnd: true, endedAt: end });
            deletion = m.events[m.events.length - 1];
            m.cancel = { mode: 'period-end', period: i, endedAt: end };
            lateBatch = i + 2;
          } else {
            // After the period's last upgrade (a plan change after the end is impossible), before its end.
            const endedAt = Math.min(end - 30, mid + cx.int(5, 60));
            state(batch, 'customer.subscription.deleted', plan, period, { status: 'canceled', endedAt });
            deletion = m.events[m.events.length - 1];
            m.cancel = { mode: 'now', period: i, endedAt };
            lateBatch = i + 1;
            if (cx.chance(0.5)) {
              // The final invoice, paid after the deletion: for the current period, which it already holds.
              const p0 = period.paid[0]!;
              paid(batch, { id: `${id}_f`, kind: 'reissue', period: i, plan: p0, start, end, amount: PLAN_CENTS[p0], pi: `${pi}_f`, key: periodKey(s.subscriptionId, start) }, [{ price: PLANS[p0].price, amount: PLAN_CENTS[p0], start, end }], 'subscription_cycle');
              m.story.push(`p${i} final invoice`);
            }
          }
          m.story.push(`p${i} cancelled ${cancelPlan.mode === 'now' ? `now (at +${m.cancel.endedAt - start}s)` : 'at period end'}`);
          const next = { start: end, end: end + SUB_PERIOD_S };
          const late: SubInvoice = { id: `${id}_late`, kind: 'base', period: i + 1, plan, start: next.start, end: next.end, amount: PLAN_CENTS[plan], pi: `${pi}_late`, key: periodKey(s.subscriptionId, next.start) };
          m.afterEnd.push(late);
          ev(batches[lateBatch]!, 'invoice.paid', invoice(s, [{ price: PLANS[plan].price, amount: PLAN_CENTS[plan], ...next }], { id: late.id, billingReason: 'subscription_cycle', paymentIntent: late.pi }));
          break;
        }
        // At the renewal, sometimes a downgrade: the next period's invoice is for a smaller plan.
        if (i + 1 < SUB_PERIODS && plan !== 'basic' && rng.chance(0.25)) {
          plan = PLAN_ORDER[rng.int(0, PLAN_ORDER.indexOf(plan) - 1)]!;
          m.story.push(`p${i + 1} down to ${plan}`);
        }
      }
      for (let i = 0; i < batches.length; i++) {
        if (i > 0 && i <= m.periods.length) {
          // The period's end on the simulated clock: its allowance expires, its plan's rollover is kept.
          const now = (m.periods[i - 1]!.end + rng.int(5, 120)) * 1000;
          const at = rng.int(0, instances.length - 1);
          await Promise.all((rng.chance(0.3) ? [at, other(rng, at)] : [at]).map((x) => sweepAt(now, x)));
        }
        if (i === lateBatch && deletion) {
          // Stripe retries the deletion until acknowledged; the late invoice is sent only after that (never, if
          // it is not acknowledged in time: then it is no event of the history at all).
          for (let n = 0; n < 40 && !deletion.acked; n++) {
            await sleep(300);
            await deliver(deletion, cx.int(0, instances.length - 1));
          }
          if (!deletion.acked) {
            const lateIds = new Set(batches[i]!.map((e) => e.id));
            m.events = m.events.filter((e) => !lateIds.has(e.id));
            m.afterEnd = [];
            m.story.push('late invoice not sent (deletion not acknowledged)');
            continue;
          }
        }
        await deliverShuffled(rng, batches[i]!);
      }
    };

    // ----- a live audit: at any moment the listed entries add up to the balance the first page reports -----
    const audits: Array<{ user: string; instance: number; balance: number; sum: number; entries: number; seqs: number[] }> = [];
    const auditOp = async (rng: Rng) => {
      const user = rng.pick(USERS);
      const instance = rng.int(0, instances.length - 1);
      let cursor: string | null = null;
      let balance: number | undefined;
      let sum = 0;
      const seqs: number[] = [];
      for (let page = 0; page < 50; page++) {
        const a = await http(`${inst(instance).url}/api/credits/transactions?limit=100${cursor ? `&cursor=${cursor}` : ''}`, { method: 'GET', headers: { 'x-user': user } });
        count('audit-page', a.status);
        if (a.status !== 200) return; // unavailable: no audit this time
        const body = a.body as { balance: number; nextCursor: string | null; transactions: Array<{ amount: number; seq: number }> };
        balance ??= body.balance;
        for (const t of body.transactions) {
          sum += t.amount;
          seqs.push(t.seq);
        }
        cursor = body.nextCursor;
        if (!cursor) break;
      }
      audits.push({ user, instance, balance: balance ?? 0, sum, entries: seqs.length, seqs });
    };

    // ----- the workers -----
    const worker = async (w: number) => {
      const rng = new Rng(subSeed(seed, w));
      const myGrants: GrantRecord[] = [];
      const myDeducts: DeductRecord[] = [];
      for (let n = 0; n < MAX_OPS_PER_WORKER && Date.now() < loadEnd; n++) {
        // Each operation draws from its own generator, seeded from the worker's: the sequence of operations
        // (kinds, users, instances, keys, amounts, histories) is the seed's alone, whatever the answers were.
        const opRng = new Rng((rng.float() * 2 ** 32) >>> 0);
        const op = rng.weighted([
          ['grant', 12],
          ['fixed', 28],
          ['metered', 26],
          ['stream', 10],
          ['deduct', 15],
          ['purchase', 7],
          ['reconcile', 1.5],
          ['expire', 2],
          ['revoke', 4],
          ['audit', 2],
          ['pause', 3],
        ] as const);
        if (op === 'grant') await grantOp(opRng, w, n, myGrants);
        else if (op === 'fixed' || op === 'metered') await guardedOp(opRng, w, n, op);
        else if (op === 'stream') await streamOp(opRng, w, n);
        else if (op === 'deduct') await deductOp(opRng, w, n, myDeducts);
        else if (op === 'purchase') await purchaseOp(opRng, w, n);
        else if (op === 'expire') await expireOp(opRng);
        else if (op === 'revoke') await revokeOp(opRng);
        else if (op === 'reconcile') {
          // Recovery running while everything else does (on the +70 s instance every claim looks stale).
          const a = await http(`${inst(opRng.int(0, instances.length - 1)).url}/admin/reconcile`);
          count('reconcile', a.status);
        } else if (op === 'audit') await auditOp(opRng);
        else await sleep(opRng.int(20, 200));
      }
    };

    // ----- the faults: one schedule per proxy -----
    const faults = async (i: number) => {
      const rng = new Rng(subSeed(seed, 50 + i));
      const proxy = inst(i).proxy;
      await sleep(rng.int(300, 1500));
      while (Date.now() < faultsEnd) {
        await sleep(rng.int(200, 1500)); // a quiet gap between faults
        if (Date.now() >= faultsEnd) break;
        const action = rng.weighted([
          ['random', 26],
          ['slow', 14],
          ['stall-instance', 9],
          ['stall-replies', 10],
          ['drop-replies', 14],
          ['reset-all', 9],
          ['quiet', 18],
        ] as const);
        const ms = Math.min(rng.int(1500, 4500), Math.max(0, faultsEnd - Date.now()));
        fault(action);
        if (action === 'random') {
          proxy.random({
            stallProbability: 0.03,
            stallMs: [200, 2500],
            dropReplyProbability: 0.015,
            resetProbability: 0.004,
            delayMs: [0, 15],
          });
          await sleep(ms);
          proxy.random(null);
        } else if (action === 'slow') {
          // A slow database: calls that each finish within timeoutMs but together outlast it, and now and
          // then one that does not (a charge that lands after its request was refused, and its give-back).
          proxy.random({ delayMs: [150, 900], stallProbability: 0.08, stallMs: [1200, 2600] });
          await sleep(ms);
          proxy.random(null);
        } else if (action === 'stall-instance') {
          // Longer than the claim lease: holders outlive their leases; their late writes land or are fenced.
          proxy.stall();
          await sleep(rng.int(LEASE_MS + 300, LEASE_MS + 1500));
          proxy.release();
        } else if (action === 'stall-replies') {
          proxy.stallReplies();
          await sleep(rng.int(400, 2500));
          proxy.releaseReplies();
        } else if (action === 'drop-replies') {
          proxy.dropNextReplies(rng.int(1, 4));
          await sleep(ms / 2);
        } else if (action === 'reset-all') {
          proxy.resetAll();
          await sleep(ms / 3);
        } else await sleep(ms);
      }
    };

    // CHECKER_FAULTS=0: the same schedule with no faults (to tell a fault's doing from the schedule's).
    const faultRuns = process.env.CHECKER_FAULTS === '0' ? [] : instances.map((_, i) => faults(i));
    const subscribers = new Rng(subSeed(seed, 199)).shuffle([...USERS]).slice(0, SUBSCRIBERS);
    await Promise.all([...Array.from({ length: WORKERS }, (_, w) => worker(w)), ...subscribers.map((user, k) => subscriptionRun(k, user))]);
    await Promise.all(faultRuns);

    // ----- end phase: no more faults; Stripe retries until acknowledged; recovery -----
    for (const i of instances) {
      i.proxy.random(null);
      i.proxy.dropNextReplies(0);
      i.proxy.release();
      i.proxy.releaseReplies();
      const off = await http(`${i.url}/admin/move-crashes`, json({ chance: 0 }));
      if (off.status !== 200) throw new Error(`${tag} /admin/move-crashes on ${i.name} answered ${off.status}: ${JSON.stringify(off.body)}`);
    }
    const endRng = new Rng(subSeed(seed, 999));
    const allEvents = () => [...purchases.flatMap((p) => p.events), ...subscriptions.flatMap((m) => m.events)];
    for (let round = 0; round < 20 && allEvents().some((e) => !e.acked); round++) {
      if (round > 0) await sleep(250);
      await Promise.all(allEvents().filter((e) => !e.acked).map((e) => deliver(e, endRng.int(0, instances.length - 1))));
    }
    // A subscription that ended frees its user's slot: subscribing again opens a checkout (201); a live one
    // still holds it (409).
    const againRng = new Rng(subSeed(seed, 998));
    for (const m of subscriptions) {
      for (let attempt = 0; attempt < 6; attempt++) {
        if (attempt > 0) await sleep(300);
        const a = await http(`${inst(againRng.int(0, instances.length - 1)).url}/api/credits/subscribe`, json({ plan: 'basic' }, { 'x-user': m.user }));
        count('subscribe-again', a.status);
        m.subscribeAgain = a.status;
        if (a.status === 201 || a.status === 409) break;
      }
    }
    const everyInstance = async (path: string) => {
      const answers = await Promise.all(instances.map((i) => http(`${i.url}${path}`, {}, 60_000)));
      answers.forEach((a, k) => {
        if (a.status !== 200) throw new Error(`${tag} ${path} on ${inst(k).name} answered ${a.status}: ${JSON.stringify(a.body)}`);
      });
      return answers.map((a) => a.body);
    };
    await everyInstance('/admin/flush');
    const reconcile1 = await everyInstance('/admin/reconcile');
    await sleep(LEASE_MS + 700);
    const reconcile2 = await everyInstance('/admin/reconcile');
    await everyInstance('/admin/flush');
    const flushed = await everyInstance('/admin/flush');

    const backgroundErrorLog: string[] = [];
    /** How the instances say they answered each guarded request (status, ms). */
    const answered = new Map<string, { instance: number; status: number; ms: number }>();
    const runs = new Map<string, { instance: number; runs: number; route: string; chargeIds: string[]; reserved: number; settles: Array<{ used: number; charged?: number; error?: string }> }>();
    for (const i of instances) {
      const a = await http(`${i.url}/admin/runs`, { method: 'GET' });
      const body = a.body as {
        backgroundErrorLog: string[];
        runs: Record<string, { runs: number; route: string; chargeIds: string[]; reserved: number; settles: [] }>;
        answers: Record<string, { status: number; ms: number }>;
      };
      backgroundErrorLog.push(...body.backgroundErrorLog.map((l) => `${i.name} ${l}`));
      for (const [id, answer] of Object.entries(body.answers)) answered.set(id, { instance: i.index, ...answer });
      for (const [id, r] of Object.entries(body.runs)) {
        const seen = runs.get(id);
        if (seen) seen.runs += r.runs; // the same request id ran on two instances: impossible, caught below
        else runs.set(id, { instance: i.index, ...r });
      }
    }

    // ----- read the database directly -----
    const db = connection.getClient().db(dbName);
    type Part = { grant: string; amount: number; expiresAt?: Date };
    type Entry = { _id: string; userId: string; kind: string; amount: number; key?: string; reason?: string; ref?: Record<string, unknown>; seq?: number; balanceAfter?: number; grants?: Part[]; debt?: number; from?: string };
    const ledgerDocs = (await db.collection('credit_ledger').find({}).toArray()) as unknown as Entry[];
    const accounts = (await db.collection('credit_accounts').find({}).toArray()) as unknown as Array<{
      _id: string;
      balance?: number;
      count?: number;
      journal?: Array<Omit<Entry, '_id' | 'userId'> & { id: string }>;
      book?: { seq: number; debt: number; grants: Array<{ id: string; remaining: number }> };
    }>;
    // The grant books: their own documents (a book still on an account is one an old kit kept there).
    const bookDocs = (await db.collection('credit_books').find({}).toArray()) as unknown as Array<{ _id: string; seq: number; debt: number; grants: Array<{ id: string; remaining: number }> }>;
    const bookOf = new Map(bookDocs.map((b) => [b._id, b]));
    const claims = (await db.collection('credit_claims').find({}).toArray()) as unknown as Array<{ _id: string; state: string; key: string; createdAt: Date; entryId: string }>;
    const purchaseDocs = (await db.collection('credit_purchases').find({}).toArray()) as unknown as Array<{ _id: string; pendingAdjustments?: unknown[]; granted?: number; status?: string }>;

    const violations: string[] = [];
    const checked: Record<string, number> = {};
    const check = (invariant: string, ok: boolean, detail: () => string) => {
      checked[invariant] = (checked[invariant] ?? 0) + 1;
      if (!ok) violations.push(`${invariant}: ${detail()}`);
    };

    // All entries, by id: the ledger collection and whatever journals still hold.
    const entries = new Map<string, Entry & { where: string }>();
    for (const e of ledgerDocs) entries.set(e._id, { ...e, where: 'ledger' });
    for (const a of accounts) {
      for (const j of a.journal ?? []) {
        if (!entries.has(j.id)) entries.set(j.id, { ...j, _id: j.id, userId: a._id, where: 'journal' });
      }
    }
    const all = [...entries.values()];
    const show = (e: Entry) => JSON.stringify({ id: e._id, user: e.userId, kind: e.kind, amount: e.amount, key: e.key, ref: e.ref, reason: e.reason, seq: e.seq });

    // 1. balances = sums; journals empty; sequence numbers 1..n.
    for (const a of accounts) {
      const mine = all.filter((e) => e.userId === a._id);
      const sum = mine.reduce((s, e) => s + e.amount, 0);
      check('1 balance = sum of ledger', (a.balance ?? 0) === sum, () => `${a._id}: balance ${a.balance} but entries sum to ${sum} (${mine.length} entries)`);
      check('1 journal moved', (a.journal ?? []).length === 0, () => `${a._id}: ${(a.journal ?? []).length} journal entries left: ${(a.journal ?? []).map((j) => show({ ...j, _id: j.id, userId: a._id })).join(' ')}`);
      const seqs = ledgerDocs.filter((e) => e.userId === a._id).map((e) => e.seq ?? -1).sort((x, y) => x - y);
      check('1 seq 1..n', (a.count ?? 0) === mine.length && seqs.every((s, k) => s === k + 1), () => `${a._id}: count ${a.count}, ${mine.length} entries, seqs ${seqs.slice(0, 5).join(',')}…`);
    }
    for (const a of accounts) {
      // Each entry's balance-after is the one before it plus its amount, ending at the balance.
      const chain = ledgerDocs.filter((e) => e.userId === a._id).sort((x, y) => (x.seq ?? 0) - (y.seq ?? 0));
      let running = 0;
      const broken = chain.find((e) => (running += e.amount) !== e.balanceAfter);
      check('1 balance-after chains', !broken && running === (a.balance ?? 0), () => `${a._id}: ${broken ? `${show(broken)} says balance-after ${broken.balanceAfter}, the entries before it lead to ${running}` : `entries lead to ${running}, balance ${a.balance}`}`);
    }
    for (const au of audits) {
      const sorted = [...au.seqs].sort((x, y) => y - x);
      const contiguous = sorted.every((s, k) => s === sorted.length - k);
      check('1 live audit adds up', au.sum === au.balance && contiguous, () => `${au.user} via ${inst(au.instance).name}: pages sum to ${au.sum} over ${au.entries} entries (seqs ${contiguous ? '1..n' : 'not 1..n'}), first page said balance ${au.balance}`);
    }
    for (const user of new Set(ledgerDocs.map((e) => e.userId))) {
      check('1 balance = sum of ledger', accounts.some((a) => a._id === user), () => `ledger entries for ${user}, who has no account`);
    }

    // 2. keys applied once.
    const byKey = new Map<string, Entry[]>();
    for (const e of all) {
      if (!e.key) continue;
      const k = claimId(e.userId, e.key);
      byKey.set(k, [...(byKey.get(k) ?? []), e]);
    }
    for (const [k, list] of byKey) check('2 key applied once', list.length === 1, () => `${k} applied ${list.length} times: ${list.map(show).join(' ')}`);
    const keyAttempts = new Map<string, RequestRecord[]>();
    for (const r of requests) if (r.key) keyAttempts.set(`${r.user}\n${r.key}`, [...(keyAttempts.get(`${r.user}\n${r.key}`) ?? []), r]);
    for (const [k, list] of keyAttempts) {
      const ran = list.reduce((s, r) => s + (runs.get(r.id)?.runs ?? 0), 0);
      const oks = list.filter((r) => r.status === 200 && !r.replayed).length;
      check('2 request key runs once', ran <= 1 && oks <= 1, () => `Idempotency-Key ${k.replace('\n', ' ')} ran ${ran} times, ${oks} answers 200: ${JSON.stringify(list)}`);
      // A replay gives the answer of the attempt that ran, as that attempt got it (when its client saw it).
      const original = list.find((r) => runs.has(r.id));
      for (const r of list.filter((x) => x.replayed)) {
        const same =
          original !== undefined &&
          (original.status === 'error' || (original.status === r.status && JSON.stringify(original.body) === JSON.stringify(r.body))) &&
          (r.chargeId === undefined || runs.get(original.id)!.chargeIds.includes(r.chargeId));
        check('2 a replay repeats the answer given', same, () => `${r.id} replayed ${r.status} ${JSON.stringify(r.body)}; the attempt that ran: ${JSON.stringify(original)}`);
      }
    }
    /** The attempt with the same user and key whose route ran (a replay's answer is that attempt's). */
    const ranFor = (r: RequestRecord) => (r.key ? keyAttempts.get(`${r.user}\n${r.key}`)?.find((x) => runs.has(x.id)) : undefined);

    // Nets of charges: the usage entry and everything linked to it.
    const linked = new Map<string, Entry[]>();
    for (const e of all) {
      const c = e.ref?.chargeId;
      if (typeof c === 'string') linked.set(c, [...(linked.get(c) ?? []), e]);
    }
    const netOf = (chargeId: string): number | null => {
      const usage = entries.get(chargeId);
      if (!usage) return null;
      return usage.amount + (linked.get(chargeId) ?? []).reduce((s, e) => s + e.amount, 0);
    };
    const describeCharge = (chargeId: string) =>
      [entries.get(chargeId), ...(linked.get(chargeId) ?? [])].map((e) => (e ? show(e) : 'no usage entry')).join(' ');
    for (const [chargeId, list] of linked) {
      check('4 links name a charge', entries.get(chargeId)?.kind === 'usage', () => `${list.length} entries link to ${chargeId}, which is not a usage entry: ${list.map(show).join(' ')}`);
    }

    // 3. purchases.
    const purchaseNet = new Map<string, number>();
    for (const e of all) {
      const s = e.ref?.checkoutSessionId;
      if (typeof s === 'string') purchaseNet.set(s, (purchaseNet.get(s) ?? 0) + e.amount);
    }
    for (const p of purchases) {
      const net = purchaseNet.get(p.sessionId) ?? 0;
      const acked = p.events.every((e) => e.acked);
      check('3 purchase credited as its history says', net === p.expected && acked, () =>
        `${p.n} ${p.sessionId} (${p.user}, ${p.credits} credits for ${p.amountTotal}; ${p.story.join(', ')}; refunded ${p.refundedFinal}, dispute holds ${p.disputeHeld}) ` +
        `expected ${p.expected}, ledger holds ${net}${acked ? '' : ' (some events never acknowledged)'}: ` +
        `${all.filter((e) => e.ref?.checkoutSessionId === p.sessionId).map(show).join(' ')}; deliveries ${JSON.stringify(p.events.map((e) => [e.type, e.deliveries.map((d) => d.status)]))}`,
      );
      check('3 purchase within [0, credits]', net >= 0 && net <= p.credits, () => `${p.n} ${p.sessionId}: ledger holds ${net} of ${p.credits}`);
      const added = p.events.flatMap((e) => e.deliveries).reduce((s, d) => s + (typeof d.outcome?.creditsAdded === 'number' ? d.outcome.creditsAdded : 0), 0);
      check('3 creditsAdded reported once', added <= p.credits, () => `${p.n} ${p.sessionId}: deliveries reported ${added} credits added for a purchase of ${p.credits}`);
    }
    for (const d of purchaseDocs) {
      check('3 no adjustment left pending', (d.pendingAdjustments ?? []).length === 0, () => `${d._id}: ${JSON.stringify(d.pendingAdjustments)}`);
    }
    for (const [session, net] of purchaseNet) {
      check('3 only recorded purchases credited', purchases.some((p) => p.sessionId === session) || net === 0, () => `${session} holds ${net} but no purchase of the model has this id`);
    }

    // 4. no request given back more than it was charged; 5b. a charge whose route never ran is given back.
    const ranCharges = new Map<string, { id: string; route: string; used: number | undefined }>();
    for (const [id, r] of runs) {
      const rec = requests.find((x) => x.id === id);
      for (const c of r.chargeIds) ranCharges.set(c, { id, route: r.route, used: rec?.used });
    }
    const deductByReason = new Map<string, Entry[]>();
    for (const e of all) {
      if (e.kind !== 'usage') continue;
      const net = netOf(e._id)!;
      const note = typeof e.ref?.note === 'string' ? e.ref.note : '';
      const ran = ranCharges.get(e._id);
      let most = -e.amount;
      if ((note.endsWith('/ai/metered') || note.endsWith('/ai/stream')) && ran?.used !== undefined) most = Math.max(10, ran.used);
      check('4 given back at most what was charged', net <= 0 && net >= -most, () => `charge ${e._id} nets ${net} (at most ${most} may be charged): ${describeCharge(e._id)}`);
      if (note.startsWith('POST /ai/')) {
        check('5 a refused request is not paid for', ran !== undefined || net === 0, () => {
          const attempts = e.key?.startsWith(REQUEST_KEY_PREFIX) ? requests.filter((r) => r.user === e.userId && r.key !== undefined && requestKey(r.key) === e.key) : [];
          const withTimes = attempts.map((r) => ({ ...r, answeredHere: answered.get(r.id) }));
          return `charge ${e._id} (${note}) whose route never ran nets ${net}: ${describeCharge(e._id)}; attempts with its key: ${JSON.stringify(withTimes)}`;
        });
      }
      if (typeof e.reason === 'string' && e.reason.startsWith('checker d-')) {
        const id = e.reason.slice('checker '.length);
        deductByReason.set(id, [...(deductByReason.get(id) ?? []), e]);
      }
    }

    // 5. every answer against its charge.
    for (const r of requests) {
      const run = runs.get(r.id);
      check('5 a request runs at most once', (run?.runs ?? 0) <= 1, () => `${r.id} ran ${run?.runs} times`);
      if (r.status === 200) {
        const want = r.route === 'fixed' ? -3 : -(r.charged ?? NaN);
        const net = r.chargeId ? netOf(r.chargeId) : null;
        const ranWith = r.replayed ? runs.get(ranFor(r)?.id ?? '') : run;
        check('5 every 200 paid for', !!r.chargeId && ranWith?.chargeIds.includes(r.chargeId) === true && net === want, () =>
          `${r.id} (${r.route}, ${JSON.stringify({ user: r.user, key: r.key, used: r.used, charged: r.charged, instance: r.instance })}) answered 200 with charge ${r.chargeId}, nets ${net}, want ${want}: ${r.chargeId ? describeCharge(r.chargeId) : ''}`,
        );
      } else if (r.status !== 'error' && (r.status >= 500 || r.status === 402 || r.status === 409)) {
        const charges = new Set([...(run?.chargeIds ?? []), ...(r.chargeId ? [r.chargeId] : [])]);
        for (const c of charges) {
          const net = netOf(c);
          check('5 a failed request nets 0', net === 0, () => `${r.id} (${r.route}, fail ${String(r.fail)}, used ${r.used}, key ${r.key}, instance ${r.instance}) answered ${r.status}, its charge ${c} nets ${net}: ${describeCharge(c)}; settles ${JSON.stringify(run?.settles)}`);
        }
        if (r.status === 503 || r.status === 402 || r.status === 409) {
          check('5 a refused request never runs', !run, () => `${r.id} answered ${r.status} but its route ran ${run?.runs} time(s), charges ${run?.chargeIds.join(',')}`);
        }
      }
    }
    for (const [id, run] of runs) {
      for (const c of run.chargeIds) check('5 a route runs only after its charge', entries.get(c)?.kind === 'usage', () => `${id} ran with charge ${c}, which is not in the ledger`);
    }

    // 6. grants and deductions.
    for (const g of grants.values()) {
      const list = byKey.get(claimId(g.user, grantKey(g.key))) ?? [];
      const said = g.attempts.filter((a) => a.status === 200).length;
      const grantedTrue = g.attempts.filter((a) => a.granted === true).length;
      check('6 grant applied at most once', list.length <= 1 && list.every((e) => e.amount === g.amount && e.kind === 'grant'), () => `${g.key}: ${list.map(show).join(' ')}`);
      check('6 a confirmed grant is applied', said === 0 || list.length === 1, () => `${g.key} (${g.amount} for ${g.user}) was answered 200 ${said} times but is applied ${list.length} times: ${JSON.stringify(g.attempts)}`);
      check('6 granted:true said once', grantedTrue <= 1, () => `${g.key}: ${grantedTrue} calls said granted: true: ${JSON.stringify(g.attempts)}`);
    }
    for (const d of deducts.values()) {
      if (d.key) {
        const list = byKey.get(claimId(d.user, deductKey(d.key))) ?? [];
        const yes = d.attempts.some((a) => a.deducted === true);
        const allNo = d.attempts.every((a) => a.deducted === false);
        check('6 keyed deduction at most once', list.length <= 1 && list.every((e) => e.amount === -d.amount), () => `${d.key}: ${list.map(show).join(' ')}`);
        check('6 keyed deduction as answered', (!yes || (list.length === 1 && netOf(list[0]!._id) === -d.amount)) && (!allNo || list.length === 0), () =>
          `${d.key} (${d.amount} from ${d.user}) answered ${JSON.stringify(d.attempts)}, applied ${list.length} times: ${list.map((e) => describeCharge(e._id)).join(' ')}`,
        );
      } else {
        const list = deductByReason.get(d.id) ?? [];
        const a = d.attempts[0]!;
        const nets = list.map((e) => netOf(e._id));
        const ok =
          a.status === 200 && a.deducted === true
            ? list.length === 1 && nets[0] === -d.amount
            : a.status === 200
              ? list.length === 0
              : a.status === 'error'
                ? list.length <= 1
                : list.length <= 1 && nets.every((x) => x === 0);
        check('6 unkeyed deduction as answered', ok, () => `${d.id} (${d.amount} from ${d.user}) answered ${JSON.stringify(a)}; entries ${list.map((e) => describeCharge(e._id)).join(' ')}`);
      }
    }

    // 10. streamed answers (server/http/stream.ts): cut before the first byte, given back; after it, what the
    // route settled stands (a settle the database refused is retried in the background until it lands).
    for (const r of requests) {
      if (r.route !== 'stream') continue;
      const run = runs.get(r.id);
      const c = run?.chargeIds[0];
      if (!run || !c) continue; // refused before it ran: judged as every refused request is, above
      const net = netOf(c);
      const settled = run.settles[0];
      if (r.fail === 'error-first') {
        check('10 a stream cut before its first byte is given back', net === 0, () => `${r.id} (instance ${r.instance}) nets ${net}: ${describeCharge(c)}`);
      } else if (typeof settled?.charged === 'number') {
        check('10 a stream is charged what its route settled', net === -settled.charged, () => `${r.id} (fail ${String(r.fail)}, used ${r.used}, instance ${r.instance}) settled ${settled.charged}, nets ${net}: ${describeCharge(c)}`);
      }
    }

    // 7. spending never takes a balance below zero.
    for (const e of ledgerDocs) {
      if ((e.kind === 'usage' || e.kind === 'settle') && e.amount < 0) {
        check('7 no spend below zero', (e.balanceAfter ?? 0) >= 0, () => `${show(e)} left the balance at ${e.balanceAfter}`);
      }
    }

    // 8. grants: every entry's parts (and debt) make its amount; per account, the parts replayed in seq
    // order never take a grant below zero and lead to the stored book, which adds up to the balance; an
    // expiry takes exactly its grant's rest, once per grant, and only once its expiry was reached, keeping
    // what its rollover rolled over (`rolledOver`) in `rollover:<grant>`, which does not roll over again.
    for (const a of accounts) {
      const mine = ledgerDocs.filter((e) => e.userId === a._id).sort((x, y) => (x.seq ?? 0) - (y.seq ?? 0));
      const held = new Map<string, number>();
      let debt = 0;
      const expired = new Set<string>();
      const revoked = new Map<string, Entry>();
      for (const e of mine) {
        const parts = e.grants ?? [];
        check('8 parts make the amount', parts.reduce((t, p) => t + p.amount, 0) - (e.debt ?? 0) === e.amount, () => `${show(e)} parts ${JSON.stringify(parts)} debt ${e.debt}`);
        for (const p of parts) held.set(p.grant, (held.get(p.grant) ?? 0) + p.amount);
        debt += e.debt ?? 0;
        const negative = parts.find((p) => (held.get(p.grant) ?? 0) < 0);
        check('8 no grant below zero', !negative && debt >= 0, () => `${show(e)} took ${negative?.grant} to ${held.get(negative?.grant ?? '')}, debt ${debt}`);
        if (e.kind === 'expire') {
          const g = e.from ?? '';
          const part = parts.find((p) => p.grant === g);
          const kept = (e as { rolledOver?: number }).rolledOver ?? 0;
          const keptPart = parts.find((p) => p.grant === `rollover:${g}`);
          check(
            '8 an expiry takes its grant’s rest',
            parts.length === (kept > 0 ? 2 : 1) && part?.amount === e.amount - kept && (held.get(g) ?? 0) === 0 && (kept === 0 || (keptPart?.amount === kept && !g.startsWith('rollover:'))),
            () => `${show(e)} parts ${JSON.stringify(parts)}, rolled over ${kept}, ${g} holds ${held.get(g)} after it`,
          );
          if (kept > 0) count('rollover', 200);
          check('8 a grant expires once', !expired.has(g), () => `${a._id}: ${g} expired twice: ${show(e)}`);
          check('8 no expiry before its time', !!part?.expiresAt && new Date(part.expiresAt).getTime() <= latestSweep + 90_000, () => `${show(e)} expired ${g} due ${part?.expiresAt ? new Date(part.expiresAt).toISOString() : 'never'}; the latest sweep clock was ${new Date(latestSweep).toISOString()}`);
          expired.add(g);
        }
        // 11. a revoked grant stays closed: nothing is added to it again, and it never expires.
        for (const p of parts) {
          const by = revoked.get(p.grant);
          if (by && (p.amount > 0 || e.kind === 'expire')) {
            check('11 a revoked grant stays closed', false, () => `${show(e)} part ${JSON.stringify(p)} after ${p.grant} was revoked by ${show(by)}`);
          }
        }
        if (e.kind === 'revoke') {
          const g = e.from ?? '';
          check(
            '11 a revoke takes its grant’s rest',
            e.amount < 0 && parts.length === 1 && parts[0]!.grant === g && parts[0]!.amount === e.amount && (held.get(g) ?? 0) === 0 && (e.debt ?? 0) === 0,
            () => `${show(e)} parts ${JSON.stringify(parts)}, ${g} holds ${held.get(g)} after it`,
          );
          check('11 a grant is revoked once', !revoked.has(g), () => `${a._id}: ${g} revoked twice: ${show(revoked.get(g)!)} and ${show(e)}`);
          revoked.set(g, e);
        }
      }
      // An account only ever fenced (no entry yet) has no book.
      const book = bookOf.get(a._id) ?? a.book ?? ((a.count ?? 0) === 0 ? { seq: 0, debt: 0, grants: [] } : undefined);
      const left = [...held].filter(([, n]) => n !== 0);
      check('8 the book is what the ledger says', !!book && book.seq === (a.count ?? 0) && book.debt === debt && left.length === book.grants.length && left.every(([id, n]) => book.grants.some((g) => g.id === id && g.remaining === n)), () =>
        `${a._id}: book ${JSON.stringify(book)}; the ledger's parts leave ${JSON.stringify(left)}, debt ${debt}, count ${a.count}`,
      );
      check('8 the book adds up to the balance', !!book && book.grants.reduce((t, g) => t + g.remaining, 0) - book.debt === (a.balance ?? 0), () => `${a._id}: book ${JSON.stringify(book)}, balance ${a.balance}`);
    }

    // 11. each revoke key: at most one call said it revoked anything, for exactly what its entry took, and
    // no call said so for a key with no entry.
    for (const [id, r] of revokes) {
      const ledgerKey = r.key ? `revoke:${r.key}` : `revoke:${r.grant}`;
      const list = byKey.get(claimId(r.user, ledgerKey)) ?? [];
      const said = r.attempts.filter((x) => x.status === 200 && (x.revoked ?? 0) > 0);
      check(
        '11 a revoke is answered as applied',
        list.length <= 1 && said.length <= (list.length === 1 ? 1 : 0) && said.every((x) => x.revoked === -list[0]!.amount) && list.every((e) => e.kind === 'revoke' && e.from === r.grant),
        () => `${id.replace('\n', ' ')} answered ${JSON.stringify(r.attempts)}; entries ${list.map(show).join(' ')}`,
      );
    }

    // 9. one low-balance alert per fall below a level, recorded once and delivered (at least once).
    const alertDocs = (await db.collection('credit_alerts').find({}).toArray()) as unknown as Array<{ _id: string; state: string }>;
    const alertCalls = (await db.collection('checker_alert_calls').find({}).toArray()) as unknown as Array<{ alertId: string }>;
    const crossings = new Set<string>();
    for (const user of new Set(ledgerDocs.map((e) => e.userId))) {
      for (const e of ledgerDocs.filter((x) => x.userId === user)) {
        if (e.amount >= 0 || e.balanceAfter === undefined) continue;
        for (const level of ALERT_LEVELS) {
          if (e.balanceAfter - e.amount >= level && e.balanceAfter < level) crossings.add(`${e.seq}:${level}:${user}`);
        }
      }
    }
    const recordedAlerts = new Set(alertDocs.map((a) => a._id));
    const calledAlerts = new Set(alertCalls.map((c) => c.alertId));
    for (const id of crossings) {
      check('9 each crossing recorded once', recordedAlerts.has(id), () => `the ledger crosses ${id} but no alert was recorded`);
      check('9 each crossing delivered', calledAlerts.has(id), () => `alert ${id} was never delivered to the hook`);
    }
    for (const a of alertDocs) {
      check('9 no alert without a crossing', crossings.has(a._id), () => `alert ${a._id} recorded, but the ledger has no such crossing`);
      check('9 alerts marked delivered', a.state === 'delivered', () => `alert ${a._id} is still ${a.state} after recovery`);
    }
    for (const id of calledAlerts) check('9 no call without a crossing', crossings.has(id), () => `the hook was called with ${id}, which the ledger does not cross`);
    const repeatedCalls = alertCalls.length - calledAlerts.size;

    // 12. auto-recharge: at most one attempt per user (none ever succeeds), each for a real crossing.
    const rechargeDocs = (await db.collection('credit_recharges').find({}).toArray()) as unknown as Array<{
      _id: string;
      state: string;
      crossingSeq: number;
      owed?: number;
      attempt: { id: string; crossingSeq: number; paymentIntentId: string | null } | null;
    }>;
    let rechargesSent = 0;
    for (const r of rechargeDocs) {
      const attempts = purchaseDocs.filter((p) => p._id.startsWith(`recharge:${r._id}:`));
      check('12 never two recharges in flight', attempts.length <= 1, () => `${r._id}: ${attempts.length} recharge payments started: ${attempts.map((p) => p._id).join(', ')}`);
      const crossed = new Set(
        ledgerDocs
          .filter((e) => e.userId === r._id && e.amount < 0 && e.balanceAfter !== undefined && e.balanceAfter - e.amount >= RECHARGE_THRESHOLD && e.balanceAfter < RECHARGE_THRESHOLD)
          .map((e) => e.seq),
      );
      if (r.attempt) {
        const a = r.attempt;
        check('12 one recharge per crossing', crossed.has(a.crossingSeq) && r.crossingSeq >= a.crossingSeq && attempts.length === 1 && attempts[0]!._id === `recharge:${r._id}:${a.id}`, () =>
          `${r._id}: attempt ${JSON.stringify(a)} (record at seq ${r.crossingSeq}); crossings ${JSON.stringify([...crossed])}; purchases ${attempts.map((p) => p._id).join(', ')}`,
        );
        if (a.paymentIntentId) rechargesSent++;
      } else {
        check('12 one recharge per crossing', attempts.length === 0, () => `${r._id}: no attempt recorded, yet ${attempts.length} recharge payments`);
      }
      // A crossing kept owed (cooldown, open payment) is a real one, already seen, and never beside an attempt in flight for it.
      check('12 owed crossing is real', r.owed === undefined || (crossed.has(r.owed) && r.crossingSeq >= r.owed && r.state === 'idle'), () => `${r._id}: owes ${r.owed} in state ${r.state} (record at seq ${r.crossingSeq}); crossings ${JSON.stringify([...crossed])}`);
      check('12 nothing credited unconfirmed', attempts.every((p) => (p.granted ?? 0) === 0 && p.status !== 'paid'), () => `${r._id}: ${JSON.stringify(attempts)}`);
    }

    // 13. subscriptions, against what the schedule sent (the model) and Stripe's final truth.
    const heldBy = new Map<string, number>();
    for (const e of ledgerDocs) for (const p of e.grants ?? []) heldBy.set(`${e.userId}\n${p.grant}`, (heldBy.get(`${e.userId}\n${p.grant}`) ?? 0) + p.amount);
    const subDocs = (await db.collection('credit_subscriptions').find({}).toArray()) as unknown as Array<{
      _id: string;
      plan: string;
      status: string;
      stripeSubscriptionId: string | null;
      currentPeriod: { start: number; end: number } | null;
      endedAt: number | null;
      cancelAtPeriodEnd: boolean;
      periods: Array<{ start: number; end: number; grants: Array<{ id: string; plan: string; credits: number; invoiceId: string }> }>;
    }>;
    const subStats = { periods: 0, grants: 0, revoked: 0, rolledOver: 0, expired: 0 };
    for (const m of subscriptions) {
      const tagOf = `${m.n} ${m.subscriptionId} (${m.user}; ${m.story.join(', ')})`;
      const entriesOf = (k: string) => byKey.get(claimId(m.user, grantKey(k))) ?? [];
      const from = (grant: string, kind: string) => ledgerDocs.filter((e) => e.userId === m.user && e.kind === kind && e.from === grant);
      const held = (grant: string) => heldBy.get(`${m.user}\n${grant}`) ?? 0;
      check('13 every subscription event acknowledged', m.events.every((e) => e.acked), () => `${tagOf}: ${JSON.stringify(m.events.filter((e) => !e.acked).map((e) => [e.type, e.deliveries.map((d) => d.status)]))}`);
      let granted = 0;
      let revoked = 0;
      for (const [i, p] of m.periods.entries()) {
        subStats.periods++;
        const invs = m.invoices.filter((x) => x.period === i);
        const keys = [...new Set(invs.map((x) => x.key))];
        const made = keys.flatMap((k) => entriesOf(k).map((e) => ({ k, e })));
        const allowances = made.filter(({ k }) => invs.some((x) => x.key === k && x.kind !== 'upgrade'));
        const want = Math.max(...p.paid.map((plan) => PLANS[plan].credits));
        const sum = made.reduce((t, { e }) => t + e.amount, 0);
        const describe = () => `${tagOf} period ${i} [${p.start}, ${p.end}] paid ${p.paid.join('+')}: ${made.map(({ e }) => show(e)).join(' ')}; invoices ${JSON.stringify(invs.map((x) => [x.id, x.key, x.pi]))}`;
        granted += sum;
        check('13 a period’s allowance granted once', allowances.length === 1, describe);
        check('13 a period holds the biggest plan paid for', sum === want && made.length >= 1, () => `want ${want}, granted ${sum}: ${describe()}`);
        let keptInPeriod = 0;
        for (const { k, e } of made) {
          subStats.grants++;
          const grant = grantKey(k);
          const of = invs.filter((x) => x.key === k);
          const parts = e.grants ?? [];
          const due = parts[0]?.expiresAt ? new Date(parts[0].expiresAt).getTime() : NaN;
          // Purchased credits are never touched by a renewal: its entry adds to its own grant only, expiring with
          // its period (the end of the period's own invoice, or of a re-issued one whose end drifted, if it came first).
          // Each invoice grants what it pays for on the period's ladder: the allowance its plan, an upgrade (always
          // up, one step after another, in this schedule) the difference; whatever order they arrive in.
          const owed = of[0]!.kind === 'upgrade' ? PLANS[of[0]!.plan].credits - PLANS[of[0]!.from!].credits : PLANS[of[0]!.plan].credits;
          check('13 each payment grants what it pays for', e.amount === owed, () => `${show(e)}, want ${owed}: ${describe()}`);
          check('13 a renewal adds to its own grant only', e.kind === 'grant' && e.amount > 0 && parts.length === 1 && parts[0]!.grant === grant && parts[0]!.amount === e.amount && invs.some((x) => x.kind !== 'upgrade' && x.end * 1000 === due), () => `${show(e)} parts ${JSON.stringify(parts)}: ${describe()}`);
          // A refunded or disputed payment takes back what it paid for (its grant and that grant's rollover), once;
          // a grant paid by a payment never refunded is never taken back. When two invoices claim the same key
          // (a re-issued one with the same start), the one delivered first is linked: either outcome is right.
          const taken = of.filter((x) => m.takenBack.has(x.pi)).length;
          const revokes = [...from(grant, 'revoke'), ...from(`rollover:${grant}`, 'revoke')];
          revoked += revokes.reduce((t, r) => t - r.amount, 0);
          subStats.revoked += revokes.length;
          check('13 taken back at most once, never more than it granted', from(grant, 'revoke').length <= 1 && from(`rollover:${grant}`, 'revoke').length <= 1 && revokes.reduce((t, r) => t - r.amount, 0) <= e.amount, () => `${revokes.map(show).join(' ')}: ${describe()}`);
          if (taken === 0) {
            check('13 a payment never refunded keeps what it paid for', revokes.length === 0, () => `${grant} revoked by ${revokes.map(show).join(' ')}: ${describe()}`);
          } else if (taken === of.length) {
            check('13 a refunded payment’s grant and rollover taken back', held(grant) === 0 && held(`rollover:${grant}`) === 0, () => `${grant} still holds ${held(grant)}, its rollover ${held(`rollover:${grant}`)}; revokes ${revokes.map(show).join(' ')}: ${describe()}`);
          }
          // Rollover: at most its plan's max, and for a period's only grant exactly min(rest, max).
          const plan = of[0]!.plan;
          for (const x of from(grant, 'expire')) {
            subStats.expired++;
            const kept = (x as { rolledOver?: number }).rolledOver ?? 0;
            const rest = kept - x.amount;
            keptInPeriod += kept;
            if (kept > 0) subStats.rolledOver++;
            check('13 rollover within the plan’s max', kept <= rolloverMaxOf(plan) && (made.length > 1 || kept === Math.min(rest, rolloverMaxOf(plan))), () => `${show(x)} kept ${kept} of ${rest} (${plan} keeps up to ${rolloverMaxOf(plan)}): ${describe()}`);
          }
        }
        check('13 a period rolls over at most its biggest plan’s max', keptInPeriod <= Math.max(...p.paid.map(rolloverMaxOf)), () => `rolled over ${keptInPeriod}: ${describe()}`);
        if (m.cancel?.period === i) {
          // Cancelled (at once or at the period's end): what the period was paid for runs to the period's end.
          const dues = made.map(({ e }) => (e.grants?.[0]?.expiresAt ? new Date(e.grants[0].expiresAt).getTime() : NaN));
          check('13 a cancelled subscription’s last period runs to its end', dues.every((d) => d >= p.end * 1000), () => `ended at ${m.cancel!.endedAt}, expiries ${dues.join(',')}: ${describe()}`);
        }
      }
      for (const x of m.afterEnd) {
        const late = entriesOf(x.key);
        check('13 no period after the subscription ended is granted', late.length === 0, () => `${tagOf}: ${x.id} [${x.start}, ${x.end}] after ended_at ${m.cancel?.endedAt}: ${late.map(show).join(' ')}`);
      }
      check(
        '13 an ended subscription frees the slot, a live one holds it',
        m.subscribeAgain === (m.cancel ? 201 : 409),
        () => `${tagOf}: POST /credits/subscribe answered ${m.subscribeAgain}, want ${m.cancel ? 201 : 409}`,
      );
      const known = new Set(m.invoices.map((x) => grantKey(x.key)));
      const strays = ledgerDocs.filter((e) => e.userId === m.user && e.kind === 'grant' && e.key?.startsWith(grantKey(`subscription:${m.subscriptionId}:`)) && !known.has(e.key as `grant:${string}`));
      check('13 no subscription grant without its paid invoice', strays.length === 0, () => `${tagOf}: ${strays.map(show).join(' ')}`);
      const outcomes = m.events.flatMap((e) => e.deliveries).map((d) => d.outcome ?? {});
      const saidGranted = outcomes.reduce((t, o) => t + (typeof o.creditsGranted === 'number' ? o.creditsGranted : 0), 0);
      const saidRevoked = outcomes.reduce((t, o) => t + (typeof o.revoked === 'number' ? o.revoked : 0), 0);
      check('13 credits reported granted and revoked once', saidGranted <= granted && saidRevoked <= revoked, () => `${tagOf}: deliveries report ${saidGranted} granted, ${saidRevoked} revoked; the ledger holds ${granted} granted, ${revoked} revoked`);
      const doc = subDocs.find((d) => d._id === m.ref);
      check(
        '13 the record holds Stripe’s final state',
        !!doc &&
          doc.stripeSubscriptionId === m.subscriptionId &&
          doc.status === m.final.status &&
          doc.endedAt === m.final.endedAt &&
          doc.cancelAtPeriodEnd === m.final.cancelAtPeriodEnd &&
          doc.plan === m.final.plan &&
          doc.currentPeriod?.start === m.final.start &&
          doc.currentPeriod?.end === m.final.end,
        () =>
          `${tagOf}: want ${JSON.stringify(m.final)}, record ${JSON.stringify(doc && { plan: doc.plan, status: doc.status, endedAt: doc.endedAt, cancelAtPeriodEnd: doc.cancelAtPeriodEnd, sub: doc.stripeSubscriptionId, currentPeriod: doc.currentPeriod })}`,
      );
      const unmade = (doc?.periods ?? []).flatMap((p) => p.grants).filter((g) => (byKey.get(claimId(m.user, g.id)) ?? []).length !== 1);
      check('13 every grant claimed in the record is made', unmade.length === 0, () => `${tagOf}: ${JSON.stringify(unmade)}`);
    }
    // Purchased credits are never touched by a subscription's expiry or refund: those name subscription grants only.
    const isSubGrant = (g: string) => g.startsWith('grant:subscription:') || g.startsWith('rollover:grant:subscription:');
    for (const e of ledgerDocs) {
      if ((e.kind === 'revoke' || e.kind === 'expire') && isSubGrant(e.from ?? '')) {
        check('13 a subscription’s expiry or refund touches its grants only', (e.grants ?? []).every((p) => isSubGrant(p.grant)), () => `${show(e)} parts ${JSON.stringify(e.grants)}`);
      }
    }

    // Liveness, reported: claims still pending after recovery.
    const pendingClaims = claims.filter((c) => c.state === 'pending');
    const consumedKeys = [...keyAttempts.values()].filter((list) => list.every((r) => r.status !== 200) && list.some((r) => r.status === 409) && list.every((r) => !runs.has(r.id))).length;

    const statusCounts = (list: RequestRecord[]) => list.reduce<Record<string, number>>((acc, r) => ((acc[String(r.status)] = (acc[String(r.status)] ?? 0) + 1), acc), {});
    const proxyStats = instances.map((i) => {
      const s = i.proxy.stats();
      return `${i.name}(${i.skewMs >= 0 ? '+' : ''}${i.skewMs / 1000}s): ${s.commands} cmds, ${s.stalled} stalled, ${s.repliesDropped} replies dropped, ${s.resets} resets`;
    });
    const summary = [
      `${tag} ${((Date.now() - started) / 1000).toFixed(1)} s, ${USERS.length} users, ${instances.length} instances, ${WORKERS} workers`,
      `  ops: ${Object.entries(ops).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join('; ')}`,
      `  fixed ${JSON.stringify(statusCounts(requests.filter((r) => r.route === 'fixed')))}, metered ${JSON.stringify(statusCounts(requests.filter((r) => r.route === 'metered')))}`,
      `  purchases: ${purchases.length} (${Object.entries(purchases.reduce<Record<string, number>>((acc, p) => ((acc[p.kind] = (acc[p.kind] ?? 0) + 1), acc), {})).map(([k, v]) => `${k} ${v}`).join(', ')}), ${allEvents().length} events, ${allEvents().reduce((s, e) => s + e.deliveries.length, 0)} deliveries, ${allEvents().filter((e) => !e.acked).length} never acknowledged`,
      `  subscriptions: ${subscriptions.length} (${subStats.periods} periods, ${subscriptions.reduce((t, m) => t + m.invoices.length, 0)} invoices, ${subscriptions.reduce((t, m) => t + m.takenBack.size, 0)} payments refunded or disputed), ${subStats.grants} grants, ${subStats.expired} expired (${subStats.rolledOver} rolled over), ${subStats.revoked} revokes; ${subscriptions.reduce((t, m) => t + m.events.length, 0)} events`,
      `  faults: ${JSON.stringify(faultLog)}; ${proxyStats.join('; ')}`,
      `  recovery: reconcile 1 ${JSON.stringify(reconcile1)}; reconcile 2 ${JSON.stringify(reconcile2)}; background errors ${JSON.stringify(flushed.map((f) => f.backgroundErrors))}`,
      `  database: ${all.length} entries, ${accounts.length} accounts, ${claims.length} claims (${pendingClaims.length} pending), ${purchaseDocs.length} purchases, ${alertDocs.length} low-balance alerts (${repeatedCalls} delivered again), ${rechargeDocs.filter((r) => r.attempt).length} auto-recharges started (${rechargesSent} sent to Stripe); ${consumedKeys} keys refused everywhere yet answered 409 later`,
      `  invariants: ${Object.entries(checked).map(([k, v]) => `${k} ×${v}`).join('; ')}`,
      `  violations: ${violations.length}`,
    ];
    console.log(summary.join('\n'));
    if (backgroundErrorLog.length) console.log(`${tag} errors the kit reported from background work:\n  ${backgroundErrorLog.slice(-20).join('\n  ')}`);
    if (pendingClaims.length) console.log(`${tag} pending claims after recovery: ${JSON.stringify(pendingClaims.slice(0, 10))}`);

    if (violations.length > 0) {
      throw new Error(
        `${tag} ${violations.length} violation(s); replay with CHECKER_SEED=${seed}\n` +
          violations.slice(0, 25).join('\n') +
          (violations.length > 25 ? `\n… and ${violations.length - 25} more` : ''),
      );
    }
    // Real outcomes, not an idle run.
    expect(requests.filter((r) => r.status === 200).length).toBeGreaterThan(50);
    expect(purchases.filter((p) => p.expected > 0).length).toBeGreaterThan(0);
    expect(subStats.grants).toBeGreaterThan(0);
    expect(Object.values(checked).reduce((s, v) => s + v, 0)).toBeGreaterThan(500);
    if (process.env.CHECKER_FAULTS !== '0') {
      expect(instances.reduce((s, i) => s + i.proxy.stats().stalled + i.proxy.stats().resets + i.proxy.stats().repliesDropped, 0)).toBeGreaterThan(0);
    }
  } catch (err) {
    for (const i of instances.filter(Boolean)) if (i.stderr.length) console.log(`${tag} last stderr lines of ${i.name}:\n${i.stderr.slice(-15).join('\n')}`);
    if (err instanceof Error && !err.message.includes(tag)) err.message = `${tag} ${err.message}`;
    throw err;
  } finally {
    await Promise.all(instances.filter(Boolean).map((i) => stopInstance(i).catch(() => undefined)));
    await connection.close();
  }
});
