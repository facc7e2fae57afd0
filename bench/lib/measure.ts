/**
 * What the bench counts besides requests: database commands (the driver's command monitoring), CPU time of
 * this process and of the embedded database process, heap after a forced GC, and CPU profiles.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import type { Profiler, Runtime } from 'node:inspector';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BSON, type CommandStartedEvent, type CommandSucceededEvent, type Db, type MongoClient } from 'mongodb';

/** Where a command was issued from, decided from its async stack (see CommandMonitor.attribute). */
export type Path = 'blocking' | 'background';

export interface CommandCounts {
  total: number;
  /** One row per (`commandName collection`, path); filled only while attributing. */
  byKind: Map<string, { kind: string; path: Path; count: number; statements: number; bytesOut: number; bytesIn: number }>;
  blocking: number;
  background: number;
}

/** The field holding the statements of a write command. */
const WRITE_BATCH: Record<string, string> = { insert: 'documents', update: 'updates', delete: 'deletes' };

/**
 * Async stack frames of the kit's fire-and-forget work: the journal mover (server/ledger/journal-mover.ts,
 * started on a timer, never awaited by a request) and the queue of work owed after an answer
 * (server/ledger/background.ts). A command whose async stack passes through one did not hold up the
 * response. (A refund after a failed answer is not listed: middleware.ts holds the answer back until it is
 * written.)
 */
const BACKGROUND_FRAMES = /\b(JournalMover|Background)\.\w+/;

/**
 * Counts every command the driver starts (`commandStarted`, which the connection emits because it was
 * created with `monitorCommands: true`). While `attributing` is on it also captures each command's async
 * stack trace (V8 follows `await` chains) and sorts the command into blocking or background work; that is
 * too slow for timed runs, so it is done in a separate short pass.
 */
export class CommandMonitor {
  private counts: CommandCounts = emptyCounts();
  private attributing = false;

  /** While attributing: the row of each command in flight, by request id, for its reply's size. */
  private readonly inFlight = new Map<number, { bytesIn: number }>();

  constructor(client: MongoClient) {
    client.on('commandStarted', (event) => this.onStarted(event));
    client.on('commandSucceeded', (event) => this.onSucceeded(event));
  }

  private onSucceeded(event: CommandSucceededEvent): void {
    const row = this.inFlight.get(event.requestId);
    if (!row) return;
    this.inFlight.delete(event.requestId);
    row.bytesIn += BSON.calculateObjectSize(event.reply as BSON.Document);
  }

  private onStarted(event: CommandStartedEvent): void {
    const c = this.counts;
    c.total++;
    if (!this.attributing) return;
    const holder: { stack?: string } = {};
    Error.captureStackTrace(holder);
    const path: Path = BACKGROUND_FRAMES.test(holder.stack ?? '') ? 'background' : 'blocking';
    c[path]++;
    const target: unknown = (event.command as Record<string, unknown>)[event.commandName];
    const kind = `${event.commandName} ${typeof target === 'string' ? target : ''}`.trim();
    // A write command carries a batch of statements (a bulkWrite's updates, an insertMany's documents).
    const batch = (event.command as Record<string, unknown>)[WRITE_BATCH[event.commandName] ?? ''];
    const statements = Array.isArray(batch) ? batch.length : 1;
    const key = `${kind}\u0000${path}`;
    const bytesOut = BSON.calculateObjectSize(event.command);
    let entry = c.byKind.get(key);
    if (entry) {
      entry.count++;
      entry.statements += statements;
      entry.bytesOut += bytesOut;
    } else c.byKind.set(key, (entry = { kind, path, count: 1, statements, bytesOut, bytesIn: 0 }));
    this.inFlight.set(event.requestId, entry);
  }

  /** Commands started since the last take(). */
  peek(): number {
    return this.counts.total;
  }

  /** Starts a new count; returns the previous one. */
  take(options: { attribute?: boolean } = {}): CommandCounts {
    const previous = this.counts;
    this.counts = emptyCounts();
    this.attributing = options.attribute === true;
    if (this.attributing) Error.stackTraceLimit = Math.max(Error.stackTraceLimit, 100);
    return previous;
  }
}

function emptyCounts(): CommandCounts {
  return { total: 0, byKind: new Map(), blocking: 0, background: 0 };
}

/** CPU time (user + system) of another process, from /proc; null where /proc is not available. */
export function processCpuMicros(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ", field 3 (state) is index 0; utime and stime are fields 14 and 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? (ticks * 1e6) / clockTicks() : null;
  } catch {
    return null;
  }
}

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(out.stdout?.trim());
    ticksPerSecond = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

export function ownCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** A full GC, whether or not node was started with --expose-gc. */
export function forcedGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

export function heapAfterGc(gc: () => void): { heapUsed: number; rss: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss };
}

// ---- statistics ----

export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export function sortedCopy(values: number[][]): Float64Array {
  let n = 0;
  for (const v of values) n += v.length;
  const out = new Float64Array(n);
  let i = 0;
  for (const v of values) {
    out.set(v, i);
    i += v.length;
  }
  return out.sort();
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

// ---- CPU profiles ----

export class CpuProfiler {
  private readonly session = new Session();

  constructor(samplingIntervalUs: number) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
  }

  private post(method: string, params?: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result)));
    });
  }

  async start(): Promise<void> {
    await this.post('Profiler.start');
  }

  async stop(): Promise<Profiler.Profile> {
    const result = (await this.post('Profiler.stop')) as Profiler.StopReturnType;
    return result.profile;
  }

  close(): void {
    this.session.disconnect();
  }
}

export type Category =
  | 'idle'
  | 'credit-kit (server/)'
  | 'mongodb driver + bson'
  | 'mongoose'
  | 'express + other packages'
  | 'stripe-node'
  | 'load generator (autocannon)'
  | 'bench harness'
  | 'node core'
  | 'GC'
  | 'other';

export interface ProfileSummary {
  /** Wall time covered by the profile, ms. */
  wallMs: number;
  /** Wall ms per category (samples × the profile's mean interval). */
  byCategory: Map<Category, number>;
  /** Functions of credit-kit (server/) with the most self time: [label, ms]. */
  topFunctions: Array<[string, number]>;
}

const DRIVER = new Set(['mongodb', 'bson', 'mongodb-connection-string-url', 'whatwg-url', 'webidl-conversions', 'tr46']);
const MONGOOSE = new Set(['mongoose', 'mquery', 'mpath', 'kareem', 'sift']);
const LOAD_GENERATOR = new Set([
  'autocannon',
  'hdr-histogram-js',
  'hdr-histogram-percentiles-obj',
  'http-parser-js',
  'hyperid',
  'retimer',
  'reinterval',
  'lodash.chunk',
  'lodash.clonedeep',
  'lodash.flatten',
]);

function packageOf(url: string): string | null {
  const i = url.lastIndexOf('node_modules/');
  if (i < 0) return null;
  const rest = url.slice(i + 'node_modules/'.length).split('/');
  return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? null);
}

function categorize(frame: Runtime.CallFrame): Category {
  const { url, functionName } = frame;
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'GC';
  const pkg = packageOf(url);
  if (pkg !== null) {
    if (DRIVER.has(pkg)) return 'mongodb driver + bson';
    if (MONGOOSE.has(pkg)) return 'mongoose';
    if (pkg === 'stripe') return 'stripe-node';
    if (LOAD_GENERATOR.has(pkg)) return 'load generator (autocannon)';
    return 'express + other packages';
  }
  if (/\/server\//.test(url)) return 'credit-kit (server/)';
  if (/\/bench\//.test(url)) return 'bench harness';
  if (url.startsWith('node:') || (url === '' && functionName !== '(program)' && functionName !== '(root)')) return 'node core';
  return 'other';
}

function shortUrl(url: string): string {
  const i = url.lastIndexOf('node_modules/');
  if (i >= 0) return url.slice(i + 'node_modules/'.length);
  const j = url.search(/\/(server|bench)\//);
  return j >= 0 ? url.slice(j + 1) : url;
}

export function summarizeProfile(profile: Profiler.Profile): ProfileSummary {
  const samples = profile.samples ?? [];
  const wallMs = (profile.endTime - profile.startTime) / 1000;
  const perSample = samples.length > 0 ? wallMs / samples.length : 0;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const hits = new Map<number, number>();
  for (const id of samples) hits.set(id, (hits.get(id) ?? 0) + 1);

  const byCategory = new Map<Category, number>();
  const fnMs = new Map<string, number>();
  for (const [id, count] of hits) {
    const node = byId.get(id);
    if (!node) continue;
    const cat = categorize(node.callFrame);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + count * perSample);
    if (cat === 'credit-kit (server/)') {
      const f = node.callFrame;
      // Line numbers are those of tsx's transpiled output, not of the .ts source: leave them out.
      const label = `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}`;
      fnMs.set(label, (fnMs.get(label) ?? 0) + count * perSample);
    }
  }
  const topFunctions = [...fnMs.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
  return { wallMs, byCategory, topFunctions };
}

// ---- cost of one operation by collection size ----

export interface OperationCost {
  size: number;
  /** Median ms of one sequential round trip, by operation. */
  findOne: number;
  updateOne: number;
  upsert: number;
  insertOne: number;
}

/**
 * How the database's cost of one single-document operation by _id depends on the size of the collection:
 * with an _id index (MongoDB) it should not; the bench's notes rely on this to explain its figures.
 */
export async function operationCosts(db: Db, sizes: number[], ops: number): Promise<OperationCost[]> {
  const out: OperationCost[] = [];
  for (const size of sizes) {
    const c = db.collection<{ _id: string; n: number }>(`bench_cost_${size}`);
    for (let i = 0; i < size; i += 1000) {
      await c.insertMany(Array.from({ length: Math.min(1000, size - i) }, (_, j) => ({ _id: `d${i + j}`, n: 0 })));
    }
    const time = async (fn: (i: number) => Promise<unknown>) => {
      const ms: number[] = [];
      for (let i = 0; i < ops; i++) {
        const t = performance.now();
        await fn(i);
        ms.push(performance.now() - t);
      }
      return median(ms);
    };
    const some = (i: number) => `d${(i * 7919) % size}`;
    out.push({
      size,
      findOne: await time((i) => c.findOne({ _id: some(i) })),
      updateOne: await time((i) => c.updateOne({ _id: some(i) }, { $inc: { n: 1 } })),
      upsert: await time((i) => c.updateOne({ _id: `u${i}` }, { $setOnInsert: { n: 0 } }, { upsert: true })),
      insertOne: await time((i) => c.insertOne({ _id: `i${i}`, n: 0 })),
    });
    await c.drop();
  }
  return out;
}
