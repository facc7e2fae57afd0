/**
 * Where the embedded database's CPU goes, per guarded change: a Go CPU profile of the server (gate and
 * FerretDB) taken over exactly the window in which each workload runs, side by side in one run.
 *
 *   npm run bench:db (npx tsx bench/db-profile.ts)   BENCH_SECONDS (5) a window, BENCH_ROUNDS (2), BENCH_CONNECTIONS (10)
 *
 * Workloads, alternated round by round on one server:
 * - raw-op: one native guarded findOneAndUpdate of a one-field document (what the bench's raw-op route runs);
 * - deductCredits: the kit's guarded change (the database work of requireCredits) on a pool of 200 accounts;
 * - deductCredits-hot: the same on one account;
 * - deductCredits-grants: the same on accounts of 20 open grants.
 * Each sample of the profile is put in one kind of work (the first of KINDS its stack matches) and one
 * command (the wire command it serves), and divided by the changes done in the window. The kit's background
 * journal moves are part of its cost and are counted where they fall (insert, update).
 * Only the embedded server has these profiles; with MONGODB_URI set it stops with a message.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mongoose from 'mongoose';
import { createCredits } from 'credit-kit/server';
import { ensureBinary, startEmbeddedMongo } from '../tools/embedded';
import { fundWithGrants, inBatches } from './lib/funding';

const RESULTS = join(__dirname, 'results');
const log = (line: string) => process.stderr.write(`[db-profile] ${line}\n`);
const num = (name: string, fallback: number) => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return n;
};

/** Kinds of work, most specific first: a sample goes to the first whose pattern one of its frames matches. */
const KINDS: Array<[string, RegExp]> = [
  ['GC (background marking, sweeping)', /^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge)/],
  ['SQLite commit (WAL write, fsync)', /fsql\.\(\*Tx\)\.Commit/],
  ['stored JSON → document (sjson decode)', /internal\/handler\/sjson\.Unmarshal/],
  ['document → stored JSON (sjson encode)', /internal\/handler\/sjson\.Marshal/],
  ['SQLite statements (JSON functions, indexes, pages)', /^modernc\.org\/sqlite/],
  ['wire messages and BSON', /FerretDB\/internal\/(bson|wire)\./],
  ['filters and update operators', /FerretDB\/internal\/(handler\/common|types)\./],
  ['the gate (our relay and locks)', /^main\./],
];
const COMMANDS: Array<[string, RegExp]> = [
  ['findAndModify', /MsgFindAndModify/],
  ['insert', /MsgInsert/],
  ['update', /MsgUpdate/],
  ['find, getMore', /Msg(Find|GetMore)$/],
];

interface Tally {
  totalMs: number;
  kinds: Map<string, number>;
  commands: Map<string, number>;
}

/** Reads a CPU profile through `go tool pprof -traces` and tallies its samples by kind and by command. */
function tally(binary: string, file: string): Tally {
  const out = spawnSync('go', ['tool', 'pprof', '-traces', binary, file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (out.status !== 0) throw new Error(`go tool pprof failed: ${out.stderr}`);
  const t: Tally = { totalMs: 0, kinds: new Map(), commands: new Map() };
  for (const block of out.stdout.split(/^-+\+-+$/m).slice(1)) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    const head = /^\s*([\d.]+)(ms|s|us|µs)\s+(.*)$/.exec(lines[0] ?? '');
    if (!head) continue;
    const ms = Number(head[1]) * ({ s: 1000, ms: 1, us: 0.001, µs: 0.001 } as Record<string, number>)[head[2]!]!;
    const frames = [head[3]!, ...lines.slice(1)].map((l) => l.trim().replace(/ \(inline\)$/, ''));
    const pick = (table: Array<[string, RegExp]>, rest: string) =>
      table.find(([, re]) => frames.some((f) => re.test(f)))?.[0] ?? rest;
    const kind = pick(KINDS, 'other (runtime, allocation, handler)');
    const command = frames.some((f) => f.startsWith('runtime.gc') || f.startsWith('runtime.bg'))
      ? 'none (GC)'
      : pick(COMMANDS, frames.some((f) => f.startsWith('main.')) ? 'the gate' : 'other');
    t.totalMs += ms;
    t.kinds.set(kind, (t.kinds.get(kind) ?? 0) + ms);
    t.commands.set(command, (t.commands.get(command) ?? 0) + ms);
  }
  return t;
}

async function main(): Promise<void> {
  if (process.env.MONGODB_URI) throw new Error('db-profile profiles the embedded server only; unset MONGODB_URI.');
  const seconds = num('BENCH_SECONDS', 5);
  const rounds = Math.round(num('BENCH_ROUNDS', 2));
  const connections = Math.round(num('BENCH_CONNECTIONS', 10));
  const binary = ensureBinary('mongo', log);
  const mongo = await startEmbeddedMongo({ pprof: true, log });
  const connection = await mongoose.createConnection(mongo.uri, { dbName: 'ck_db_profile', maxPoolSize: 100 }).asPromise();
  try {
    const credits = createCredits({ connection, getUserId: () => null });
    await credits.init();
    const BIG = 1_000_000_000;
    // 200 accounts, so that in a window of a few seconds each account sees enough spends for its journal to
    // be pulled at its usual length (8 entries), as in a steady state: the pulls are part of a spend's cost.
    const users = Array.from({ length: 200 }, (_, i) => `u${i}`);
    const grantUsers = Array.from({ length: 100 }, (_, i) => `g${i}`);
    log('funding 200 accounts, one hot account and 100 accounts of 20 grants each...');
    await inBatches([...users, 'hot'], 25, (u) => credits.grantCredits(u, BIG, { idempotencyKey: `fund:${u}` }));
    await fundWithGrants(credits, grantUsers, 20, BIG);
    const raw = connection.getClient().db('ck_db_profile').collection<{ _id: string; balance: number }>('bench_raw');
    await raw.insertMany(users.map((_id) => ({ _id, balance: BIG })));
    await credits.flush();

    const pick = (list: string[]) => list[Math.floor(Math.random() * list.length)]!;
    const workloads: Array<[string, () => Promise<unknown>]> = [
      ['raw-op', () => raw.findOneAndUpdate({ _id: pick(users), balance: { $gte: 1 } }, { $inc: { balance: -1 } }, { returnDocument: 'after' })],
      ['deductCredits', () => credits.deductCredits(pick(users), 1)],
      ['deductCredits-hot', () => credits.deductCredits('hot', 1)],
      ['deductCredits-grants', () => credits.deductCredits(pick(grantUsers), 1)],
    ];
    const results = new Map<string, Array<{ ops: number; tally: Tally }>>();
    mkdirSync(RESULTS, { recursive: true });
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? workloads : [...workloads].reverse();
      for (const [name, op] of order) {
        await credits.flush();
        const file = join(RESULTS, `db-profile-${name}-${round}.pprof`);
        log(`round ${round}: ${name} for ${seconds} s under a CPU profile...`);
        const profile = fetch(`${mongo.pprofUrl}profile?seconds=${seconds}`).then(async (r) => {
          if (!r.ok) throw new Error(`profile: HTTP ${r.status}`);
          writeFileSync(file, Buffer.from(await r.arrayBuffer()));
        });
        let ops = 0;
        const until = Date.now() + seconds * 1000;
        await Promise.all(
          Array.from({ length: connections }, async () => {
            while (Date.now() < until) {
              const r = await op();
              if (r === false || r === null) throw new Error(`${name}: a change was refused`);
              ops++;
            }
          }),
        );
        await profile;
        const list = results.get(name) ?? [];
        list.push({ ops, tally: tally(binary, file) });
        results.set(name, list);
      }
    }
    await credits.flush();
    const report = render(results, { seconds, rounds, connections });
    writeFileSync(join(RESULTS, 'db-profile.md'), report);
    process.stdout.write(report);
    log(`written to bench/results/db-profile.md (profiles: bench/results/db-profile-*.pprof, read with go tool pprof ${binary} FILE)`);
  } finally {
    await connection.close();
    await mongo.stop();
  }
}

function render(results: Map<string, Array<{ ops: number; tally: Tally }>>, cfg: { seconds: number; rounds: number; connections: number }): string {
  const names = [...results.keys()];
  const perOp = (name: string, get: (t: Tally) => number) => {
    const runs = results.get(name)!;
    const sum = runs.reduce((a, r) => a + get(r.tally), 0);
    return (sum * 1000) / runs.reduce((a, r) => a + r.ops, 0); // µs per change
  };
  const fmt = (us: number) => (us < 0.5 ? '·' : Math.round(us).toLocaleString('en-US'));
  const table = (title: string, keys: string[], get: (t: Tally, key: string) => number) => {
    const rows = keys
      .map((k) => [k, ...names.map((n) => perOp(n, (t) => get(t, k)))] as const)
      .filter(([, ...v]) => v.some((x) => x >= 0.5));
    return [
      `| ${title} | ${names.join(' | ')} |`,
      `| --- | ${names.map(() => '---:').join(' | ')} |`,
      ...rows.map(([k, ...v]) => `| ${k} | ${v.map(fmt).join(' | ')} |`),
      `| **all database CPU** | ${names.map((n) => `**${fmt(perOp(n, (t) => t.totalMs))}**`).join(' | ')} |`,
    ].join('\n');
  };
  const allKinds = [...KINDS.map(([k]) => k), 'other (runtime, allocation, handler)'];
  const allCommands = [...COMMANDS.map(([k]) => k), 'the gate', 'other', 'none (GC)'];
  const rate = names.map((n) => {
    const runs = results.get(n)!;
    return `${n} ${Math.round(runs.reduce((a, r) => a + r.ops, 0) / (runs.length * cfg.seconds))}/s`;
  });
  const base = perOp('raw-op', (t) => t.totalMs);
  return [
    `# Database CPU per change, embedded server (${new Date().toISOString().slice(0, 10)})`,
    '',
    `\`npx tsx bench/db-profile.ts\`: ${cfg.rounds} alternating rounds of ${cfg.seconds} s each, ${cfg.connections} changes in flight;`,
    `µs of the server's CPU (Go profile of the gate and FerretDB) per change done in the window. Changes/s: ${rate.join(', ')}.`,
    `Database CPU per change against raw-op: ${names.map((n) => `${n} ${(perOp(n, (t) => t.totalMs) / base).toFixed(2)}×`).join(', ')}.`,
    '',
    table('by kind of work (µs per change)', allKinds, (t, k) => t.kinds.get(k) ?? 0),
    '',
    table('by command (µs per change)', allCommands, (t, k) => t.commands.get(k) ?? 0),
    '',
  ].join('\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
