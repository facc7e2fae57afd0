/**
 * `npm run demo`: the credit-kit walkthrough app on embedded defaults.
 *
 *   MONGODB_URI unset      → the embedded MongoDB-compatible server, data in demo/.data/mongo (kept)
 *   STRIPE_SECRET_KEY unset → the demo's Stripe Checkout simulator (demo/stripe-simulator.ts)
 *   STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET set → Stripe's test mode (`stripe listen` forwards events)
 *   DEMO_PLAN_PRICE_ID      → in test mode, a recurring Price of yours for the demo's plan (the simulator has its own)
 *   PORT (3000), DEMO_PUBLIC_URL (http://localhost:PORT), DEMO_DATA_DIR (demo/.data)
 *
 * The demo's infrastructure (the embedded database) comes from tools/; the credits come from
 * credit-kit/server only, as in any app.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative, resolve } from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import Stripe from 'stripe';
import { createCredits, type Credits, type WebhookReport } from 'credit-kit/server';
import { startEmbeddedMongo, type EmbeddedMongo } from '../tools/embedded';
import { createDemoApp, currentUser } from './app';
import { buildPage } from './build-page';
import { keptSessionSecret } from './session-secret';
import { ANALYSIS_RESERVE, BUNDLES, PLAN, SUMMARY_COST, WORDS_PER_CREDIT, type DemoInfo } from './shared';
import { startStripeSimulator, type StripeSimulator } from './stripe-simulator';

const log = (line: string) => console.log(`[demo] ${line}`);
const simLog = (line: string) => console.log(`[stripe-simulator] ${line}`);

class StartupError extends Error {}

async function main(): Promise<void> {
  const env = process.env;
  const dataDir = resolve(env.DEMO_DATA_DIR || join(__dirname, '.data'));
  const port = parsePort(env.PORT);
  mkdirSync(dataDir, { recursive: true });

  const stripeKey = env.STRIPE_SECRET_KEY || undefined;
  if (stripeKey && !/^(sk|rk)_test_/.test(stripeKey)) {
    throw new StartupError('STRIPE_SECRET_KEY is not a test key (sk_test_… or rk_test_…). The demo never runs with live keys.');
  }
  if (stripeKey && !env.STRIPE_WEBHOOK_SECRET) {
    throw new StartupError(
      'STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not. Run\n' +
        `  stripe listen --forward-to localhost:${port || 3000}/api/stripe/webhook\n` +
        'and set STRIPE_WEBHOOK_SECRET to the whsec_… it prints (or unset STRIPE_SECRET_KEY to use the simulator).',
    );
  }

  // ---- the database ------------------------------------------------------------------------------------
  let mongo: EmbeddedMongo | undefined;
  let uri = env.MONGODB_URI || undefined;
  if (uri) {
    log(`Database: MONGODB_URI (${redact(uri)})`);
  } else {
    const mongoDir = join(dataDir, 'mongo');
    log(`Database: the embedded MongoDB-compatible server (FerretDB + SQLite), data kept in ${shown(mongoDir)}`);
    mongo = await startEmbeddedMongo({ dataDir: mongoDir });
    uri = mongo.uri;
  }
  const connection: Connection = mongoose.createConnection(uri, {
    serverSelectionTimeoutMS: 5000,
    ...(hasDatabaseName(uri) ? {} : { dbName: 'credit_kit_demo' }),
  });
  await connection.asPromise();

  // ---- the page --------------------------------------------------------------------------------------
  const page = await buildPage();
  const js = page.files.get('app.js')?.contents.length ?? 0;
  log(`Page: bundled demo/web with esbuild in ${page.ms} ms (app.js ${(js / 1024).toFixed(0)} kB)`);

  // ---- listen first, so PORT=0 works: the public URL and webhook URL need the port ---------------------
  let handler: RequestListener = (_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('The demo is starting.');
  };
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new StartupError(`Port ${port} is in use. Start the demo on another: PORT=3001 npm run demo`) : err),
    );
    server.listen(port, '127.0.0.1', () => resolveListen());
  });
  const actualPort = (server.address() as AddressInfo).port;
  const publicUrl = (env.DEMO_PUBLIC_URL || `http://localhost:${actualPort}`).replace(/\/+$/, '');
  const webhookUrl = `http://127.0.0.1:${actualPort}/api/stripe/webhook`;

  // ---- Stripe: test mode with keys, else the simulator ------------------------------------------------
  let stripe: Stripe;
  let webhookSecret: string;
  let simulator: StripeSimulator | undefined;
  if (stripeKey) {
    stripe = new Stripe(stripeKey);
    webhookSecret = env.STRIPE_WEBHOOK_SECRET!;
    log(`Stripe: test mode (${stripeKey.slice(0, 8)}…); events arrive through \`stripe listen --forward-to localhost:${actualPort}/api/stripe/webhook\``);
    stripe.on('response', (e: { method?: string; path?: string; status?: number; elapsed: number }) =>
      log(`Stripe API ${e.method ?? ''} ${e.path ?? ''} → ${e.status ?? '?'} (${e.elapsed} ms)`),
    );
  } else {
    const secretKey = `sk_test_simulator_${randomBytes(12).toString('hex')}`;
    webhookSecret = `whsec_simulator_${randomBytes(16).toString('hex')}`;
    simulator = await startStripeSimulator({
      secretKey,
      webhookSecret,
      webhookUrl,
      checkoutUrl: `${publicUrl}/simulated-checkout`,
      prices: { [PLAN.simulatorPrice]: { name: PLAN.label, unitAmount: PLAN.amount, currency: 'usd' } },
      log: simLog,
    });
    // The kit's Stripe client, pointed at the simulator instead of api.stripe.com.
    stripe = new Stripe(secretKey, { ...simulator.clientOptions, maxNetworkRetries: 1 });
    log(
      `Stripe: the Checkout simulator (STRIPE_SECRET_KEY is not set). Its API listens on ` +
        `http://127.0.0.1:${simulator.clientOptions.port}; its checkout page is ${publicUrl}/simulated-checkout/…; ` +
        `it signs events and posts them to ${webhookUrl}. No real payment is made.`,
    );
  }

  // ---- the kit ----------------------------------------------------------------------------------------
  const planPrice = simulator ? PLAN.simulatorPrice : env.DEMO_PLAN_PRICE_ID || undefined;
  const credits: Credits = createCredits({
    connection,
    getUserId: (req) => currentUser(req)?.id ?? null,
    stripe,
    webhookSecret,
    publicUrl,
    pricing: { creditPriceCents: 10, bundles: BUNDLES.map((b) => ({ ...b })) },
    ...(planPrice ? { plans: { [PLAN.id]: { price: planPrice, credits: PLAN.credits, label: PLAN.label, rollover: { ...PLAN.rollover } } } } : {}),
    onWebhook: (r) => logWebhook(r, () => credits),
    // Auto-recharge from a saved card (README "Auto-recharge"): the settings are in step 5 of the page.
    autoRecharge: {
      monthlyCap: 2000,
      cooldownMs: 3_000,
      maxDeclines: 2,
      returnPath: '/auto-recharge',
      onAutoRecharge: (e) =>
        log(`auto-recharge ${e.type} for ${e.userId}: ${e.credits} credits, ${(e.amount / 100).toFixed(2)} ${e.currency.toUpperCase()}${e.reason ? ` (${e.reason})` : ''} → ${e.state}`),
    },
  });
  await credits.init();
  const report = await credits.reconcile();
  if (report.adjustmentsApplied > 0) log(`Reconciled ${report.adjustmentsApplied} purchase adjustments left by a previous run`);
  // From now on the kit repairs what a crash may leave half done, every five minutes.
  const stopReconciler = credits.startReconciler({ onError: (err) => log(`reconcile failed: ${String(err)}`) });

  const info: DemoInfo = {
    stripe: simulator ? 'simulator' : 'test-mode',
    plans: planPrice !== undefined,
    database: mongo ? 'embedded' : 'external',
    summaryCost: SUMMARY_COST,
    analysisReserve: ANALYSIS_RESERVE,
    wordsPerCredit: WORDS_PER_CREDIT,
  };
  handler = createDemoApp({
    credits,
    sessionSecret: keptSessionSecret(dataDir, env.DEMO_SESSION_SECRET),
    page,
    info,
    ...(simulator ? { simulatorPages: simulator.pages, simulateMonth: (userId: string) => simulator!.advanceMonth(userId) } : {}),
    secureCookies: publicUrl.startsWith('https:'),
    log,
  });

  log(`Ready. Open ${publicUrl} in your browser (Ctrl+C stops the demo).`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping`);
    stopReconciler();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await simulator?.close();
    await credits.flush().catch(() => undefined);
    await connection.close().catch(() => undefined);
    await mongo?.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

function parsePort(value: string | undefined): number {
  if (value === undefined || value === '') return 3000;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new StartupError(`PORT must be a port number, got ${JSON.stringify(value)}.`);
  return n;
}

function hasDatabaseName(uri: string): boolean {
  try {
    return new URL(uri).pathname.replace(/^\//, '') !== '';
  } catch {
    return false;
  }
}

/** A connection string without its password. */
function redact(uri: string): string {
  return uri.replace(/\/\/([^@/]*)@/, '//***@');
}

function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

main().catch((err: unknown) => {
  if (err instanceof StartupError || (err instanceof Error && err.name === 'MissingToolchainError')) {
    console.error(`[demo] ${err.message}`);
  } else {
    console.error('[demo] could not start:', err);
  }
  process.exit(1);
});

/** The console tells each webhook delivery as the kit answers it, and the balance it leads to. */
function logWebhook(r: WebhookReport, kit: () => Credits): void {
  const objectId = (r.event?.data.object as { id?: string } | undefined)?.id;
  const what = r.event ? `${r.event.type} ${r.event.id}${objectId ? ` for ${objectId}` : ''}` : 'a delivery';
  const outcome = r.outcome;
  if (r.status !== 200 || !outcome) {
    log(`webhook ${what} → ${r.status} refused: ${r.error?.message ?? 'error'}`);
    return;
  }
  const did =
    'creditsAdded' in outcome
      ? `${outcome.status}, ${outcome.creditsAdded} credits added`
      : 'clawedBack' in outcome
        ? `${outcome.clawedBack} credits taken back, ${outcome.restored} given back`
        : 'creditsGranted' in outcome && !outcome.ignored
          ? `subscription ${outcome.subscription ?? ''}: ${outcome.creditsGranted} credits granted, ${outcome.revoked} taken back`
        : 'autoRecharge' in outcome
          ? `auto-recharge: ${outcome.autoRecharge.cardSaved ? 'card saved' : `${outcome.autoRecharge.creditsAdded} credits added`}${outcome.autoRecharge.state ? `, now ${outcome.autoRecharge.state}` : ''}`
          : 'ignored';
  log(`webhook ${what} → 200 verified and handled: ${did}${outcome.reason ? ` (${outcome.reason})` : ''}`);
  // The purchase the kit recorded says whose it is; the balance it leads to follows.
  if ('creditsAdded' in outcome && objectId && outcome.status !== 'ignored') {
    void kit()
      .store.getPurchase(objectId)
      .then((p) => p && kit().getBalance(p.userId).then((balance) => log(`${p.userId} now has ${balance} credits`)))
      .catch(() => undefined);
  }
}
