/**
 * `npm run bench`: throughput, latency, database round trips, memory and bundle size of credit-kit, in one
 * run on one machine against one database (the embedded server unless MONGODB_URI is set). Figures that
 * matter are ratios of scenarios measured side by side, in alternating rounds after a warm-up.
 *
 *   npm run bench                     about 4 minutes
 *   BENCH_QUICK=1 npm run bench       under a minute, for checking the bench itself
 *
 * Knobs (environment): BENCH_SECONDS (one measured run), BENCH_WARMUP_SECONDS, BENCH_ROUNDS,
 * BENCH_CONNECTIONS, BENCH_USERS, BENCH_SOAK_SECONDS, BENCH_CONTENTION_REQUESTS, BENCH_CONTENTION_ROUNDS,
 * BENCH_PROFILE_SECONDS (0: no CPU profile), BENCH_TRIM_LEDGER (0: keep the ledger entries the runs add; see
 * trimLedger), BENCH_SCALE (0: skip the scale section, bench/lib/scale.ts), MONGODB_URI.
 *
 * The markdown report goes to stdout and to bench/results/latest.md; progress goes to stderr.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import mongoose from 'mongoose';
import Stripe from 'stripe';
import { createCredits } from 'credit-kit/server';
import { startEmbeddedMongo } from '../tools/embedded';
import { clientBundleSize } from '../tools/size';
import { startScenarios, USER_HEADER, userIdOf, WEBHOOK_SECRET, type BenchAccount, type Scenario } from './lib/apps';
import { runLoad, type LoadOptions, type LoadResult } from './lib/load';
import {
  CommandMonitor,
  CpuProfiler,
  forcedGc,
  heapAfterGc,
  median,
  operationCosts,
  ownCpuMicros,
  percentile,
  processCpuMicros,
  sortedCopy,
  summarizeProfile,
  type CommandCounts,
  type ProfileSummary,
} from './lib/measure';
import { renderReport, type Report, type ScenarioRow } from './lib/report';
import { measureScale, renderScale } from './lib/scale';
import { fundWithGrants, inBatches } from './lib/funding';

const RESULTS = join(__dirname, 'results');
/** Open grants on each account of the requireCredits-grants scenario. */
const GRANTS_EACH = 20;

function readConfig() {
  const quick = process.env.BENCH_QUICK === '1';
  const num = (name: string, fallback: number, integer = false): number => {
    const text = process.env[name];
    if (text === undefined || text === '') return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
      throw new Error(`${name} must be a ${integer ? 'whole ' : ''}number ≥ 0, got ${JSON.stringify(text)}.`);
    }
    return n;
  };
  return {
    quick,
    seconds: num('BENCH_SECONDS', quick ? 1 : 5),
    warmupSeconds: num('BENCH_WARMUP_SECONDS', quick ? 0.5 : 1),
    rounds: Math.max(1, num('BENCH_ROUNDS', quick ? 2 : 3, true)),
    connections: Math.max(1, num('BENCH_CONNECTIONS', 10, true)),
    users: Math.max(1, num('BENCH_USERS', quick ? 200 : 1000, true)),
    soakSeconds: num('BENCH_SOAK_SECONDS', quick ? 3 : 60),
    contentionRequests: Math.max(1, num('BENCH_CONTENTION_REQUESTS', quick ? 200 : 300, true)),
    contentionConnections: 50,
    contentionBalance: 100,
    contentionRounds: Math.max(1, num('BENCH_CONTENTION_ROUNDS', quick ? 1 : 2, true)),
    profileSeconds: num('BENCH_PROFILE_SECONDS', quick ? 1 : 3),
    /** The attribution pass sends about this many seconds' worth of requests (a fixed count, so none is cut off). */
    attributeSeconds: quick ? 0.5 : 2,
    /** Embedded database only: delete the ledger entries each run adds (see trimLedger). BENCH_TRIM_LEDGER=0 keeps them. */
    trimLedger: process.env.BENCH_TRIM_LEDGER !== '0',
    /** The scale section (BENCH_SCALE=0 skips it): account counts, and the long ledger's length. */
    scaleAccounts: process.env.BENCH_SCALE === '0' ? [] : quick ? [1_000, 10_000] : [1_000, 100_000, 1_000_000],
    scaleLedgerEntries: quick ? 5_000 : 100_000,
  };
}
export type BenchConfig = ReturnType<typeof readConfig>;

const t0 = Date.now();
const log = (line: string) => process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);
/** Run on the way out, also on Ctrl+C and on errors: the embedded database never outlives the bench. */
const cleanups: Array<() => Promise<void>> = [];
async function cleanUp(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Database {
  uri: string;
  label: string;
  pid: number | undefined;
  embedded: boolean;
  stop(): Promise<void>;
}

async function openDatabase(): Promise<Database> {
  const uri = process.env.MONGODB_URI;
  if (uri) {
    const host = /^mongodb(?:\+srv)?:\/\/(?:[^@/]*@)?([^/?]+)/.exec(uri)?.[1] ?? 'unknown host';
    return { uri, label: `MongoDB at ${host} (MONGODB_URI)`, pid: undefined, embedded: false, stop: async () => undefined };
  }
  const mongo = await startEmbeddedMongo();
  return {
    uri: mongo.uri,
    label: 'embedded FerretDB v1.24.2 (with our _id index patch) on SQLite behind the atomicity gate (tools/mongo), same machine',
    pid: mongo.process.pid,
    embedded: true,
    stop: () => mongo.stop(),
  };
}

/** One measured run of one scenario. */
interface Sample {
  load: LoadResult;
  received: number;
  commands: CommandCounts;
  nodeCpuUs: number;
  dbCpuUs: number | null;
}

async function main(): Promise<void> {
  const cfg = readConfig();
  const startedAt = new Date();
  const gc = forcedGc();
  const resolved = require.resolve('credit-kit/server');
  log(`credit-kit/server resolves to ${resolved}`);

  const db = await openDatabase();
  cleanups.push(() => db.stop());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      void cleanUp().finally(() => process.exit(130));
    });
  }
  const dbName = `ck_bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const connection = await mongoose
    .createConnection(db.uri, { dbName, monitorCommands: true, maxPoolSize: 100, serverSelectionTimeoutMS: 5000 })
    .asPromise();
  cleanups.push(() => connection.close());
  const client = connection.getClient();
  const monitor = new CommandMonitor(client);

  let backgroundErrors = 0;
  const stripe = new Stripe('sk_test_credit_kit_bench'); // fulfilment verifies and reads the event; no API call
  const credits = createCredits({
    connection,
    getUserId: userIdOf,
    stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'http://127.0.0.1', // required with stripe; the bench creates no Checkout Session
    hooks: {
      onBackgroundError: (err) => {
        if (backgroundErrors++ === 0) log(`background ledger error (counted, first shown): ${String(err)}`);
      },
    },
  });
  await credits.init();

  // ---- data: a pool of funded users, one hot account, the raw and naive collections ----
  const users = Array.from({ length: cfg.users }, (_, i) => `u${String(i).padStart(5, '0')}`);
  const pickUser = () => users[Math.floor(Math.random() * users.length)]!;
  const hotUser = 'hot';
  const replayUser = 'replay-buyer';
  const BIG = 1_000_000_000;
  log(`funding ${users.length} users with grantCredits (database: ${db.label})...`);
  await inBatches([...users, hotUser], 25, (u) =>
    credits.grantCredits(u, u === hotUser ? BIG * 1000 : BIG, { idempotencyKey: `fund:${u}`, reason: 'bench funding' }),
  );
  // Accounts holding many open grants (#15: a spend stays one guarded update whatever the grants): each of
  // GRANTS_EACH grants with its own priority and expiry, so the book the mover folds over is that long.
  // As many as the pool of one-grant accounts, so that both scenarios spread their spends alike and each
  // account's journal is as long in both: the comparison is then about the grants alone.
  const grantUsers = Array.from({ length: cfg.users }, (_, i) => `g${String(i).padStart(5, '0')}`);
  const pickGrantUser = () => grantUsers[Math.floor(Math.random() * grantUsers.length)]!;
  log(`funding ${grantUsers.length} users with ${GRANTS_EACH} grants each...`);
  await fundWithGrants(credits, grantUsers, GRANTS_EACH, BIG);
  const nativeDb = client.db(connection.name);
  const raw = nativeDb.collection<BenchAccount>('bench_raw');
  const naive = nativeDb.collection<BenchAccount>('bench_naive');
  await raw.insertMany(users.map((_id) => ({ _id, balance: BIG })));
  await naive.insertMany(users.map((_id) => ({ _id, balance: BIG })));
  await credits.flush();
  const fundedAt = new Date();
  const ledgerCollection = nativeDb.collection<{ at: Date; kind: string; ref?: { checkoutSessionId?: string } }>('credit_ledger');
  let trimmed = 0;
  log(`funded in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s; measuring single operations by collection size...`);
  const costs = await operationCosts(nativeDb, cfg.quick ? [100, 1000] : [100, 1000, 5000], cfg.quick ? 15 : 30);

  const scenarios = await startScenarios({ credits, raw, naive, stripe, pickUser, pickGrantUser, grantsEach: GRANTS_EACH, hotUser, replayUser });
  for (const s of scenarios) cleanups.push(() => s.close());
  const byName = (name: string) => scenarios.find((s) => s.name === name)!;

  /** Waits until the kit's background work is done and no command has started for 50 ms. */
  const quiesce = async () => {
    for (let last = -1; ; ) {
      await credits.flush();
      const now = monitor.peek();
      if (now === last) return;
      last = now;
      await sleep(50);
    }
  };

  /**
   * The ledger grows by one entry per guarded request, and on the embedded database any lookup not by _id scans
   * its collection (FerretDB v1 pushes only _id down to SQLite), so later runs could be slower than earlier ones
   * for a reason a real MongoDB does not have. So on the embedded database each run starts from the same ledger:
   * the entries added since funding are deleted once they have been moved (balances, accounts and journals are
   * untouched). The raw and naive collections do not grow at all.
   */
  const trimLedger = async () => {
    if (!db.embedded || !cfg.trimLedger) return;
    await quiesce();
    await tallyPurchaseEntries();
    trimmed += (await ledgerCollection.deleteMany({ at: { $gt: fundedAt } })).deletedCount;
  };

  /** Purchase entries in the ledger by Checkout Session id, counted before they are trimmed (for the checks). */
  const purchaseEntries = new Map<string, number>();
  const tallyPurchaseEntries = async () => {
    const entries = await ledgerCollection.find({ kind: 'purchase', at: { $gt: fundedAt } }, { projection: { ref: 1 } }).toArray();
    for (const e of entries) {
      const id = e.ref?.checkoutSessionId ?? '(none)';
      purchaseEntries.set(id, (purchaseEntries.get(id) ?? 0) + 1);
    }
  };

  const measure = async (s: Scenario, load: Omit<LoadOptions, 'url' | 'request'>, attribute = false): Promise<Sample> => {
    await trimLedger();
    await quiesce();
    monitor.take({ attribute });
    s.received = 0;
    const cpu0 = ownCpuMicros();
    const db0 = processCpuMicros(db.pid);
    const result = await runLoad({ url: s.url, request: s.request, ...load });
    await quiesce(); // commands of requests still in flight when the load stopped, and background moves
    const commands = monitor.take();
    const db1 = processCpuMicros(db.pid);
    return {
      load: result,
      received: s.received,
      commands,
      nodeCpuUs: ownCpuMicros() - cpu0,
      dbCpuUs: db0 !== null && db1 !== null ? db1 - db0 : null,
    };
  };

  // ---- warm-up, then alternating rounds (forward, backward, forward...: drift cancels out) ----
  const timed = scenarios;
  const samples = new Map<string, Sample[]>(timed.map((s) => [s.name, []]));
  log(`warm-up: ${cfg.warmupSeconds} s per scenario`);
  for (const s of timed) await measure(s, { connections: cfg.connections, seconds: cfg.warmupSeconds, recordLatencies: false });
  for (let round = 0; round < cfg.rounds; round++) {
    const order = round % 2 === 0 ? timed : [...timed].reverse();
    for (const s of order) {
      const sample = await measure(s, { connections: cfg.connections, seconds: cfg.seconds });
      samples.get(s.name)!.push(sample);
      log(`round ${round + 1}/${cfg.rounds} ${s.name}: ${(sample.load.responses / (sample.load.elapsedMs / 1000)).toFixed(0)} req/s`);
    }
  }

  // ---- which commands were on the request's path, which in the background ----
  log('attributing database commands (async stack of every command)...');
  const attribution = new Map<string, Sample>();
  for (const s of timed) {
    const list = samples.get(s.name)!;
    const rate = sum(list.map((x) => x.load.responses)) / (sum(list.map((x) => x.load.elapsedMs)) / 1000);
    const amount = Math.max(cfg.connections * 4, Math.round(rate * cfg.attributeSeconds));
    attribution.set(s.name, await measure(s, { connections: cfg.connections, amount, recordLatencies: false }, true));
  }

  // ---- overspend under contention: one account, known balance, many concurrent requests ----
  log('contention runs (naive vs requireCredits on one account)...');
  const contention: Report['contention'] = [];
  for (let round = 0; round < cfg.contentionRounds; round++) {
    for (const kind of round % 2 === 0 ? (['naive', 'requireCredits'] as const) : (['requireCredits', 'naive'] as const)) {
      const user = `contended-${kind}-${round}`;
      if (kind === 'naive') await naive.insertOne({ _id: user, balance: cfg.contentionBalance });
      else await credits.grantCredits(user, cfg.contentionBalance, { idempotencyKey: `fund:${user}` });
      await quiesce();
      const result = await runLoad({
        url: byName(kind).url,
        connections: cfg.contentionConnections,
        amount: cfg.contentionRequests,
        request: () => ({ headers: { [USER_HEADER]: user } }),
        recordLatencies: false,
      });
      await quiesce();
      const final = kind === 'naive' ? ((await naive.findOne({ _id: user }))?.balance ?? NaN) : await credits.getBalance(user);
      contention.push({ kind, round: round + 1, requests: result.responses, succeeded: result.ok, final, overspend: result.ok - cfg.contentionBalance });
    }
  }

  // ---- where the time goes: CPU profiles of this process (server + load generator) ----
  const profiles: Array<{ name: string; summary: ProfileSummary; requests: number; file: string }> = [];
  if (cfg.profileSeconds > 0) {
    log('CPU profiles of raw-op and requireCredits...');
    mkdirSync(RESULTS, { recursive: true });
    const profiler = new CpuProfiler(250);
    for (const name of ['raw-op', 'requireCredits']) {
      await quiesce();
      await profiler.start();
      const sample = await measure(byName(name), { connections: cfg.connections, seconds: cfg.profileSeconds, recordLatencies: false });
      const profile = await profiler.stop();
      const file = join(RESULTS, `${name}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      profiles.push({ name, summary: summarizeProfile(profile), requests: sample.received, file });
    }
    profiler.close();
  }

  // ---- memory: a soak of requireCredits, heap after a forced GC at each checkpoint ----
  const soak: Report['soak'] = { seconds: cfg.soakSeconds, checkpoints: [] };
  if (cfg.soakSeconds > 0) {
    log(`soak: requireCredits for ${cfg.soakSeconds} s...`);
    const guarded = byName('requireCredits');
    await quiesce();
    soak.checkpoints.push({ atSeconds: 0, requests: 0, rps: NaN, ...heapAfterGc(gc) });
    const segments = Math.max(1, Math.min(6, Math.round(cfg.soakSeconds / 5)));
    let done = 0;
    let requests = 0;
    for (let i = 0; i < segments; i++) {
      const seconds = cfg.soakSeconds / segments;
      const result = await runLoad({ url: guarded.url, request: guarded.request, connections: cfg.connections, seconds, recordLatencies: false });
      await trimLedger();
      done += seconds;
      requests += result.responses;
      soak.checkpoints.push({ atSeconds: done, requests, rps: result.responses / (result.elapsedMs / 1000), ...heapAfterGc(gc) });
    }
  }

  // ---- integrity checks on what the runs did: every paid purchase has exactly one purchase entry ----
  await quiesce();
  await tallyPurchaseEntries(); // the entries not trimmed (all of them with BENCH_TRIM_LEDGER=0)
  const paid = await nativeDb
    .collection<{ _id: string }>('credit_purchases')
    .find({ status: 'paid' }, { projection: { _id: 1 } })
    .toArray();
  const paidIds = new Set(paid.map((p) => p._id));
  const checks = {
    webhookDeliveries: byName('webhook').served + byName('webhook-replay').served,
    purchasesPaid: paidIds.size,
    creditedOnce: paid.filter((p) => purchaseEntries.get(p._id) === 1).length,
    creditedOtherwise: paid.filter((p) => purchaseEntries.get(p._id) !== 1).length + [...purchaseEntries.keys()].filter((id) => !paidIds.has(id)).length,
    replayBalance: await credits.getBalance(replayUser),
    backgroundErrors,
    ledgerEntriesTrimmed: db.embedded && cfg.trimLedger ? trimmed : null,
  };

  // ---- client bundle size ----
  log('client bundle size...');
  const size = clientSize();

  // ---- scale: a guarded request as the accounts grow, and history in a long ledger ----
  let scale = '';
  if (cfg.scaleAccounts.length > 0) {
    const scaleRows = await measureScale({
      uri: db.uri,
      accounts: cfg.scaleAccounts,
      ledgerEntries: cfg.scaleLedgerEntries,
      samples: cfg.quick ? 40 : 200,
      log,
    });
    scale = renderScale(scaleRows, db.label);
  }

  // ---- report ----
  const rows: ScenarioRow[] = timed.map((s) => {
    const list = samples.get(s.name)!;
    const responses = sum(list.map((x) => x.load.responses));
    const seconds = sum(list.map((x) => x.load.elapsedMs)) / 1000;
    const received = sum(list.map((x) => x.received));
    const sorted = sortedCopy(list.map((x) => x.load.latencies));
    const non2xx = new Map<number, number>();
    for (const x of list) for (const [code, n] of x.load.non2xx) non2xx.set(code, (non2xx.get(code) ?? 0) + n);
    const att = attribution.get(s.name)!;
    const dbCpu = list.every((x) => x.dbCpuUs !== null) ? sum(list.map((x) => x.dbCpuUs ?? 0)) / received : null;
    return {
      name: s.name,
      about: s.about,
      rps: responses / seconds,
      roundRps: list.map((x) => x.load.responses / (x.load.elapsedMs / 1000)),
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      errors: sum(list.map((x) => x.load.errors)),
      timeouts: sum(list.map((x) => x.load.timeouts)),
      non2xx,
      responses,
      received,
      commandsPerRequest: sum(list.map((x) => x.commands.total)) / received,
      blockingPerRequest: att.commands.blocking / att.received,
      backgroundPerRequest: att.commands.background / att.received,
      kinds: [...att.commands.byKind.values()].map((k) => ({
        kind: k.kind,
        path: k.path,
        perRequest: k.count / att.received,
        statementsPerRequest: k.statements / att.received,
        bytesOutPerCommand: k.bytesOut / k.count,
        bytesInPerCommand: k.bytesIn / k.count,
      })),
      nodeCpuUsPerRequest: sum(list.map((x) => x.nodeCpuUs)) / received,
      dbCpuUsPerRequest: dbCpu,
    };
  });
  const roundRatio = (a: string, b: string) => {
    const xs = samples.get(a)!;
    const ys = samples.get(b)!;
    return xs.map((x, i) => x.load.responses / (x.load.elapsedMs / 1000) / (ys[i]!.load.responses / (ys[i]!.load.elapsedMs / 1000)));
  };
  const ratio = (a: string, b: string) => {
    const perRound = roundRatio(a, b);
    return { name: `${a} / ${b}`, median: median(perRound), min: Math.min(...perRound), max: Math.max(...perRound), rounds: perRound.length };
  };

  const report: Report = {
    config: cfg,
    rows,
    ratios: [
      ratio('requireCredits', 'raw-op'),
      ratio('requireCredits-hot', 'raw-op'),
      ratio('requireCredits-grants', 'requireCredits'),
      ratio('raw-op', 'unguarded'),
      ratio('naive', 'raw-op'),
    ],
    contention,
    costs,
    profiles,
    soak,
    size,
    checks,
    database: db.label,
    embedded: db.embedded,
    environment: environment(startedAt, cfg.quick),
  };
  const markdown = renderReport(report) + (scale ? `\n${scale}` : '');
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'latest.md'), markdown);
  process.stdout.write(markdown);
  log(`written to ${join(RESULTS, 'latest.md')} in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s`);

  await credits.flush();
  await connection.dropDatabase().catch(() => undefined);
  await cleanUp();
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The gzipped size of credit-kit/client, as `npm run size` computes it. */
function clientSize(): Report['size'] {
  return { ...clientBundleSize(), source: 'npm run size (tools/size.ts)', line: '' };
}

function environment(startedAt: Date, quick: boolean): Report['environment'] {
  const cores = cpus();
  const knobs = Object.entries(process.env)
    .filter(([k]) => k.startsWith('BENCH_') || k === 'MONGODB_URI')
    .map(([k, v]) => (k === 'MONGODB_URI' ? `${k}=…` : `${k}=${v}`));
  const viaNpm = process.env.npm_lifecycle_event === 'bench';
  return {
    date: startedAt.toISOString(),
    machine: `${cores.length} cores (${cores[0]?.model.trim() ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory, ${platform()} ${release()}`,
    node: process.version,
    command: `${knobs.join(' ')}${knobs.length ? ' ' : ''}${viaNpm ? 'npm run bench' : 'tsx bench/run.ts'}`,
    quick,
  };
}

main().catch(async (err: unknown) => {
  console.error(err);
  await cleanUp();
  process.exit(1);
});
