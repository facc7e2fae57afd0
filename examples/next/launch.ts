/**
 * `npm start` in examples/next: the Next.js example on the Express demo's embedded defaults, then
 * `next start` (after `npm run build`).
 *
 *   MONGODB_URI unset       → the embedded MongoDB-compatible server (tools/embedded.ts), data in .data/mongo
 *   STRIPE_SECRET_KEY unset → the demo's Stripe Checkout simulator (demo/stripe-simulator.ts); its checkout
 *                             page is served on a loopback port of its own
 *   STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET set → Stripe's test mode (`stripe listen` forwards events)
 *   PORT (3000; 0 picks a free one), EXAMPLE_PUBLIC_URL (http://localhost:PORT), EXAMPLE_DATA_DIR (.data:
 *   the database and the cookie-signing secret), EXAMPLE_SESSION_SECRET
 *
 * The infrastructure comes from the repository (tools/, demo/); the app itself, under app/, uses only
 * credit-kit/fetch and credit-kit/client, and reads what this script starts from the environment
 * (lib/credits.ts).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import express from 'express';
import { keptSessionSecret } from '../../demo/session-secret';
import { startStripeSimulator, type StripeSimulator } from '../../demo/stripe-simulator';
import { startEmbeddedMongo, type EmbeddedMongo } from '../../tools/embedded';

const log = (line: string) => console.log(`[example] ${line}`);
const simLog = (line: string) => console.log(`[stripe-simulator] ${line}`);

class StartupError extends Error {}

/** What to stop on the way out, newest last. */
const stops: Array<() => Promise<void>> = [];
const stopAll = async () => {
  for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
};

async function main(): Promise<void> {
  const env = process.env;
  const dataDir = resolve(env.EXAMPLE_DATA_DIR || join(__dirname, '.data'));
  mkdirSync(dataDir, { recursive: true });
  const port = await choosePort(env.PORT);
  const publicUrl = (env.EXAMPLE_PUBLIC_URL || `http://localhost:${port}`).replace(/\/+$/, '');
  const stripeKey = env.STRIPE_SECRET_KEY || undefined;
  if (stripeKey && !/^(sk|rk)_test_/.test(stripeKey)) throw new StartupError('STRIPE_SECRET_KEY is not a test key (sk_test_… or rk_test_…). The example never runs with live keys.');
  if (stripeKey && !env.STRIPE_WEBHOOK_SECRET) {
    throw new StartupError(`STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: run \`stripe listen --forward-to localhost:${port}/api/stripe/webhook\` and set it to the whsec_… it prints.`);
  }

  const appEnv: NodeJS.ProcessEnv = {
    ...env,
    NEXT_TELEMETRY_DISABLED: '1',
    EXAMPLE_PUBLIC_URL: publicUrl,
    // Kept in the data directory, so people stay signed in across restarts.
    EXAMPLE_SESSION_SECRET: keptSessionSecret(dataDir, env.EXAMPLE_SESSION_SECRET),
  };

  // ---- the database ------------------------------------------------------------------------------------
  let mongo: EmbeddedMongo | undefined;
  if (env.MONGODB_URI) {
    log('Database: MONGODB_URI');
  } else {
    const mongoDir = join(dataDir, 'mongo');
    log(`Database: the embedded MongoDB-compatible server (FerretDB + SQLite), data kept in ${mongoDir}`);
    mongo = await startEmbeddedMongo({ dataDir: mongoDir });
    stops.push(() => mongo!.stop());
    appEnv.MONGODB_URI = mongo.uri;
  }

  // ---- Stripe: test mode with keys, else the simulator ------------------------------------------------
  let simulator: StripeSimulator | undefined;
  if (stripeKey) {
    log(`Stripe: test mode (${stripeKey.slice(0, 8)}…)`);
  } else {
    // The checkout page is an Express router; it gets a loopback server of its own beside Next.js.
    const pagesApp = express();
    const pages = createServer(pagesApp);
    await listen(pages, 0);
    const pagesUrl = `http://localhost:${(pages.address() as AddressInfo).port}/simulated-checkout`;
    const secretKey = `sk_test_simulator_${randomBytes(12).toString('hex')}`;
    const webhookSecret = `whsec_simulator_${randomBytes(16).toString('hex')}`;
    const webhookUrl = `http://127.0.0.1:${port}/api/stripe/webhook`;
    simulator = await startStripeSimulator({ secretKey, webhookSecret, webhookUrl, checkoutUrl: pagesUrl, log: simLog });
    pagesApp.use('/simulated-checkout', simulator.pages);
    stops.push(() => simulator!.close(), () => new Promise<void>((r) => pages.close(() => r())));
    Object.assign(appEnv, {
      STRIPE_SECRET_KEY: secretKey,
      STRIPE_WEBHOOK_SECRET: webhookSecret,
      STRIPE_API_URL: `http://127.0.0.1:${simulator.clientOptions.port}`,
    });
    log(`Stripe: the Checkout simulator (STRIPE_SECRET_KEY is not set); its checkout page is ${pagesUrl}/…; it posts signed events to ${webhookUrl}. No real payment is made.`);
  }

  // ---- next start ----------------------------------------------------------------------------------------
  const nextBin = require.resolve('next/dist/bin/next', { paths: [__dirname] });
  const next = spawn(process.execPath, [nextBin, 'start', '--hostname', '127.0.0.1', '--port', String(port)], {
    cwd: __dirname,
    env: appEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => next.once('exit', (code) => r(code)));
  for (const [stream, write] of [
    [next.stdout, (l: string) => console.log(l)],
    [next.stderr, (l: string) => console.error(l)],
  ] as const) {
    createInterface({ input: stream }).on('line', (line) => write(`[next] ${line}`));
  }

  let stopping = false;
  const stop = async (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log(`${why}: stopping`);
    if (next.exitCode === null && next.signalCode === null) {
      next.kill('SIGTERM');
      const late = setTimeout(() => next.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(late);
    }
    await stopAll();
    process.exit(code);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  void exited.then((code) => void stop(`next start exited (${code})`, code === 0 ? 0 : 1));

  // Ready once the kit answers (instrumentation.ts has created it and its indexes by then).
  await waitForPricing(`http://127.0.0.1:${port}/api/credits/pricing`, () => stopping);
  if (!stopping) log(`Ready. Open ${publicUrl} in your browser (Ctrl+C stops the example).`);
}

/** The given port, or for 0 a free one: the simulator needs the app's webhook URL before Next.js starts. */
async function choosePort(value: string | undefined): Promise<number> {
  if (value === undefined || value === '') return 3000;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new StartupError(`PORT must be a port number, got ${JSON.stringify(value)}.`);
  if (n !== 0) return n;
  const probe = createServer();
  await listen(probe, 0);
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolveListen());
  });
}

async function waitForPricing(url: string, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!gaveUp()) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(5_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new StartupError(`The app did not answer ${url} within two minutes.`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

main().catch(async (err: unknown) => {
  if (err instanceof StartupError || (err instanceof Error && err.name === 'MissingToolchainError')) console.error(`[example] ${err.message}`);
  else console.error('[example] could not start:', err);
  await stopAll();
  process.exit(1);
});
