/**
 * The kit for this app's route handlers: one per server process, created on first use. Not at import:
 * `next build` loads every route file to read its config, and at build time there is no database or
 * Stripe key to create it with. The launcher (launch.ts) sets the variables below.
 *
 *   MONGODB_URI                                 the database (the launcher's embedded one by default)
 *   STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET    Stripe's test mode, or the launcher's simulator
 *   STRIPE_API_URL                              set only for the simulator: where its Stripe API listens
 *   EXAMPLE_PUBLIC_URL                          Checkout's return URLs
 */
import mongoose, { type Connection } from 'mongoose';
import Stripe from 'stripe';
import { createFetchCredits, type FetchCredits, type WebhookReport } from 'credit-kit/fetch';
import { userFromRequest } from './session';

interface Kit {
  credits: FetchCredits;
  connection: Connection;
  /** Resolves once the database is reachable and the kit's indexes exist (instrumentation.ts waits for it). */
  ready: Promise<void>;
}

// On globalThis: Next.js may load this module once per route bundle, and the process needs one kit.
const slot = globalThis as typeof globalThis & { __creditKitExample?: Kit };

export function getKit(): Kit {
  return (slot.__creditKitExample ??= createKit());
}

export const getCredits = (): FetchCredits => getKit().credits;

function createKit(): Kit {
  const env = process.env;
  const uri = required('MONGODB_URI');
  const connection = mongoose.createConnection(uri, { serverSelectionTimeoutMS: 5000, dbName: 'credit_kit_next_example' });
  const credits = createFetchCredits({
    connection,
    getUserId: (request) => userFromRequest(request)?.id ?? null,
    stripe: new Stripe(required('STRIPE_SECRET_KEY'), { ...simulatorHost(env.STRIPE_API_URL), maxNetworkRetries: 1 }),
    webhookSecret: required('STRIPE_WEBHOOK_SECRET'),
    publicUrl: required('EXAMPLE_PUBLIC_URL'),
    pricing: { creditPriceCents: 10, bundles: [{ id: 'starter', credits: 100, price: 900, name: 'Starter: 100 credits' }] },
    onWebhook: logWebhook,
  });
  const ready = connection.asPromise().then(() => credits.init());
  ready.catch(() => undefined); // reported by whoever awaits it
  return { credits, connection, ready };
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set. Start the example with \`npm start\` (launch.ts), which sets it, or set it yourself.`);
  return value;
}

/** stripe-node's host options for the simulator's API (launch.ts), or none for api.stripe.com. */
function simulatorHost(url: string | undefined): { host: string; port: number; protocol: 'http' | 'https' } | Record<string, never> {
  if (!url) return {};
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), protocol: u.protocol === 'https:' ? 'https' : 'http' };
}

function logWebhook(r: WebhookReport): void {
  const what = r.event ? `${r.event.type} ${r.event.id}` : 'a delivery';
  if (r.status !== 200 || !r.outcome) console.log(`[example] webhook ${what} → ${r.status} refused: ${r.error?.message ?? 'error'}`);
  else console.log(`[example] webhook ${what} → 200 verified and handled`);
}
