/**
 * The embedded servers that tests, the demo and the benchmarks run against: a MongoDB-compatible server
 * (FerretDB behind an atomicity gate, tools/mongo) and Stripe's API mock (tools/stripe-mock). Both are Go
 * programs built from the Go module proxy on first use into .cache/bin and reused afterwards.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

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
}

const TOOLS = {
  mongo: { dir: 'mongo', pkg: '.', what: 'the embedded MongoDB-compatible server (FerretDB v1.24.2 + atomicity gate)' },
  'stripe-mock': { dir: 'stripe-mock', pkg: 'github.com/stripe/stripe-mock', what: "Stripe's API mock (stripe-mock)" },
} satisfies Record<string, ToolSpec>;

export type ToolName = keyof typeof TOOLS;

export class MissingToolchainError extends Error {
  override name = 'MissingToolchainError';
}

/** A binary name that changes whenever the tool's sources or pinned versions change. */
function binaryPath(name: ToolName): string {
  const dir = join(ROOT, 'tools', TOOLS[name].dir);
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort()) {
    if (/\.(go|mod|sum)$/.test(file)) hash.update(file).update(readFileSync(join(dir, file)));
  }
  return join(CACHE_DIR, `${name}-${hash.digest('hex').slice(0, 12)}`);
}

function hasGo(): boolean {
  return spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
}

/** Builds the tool once (printing what it does, since the first build takes a minute) and returns its path. */
export function ensureBinary(name: ToolName, log: Log = defaultLog): string {
  const target = binaryPath(name);
  if (existsSync(target)) return target;

  const spec = TOOLS[name];
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
  const tmp = `${target}.${process.pid}.tmp`;
  log(`Building ${spec.what} into ${CACHE_DIR} (first run only, about a minute)...`);
  const started = Date.now();
  const res = spawnSync('go', ['build', '-trimpath', '-o', tmp, spec.pkg], {
    cwd: join(ROOT, 'tools', spec.dir),
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' },
  });
  if (res.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`Building ${spec.what} failed (go build exited ${res.status}); see the output above.`);
  }
  renameSync(tmp, target); // atomic: a concurrent run sees either nothing or the whole binary
  log(`Built ${name} in ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  return target;
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
}

export interface EmbeddedMongoOptions {
  /** Keep the data here (it survives restarts); default: a temporary directory removed on exit. */
  dataDir?: string;
  /** host:port to listen on; default 127.0.0.1 and a free port. */
  listen?: string;
  /** Run FerretDB without the atomicity gate: only to measure the lost updates the gate prevents. */
  noGate?: boolean;
  log?: Log;
}

/** Starts the embedded MongoDB-compatible server and resolves once it accepts connections. */
export async function startEmbeddedMongo(options: EmbeddedMongoOptions = {}): Promise<EmbeddedMongo> {
  const bin = ensureBinary('mongo', options.log);
  const args = ['-listen', options.listen ?? '127.0.0.1:0'];
  if (options.dataDir) {
    mkdirSync(options.dataDir, { recursive: true });
    args.push('-data-dir', options.dataDir);
  }
  if (options.noGate) args.push('-no-gate');
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await firstLine(child, /^MONGODB_URI=(.+)$/, 'credit-kit-mongo');
  return { uri: line[1]!, ...controls(child) };
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
