/**
 * What tools/mongo/ferretdb-sqlite-index.patch changes: the cost of one guarded decrement,
 * findOneAndUpdate({ _id, balance: { $gte: 1 } }, { $inc: { balance: -1 } }), as the collection grows,
 * on two embedded servers measured side by side in alternating rounds: FerretDB v1.24.2 as released, and
 * with the patch (startEmbeddedMongo({ unpatched: true }) and startEmbeddedMongo()).
 *
 * The results are ratios between the two and between sizes, on the same machine in the same run; the
 * medians are printed for scale only.
 *
 *   npx tsx bench/index-scale.ts [sizes...]      default sizes: 10 1000 100000
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import mongoose, { type Connection } from 'mongoose';
import { startEmbeddedMongo, type EmbeddedMongo } from '../tools/embedded';

const ROUNDS = 3;
const OPS_PER_ROUND = 40;
/** A round on one server stops early after this long (the released build scans 100,000 rows per op). */
const ROUND_BUDGET_MS = 3000;

interface Target {
  name: string;
  server: EmbeddedMongo;
  connection: Connection;
  accounts: ReturnType<typeof accountsOf>;
  samples: number[];
}

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number);
  if (sizes.length === 0) sizes.push(10, 1_000, 100_000);
  if (sizes.some((n, i) => !(n > 0) || (i > 0 && n <= sizes[i - 1]!))) {
    throw new Error('sizes must be positive and growing, e.g. 10 1000 100000');
  }

  const targets: Target[] = [];
  try {
    for (const [name, unpatched] of [
      ['released', true],
      ['patched', false],
    ] as const) {
      const server = await startEmbeddedMongo({ unpatched });
      const connection = await mongoose.createConnection(server.uri, { dbName: 'scale' }).asPromise();
      targets.push({ name, server, connection, accounts: accountsOf(connection), samples: [] });
    }

    const medians = new Map<number, number[]>();
    let have = 0;
    for (const size of sizes) {
      log(`${size} accounts: loading...`);
      await Promise.all(targets.map((t) => load(t.accounts, have, size)));
      have = size;
      for (const t of targets) t.samples = [];
      for (let round = 1; round <= ROUNDS; round++) {
        for (const t of round % 2 ? targets : [...targets].reverse()) await measureRound(t, size);
      }
      medians.set(size, targets.map((t) => median(t.samples)));
      log(`${size} accounts: ${targets.map((t) => `${t.name} ${t.samples.length} ops`).join(', ')}`);
    }

    report(sizes, medians);
  } finally {
    for (const t of targets) {
      await t.connection.close();
      await t.server.stop();
    }
  }
}

function accountsOf(connection: Connection) {
  return connection.collection<{ _id: string; balance: number }>('accounts');
}

/** Adds accounts have..size-1 (ids a0, a1, ...) with a balance no run can exhaust. */
async function load(accounts: Target['accounts'], have: number, size: number): Promise<void> {
  for (let start = have; start < size; start += 5000) {
    const end = Math.min(size, start + 5000);
    await accounts.insertMany(
      Array.from({ length: end - start }, (_, i) => ({ _id: `a${start + i}`, balance: 1e9 })),
      { ordered: false },
    );
  }
}

async function measureRound(t: Target, size: number): Promise<void> {
  const started = performance.now();
  for (let i = 0; i < OPS_PER_ROUND && (i < 2 || performance.now() - started < ROUND_BUDGET_MS); i++) {
    const id = `a${Math.floor(Math.random() * size)}`;
    const t0 = performance.now();
    const doc = await t.accounts.findOneAndUpdate(
      { _id: id, balance: { $gte: 1 } },
      { $inc: { balance: -1 } },
      { returnDocument: 'after' },
    );
    t.samples.push(performance.now() - t0);
    if (!doc) throw new Error(`${t.name}: the guarded decrement of ${id} matched nothing`);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function report(sizes: number[], medians: Map<number, number[]>): void {
  const x = (v: number) => `${v >= 10 ? v.toFixed(0) : v.toFixed(1)}×`;
  const first = medians.get(sizes[0]!)!;
  const out: string[] = [];
  out.push('One guarded findOneAndUpdate({ _id, balance: { $gte: 1 } }, { $inc: { balance: -1 } }), median of');
  out.push(`up to ${ROUNDS * OPS_PER_ROUND} sequential calls per server and size, in ${ROUNDS} alternating rounds.`);
  out.push('');
  out.push('| accounts | released ÷ patched | released: ÷ its smallest size | patched: ÷ its smallest size |');
  out.push('|---:|---:|---:|---:|');
  for (const size of sizes) {
    const [released, patched] = medians.get(size)!;
    out.push(
      `| ${size.toLocaleString('en-US')} | ${x(released! / patched!)} | ` +
        `${x(released! / first[0]!)} | ${x(patched! / first[1]!)} |`,
    );
  }
  out.push('');
  out.push('For scale only (this machine, this run), the medians in ms:');
  out.push('');
  out.push('| accounts | released | patched |');
  out.push('|---:|---:|---:|');
  for (const size of sizes) {
    out.push(`| ${size.toLocaleString('en-US')} | ${medians.get(size)!.map((v) => v.toFixed(2)).join(' | ')} |`);
  }
  out.push('');
  out.push(`Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}).`);
  console.log(out.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
