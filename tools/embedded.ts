/**
 * The embedded servers that tests, the demo and the benchmarks run against: a MongoDB-compatible server
 * (FerretDB behind an atomicity gate, tools/mongo) and Stripe's API mock (tools/stripe-mock). Both are Go
 * programs built from the Go module proxy on first use into .cache/bin and reused afterwards. FerretDB is
 * built with credit-kit's patches applied to a copy of its module (tools/mongo/*.patch).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { applyPatch } from './apply-patch';

export const ROOT = resolve(__dirname, '..');
const CACHE_DIR = process.env.CREDIT_KIT_CACHE_DIR ?? join(ROOT, '.cache', 'bin');

type Log = (line: string) => void;
const defaultLog: Log = (line) => process.stderr.write(`[credit-kit] ${line}\n`);

interface ToolSpec {
  /** Folder of the Go module under tools/. */
  dir: string;
  /** Package to build, relative to that module. */
  pkg: string;
  what: string;
  /**
   * Our correction of one dependency: the file (in the tool's folder) is applied to a copy of that module,
   * at the version the tool's go.mod requires, and the build uses the copy.
   */
  patch?: { module: string; files: string[] };
}

const TOOLS: Record<'mongo' | 'stripe-mock', ToolSpec> = {
  mongo: {
    dir: 'mongo',
    pkg: '.',
    what: 'the embedded MongoDB-compatible server (FerretDB v1.24.2 + atomicity gate)',
    patch: { module: 'github.com/FerretDB/FerretDB', files: ['ferretdb-sqlite-index.patch', 'ferretdb-sqlite-pushdown.patch', 'ferretdb-sqlite-id-in.patch', 'ferretdb-update-connections.patch', 'ferretdb-overhead.patch'] },
  },
  'stripe-mock': { dir: 'stripe-mock', pkg: 'github.com/stripe/stripe-mock', what: "Stripe's API mock (stripe-mock)" },
};

export type ToolName = keyof typeof TOOLS;

export class MissingToolchainError extends Error {
  override name = 'MissingToolchainError';
}

export interface BuildOptions {
  /** Build without the tool's patch (mongo: FerretDB as released): only to measure what the patch changes. */
  unpatched?: boolean;
}

/** A binary name that changes whenever the tool's sources, patch or pinned versions change. */
function binaryPath(name: ToolName, unpatched: boolean): string {
  const dir = join(ROOT, 'tools', TOOLS[name].dir);
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort()) {
    if (/\.(go|mod|sum|patch)$/.test(file)) hash.update(file).update(readFileSync(join(dir, file)));
  }
  return join(CACHE_DIR, `${name}${unpatched ? '-unpatched' : ''}-${hash.digest('hex').slice(0, 12)}`);
}

function hasGo(): boolean {
  return spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
}

/** Builds the tool once (printing what it does, since the first build takes a minute) and returns its path. */
export function ensureBinary(name: ToolName, log: Log = defaultLog, options: BuildOptions = {}): string {
  const spec = TOOLS[name];
  const patch = options.unpatched ? undefined : spec.patch;
  const target = binaryPath(name, spec.patch !== undefined && patch === undefined);
  if (existsSync(target)) return target;

  if (!hasGo()) {
    throw new MissingToolchainError(
      `Cannot start ${spec.what}: it is built from source with Go, and no \`go\` command was found.\n` +
        `Either install Go 1.24 or newer (https://go.dev/dl/, or \`apt-get install golang\`) and run again, ` +
        (name === 'mongo'
          ? 'or set MONGODB_URI to a MongoDB you already run (mongodb://127.0.0.1:27017/, or an Atlas URI).'
          : 'or point the tests at another Stripe mock with STRIPE_MOCK_URL=http://127.0.0.1:12111.'),
    );
  }

  mkdirSync(CACHE_DIR, { recursive: true });
  const toolDir = join(ROOT, 'tools', spec.dir);
  const tmp = `${target}.${process.pid}.tmp`;
  const variant = spec.patch && !patch ? ' WITHOUT our patch (for comparison only)' : '';
  log(`Building ${spec.what}${variant} into ${CACHE_DIR} (first run only, about a minute)...`);
  const started = Date.now();
  const buildArgs = ['build', '-trimpath', '-o', tmp];
  const work = patch && preparePatchedModule(toolDir, spec, patch, `${basename(target)}.${process.pid}`, log);
  if (work) buildArgs.push(`-modfile=${join(work, 'go.mod')}`);
  log(`Compiling ${spec.pkg === '.' ? `tools/${spec.dir}` : spec.pkg} with go build...`);
  const res = spawnSync('go', [...buildArgs, spec.pkg], {
    cwd: toolDir,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: goEnv(),
  });
  if (res.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(
      `Building ${spec.what} failed (go build exited ${res.status}); see the output above.` +
        (work ? ` The patched source is kept in ${work}.` : ''),
    );
  }
  renameSync(tmp, target); // atomic: a concurrent run sees either nothing or the whole binary
  if (work) rmSync(work, { recursive: true, force: true });
  log(`Built ${name} in ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  return target;
}

function goEnv(): NodeJS.ProcessEnv {
  return { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' };
}

/** Runs a go command that prints a result on stdout (its progress and errors go to our stderr). */
function goOutput(args: string[], cwd: string): string {
  const options: SpawnSyncOptions = { cwd, env: goEnv(), stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' };
  const res = spawnSync('go', args, options);
  if (res.status !== 0) throw new Error(`\`go ${args.join(' ')}\` failed (exit ${res.status}); see the output above.`);
  return String(res.stdout);
}

/**
 * Makes the directory a build of the tool uses instead of its go.mod: a copy of the patched module's source,
 * as the Go module proxy serves it at the version the tool requires (and as go.sum pins it), with the patch
 * applied; and a go.mod/go.sum pair that is the tool's own plus a `replace` pointing at that copy. The
 * repository's go.mod is never touched. Returns the directory; `go build -modfile=<dir>/go.mod` uses it.
 */
function preparePatchedModule(
  toolDir: string,
  spec: ToolSpec,
  patch: NonNullable<ToolSpec['patch']>,
  workName: string,
  log: Log,
): string {
  const version = goOutput(['list', '-m', '-f', '{{.Version}}', patch.module], toolDir).trim();
  log(`Fetching ${patch.module}@${version} from the Go module proxy (verified against go.sum)...`);
  const info = JSON.parse(goOutput(['mod', 'download', '-json', `${patch.module}@${version}`], toolDir)) as {
    Dir?: string;
    Error?: string;
  };
  if (info.Error || !info.Dir) {
    throw new Error(`Could not download ${patch.module}@${version}: ${info.Error ?? 'no Dir'}`);
  }

  const work = join(CACHE_DIR, '.build', workName);
  const src = join(work, 'src');
  rmSync(work, { recursive: true, force: true });
  copyTreeWritable(info.Dir, src); // the module cache is read-only
  for (const file of patch.files) {
    log(`Applying tools/${spec.dir}/${file} to a copy of it in ${relative(ROOT, src) || src}...`);
    let changed: string[];
    try {
      changed = applyPatch(src, readFileSync(join(toolDir, file), 'utf8'));
    } catch (err) {
      throw new Error(
        `tools/${spec.dir}/${file} does not apply to ${patch.module}@${version}: ${(err as Error).message}. ` +
          'If the version in go.mod was changed on purpose, see tools/README.md for what the patch does ' +
          'and when to drop it.',
      );
    }
    log(`Patched ${changed.map((f) => relative(src, f)).join(', ')}.`);
  }

  copyFileSync(join(toolDir, 'go.mod'), join(work, 'go.mod'));
  copyFileSync(join(toolDir, 'go.sum'), join(work, 'go.sum')); // -modfile=X.mod reads X.sum beside it
  goOutput(['mod', 'edit', `-replace=${patch.module}@${version}=${src}`, join(work, 'go.mod')], toolDir);
  return work;
}

function copyTreeWritable(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  chmodSync(to, 0o755);
  for (const entry of readdirSync(from)) {
    const a = join(from, entry);
    const b = join(to, entry);
    if (statSync(a).isDirectory()) copyTreeWritable(a, b);
    else {
      copyFileSync(a, b);
      chmodSync(b, 0o644);
    }
  }
}

export interface RunningServer {
  /** Ends the server gracefully (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would, and waits for it to exit. */
  kill(): Promise<void>;
  readonly process: ChildProcess;
}

export interface EmbeddedMongo extends RunningServer {
  uri: string;
  /** With `pprof`: where the server serves its profiles, e.g. `http://127.0.0.1:PORT/debug/pprof/`. */
  pprofUrl?: string;
}

export interface EmbeddedMongoOptions {
  /** Keep the data here (it survives restarts); default: a temporary directory removed on exit. */
  dataDir?: string;
  /** host:port to listen on; default 127.0.0.1 and a free port. */
  listen?: string;
  /** Run FerretDB without the atomicity gate: only to measure the lost updates the gate prevents. */
  noGate?: boolean;
  /** Run FerretDB as released, without our patch: only to measure what the patch changes. */
  unpatched?: boolean;
  /**
   * Append SQLite's query plan of every statement FerretDB runs on collection data to this file, one JSON
   * line each ({ db, sql, plan: string[] }): for tests that check an index is used. Slows every command.
   */
  planLog?: string;
  /** Serve Go's runtime profiles of the server on a free loopback port (`pprofUrl`): for bench/db-profile.ts. */
  pprof?: boolean;
  log?: Log;
}

/** Starts the embedded MongoDB-compatible server and resolves once it accepts connections. */
export async function startEmbeddedMongo(options: EmbeddedMongoOptions = {}): Promise<EmbeddedMongo> {
  const bin = ensureBinary('mongo', options.log, { unpatched: options.unpatched });
  const args = ['-listen', options.listen ?? '127.0.0.1:0'];
  if (options.dataDir) {
    mkdirSync(options.dataDir, { recursive: true });
    args.push('-data-dir', options.dataDir);
  }
  if (options.noGate) args.push('-no-gate');
  if (options.planLog) args.push('-plan-log', options.planLog);
  if (options.pprof) args.push('-pprof-listen', '127.0.0.1:0');
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  // The PPROF= line comes before the URI line, so it is in hand once the URI is.
  let pprofUrl: string | undefined;
  if (options.pprof) child.stdout?.on('data', (chunk) => (pprofUrl ??= /^PPROF=(\S+)$/m.exec(String(chunk))?.[1]));
  const line = await firstLine(child, /^MONGODB_URI=(.+)$/, 'credit-kit-mongo');
  return { uri: line[1]!, ...(pprofUrl ? { pprofUrl } : {}), ...controls(child) };
}

export interface StripeMock extends RunningServer {
  host: string;
  port: number;
  /** Options for `new Stripe(key, { ...stripeMock.clientOptions })`. */
  clientOptions: { host: string; port: number; protocol: 'http' };
}

/** Starts stripe-mock on a free loopback port (HTTP only; its HTTPS side sits on a private Unix socket). */
export async function startStripeMock(log?: Log): Promise<StripeMock> {
  const bin = ensureBinary('stripe-mock', log);
  const dir = await mkdtemp(join(tmpdir(), 'ckstripe'));
  const child = spawn(bin, ['-http-addr', '127.0.0.1:', '-https-unix', join(dir, 'https.sock')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  // stripe-mock logs to stdout or stderr depending on the version; watch both.
  const match = await firstLine(child, /Listening for HTTP at address: ([\d.]+):(\d+)/, 'stripe-mock', [
    'stdout',
    'stderr',
  ]);
  const host = match[1]!;
  const port = Number(match[2]);
  return { host, port, clientOptions: { host, port, protocol: 'http' }, ...controls(child) };
}

function controls(child: ChildProcess): RunningServer {
  // A server never outlives the process that started it, even when that process ends without stopping it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    else
      child.once('exit', () => {
        process.off('exit', killOnExit);
        res();
      });
  });
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { process: child, stop: () => end('SIGTERM'), kill: () => end('SIGKILL') };
}

function firstLine(
  child: ChildProcess,
  pattern: RegExp,
  name: string,
  streams: Array<'stdout' | 'stderr'> = ['stdout'],
): Promise<RegExpMatchArray> {
  return new Promise((resolvePromise, reject) => {
    const readers = streams.flatMap((s) => (child[s] ? [createInterface({ input: child[s] })] : []));
    const seen: string[] = [];
    let done = false;
    const timer = setTimeout(() => fail(new Error(`${name} did not start within 60 s:\n${seen.join('\n')}`)), 60_000);
    const onExit = (code: number | null) =>
      fail(new Error(`${name} exited (code ${code}) before it was ready:\n${seen.join('\n')}`));
    function fail(err: Error) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.off('exit', onExit);
      for (const rl of readers) rl.close();
      reject(err);
    }
    child.once('exit', onExit);
    for (const rl of readers) {
      // Readers keep draining after the match so the child never blocks on a full pipe.
      rl.on('line', (text) => {
        if (done) return;
        const m = pattern.exec(text);
        if (!m) {
          if (seen.length < 50) seen.push(text);
          return;
        }
        done = true;
        clearTimeout(timer);
        child.off('exit', onExit);
        resolvePromise(m);
      });
    }
  });
}
