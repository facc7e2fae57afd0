/**
 * A worker the crash test starts and kills at a random moment: it grants, deducts (with and without keys),
 * fulfils purchases and runs guarded requests that fail (refunds), in a loop, as fast as it can.
 *   node -r tsx/cjs server/reliability/crash-worker.ts MONGODB_URI DB_NAME SEED
 */
import express from 'express';
import mongoose from 'mongoose';
import type Stripe from 'stripe';
import { createCredits } from '../index';
import { purchaseRecordOf } from '../../tools/stripe-events';

async function main(): Promise<void> {
  const [uri, dbName, seedText] = process.argv.slice(2) as [string, string, string];
  const seed = Number(seedText);
  const connection = await mongoose.createConnection(uri, { dbName, maxPoolSize: 20 }).asPromise();
  const credits = createCredits({ connection, getUserId: (req) => req.get('x-user') ?? null, claimLeaseMs: 60_000 });
  await credits.init();
  const app = express();
  app.post('/fail', credits.requireCredits(2), () => {
    throw new Error('model failed');
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as { port: number }).port;
  process.stdout.write('ready\n');

  const users = ['crash-a', 'crash-b', 'crash-c'];
  // The sessions the kit would have recorded when its checkout route created them.
  for (const user of users) {
    for (let n = 0; n < 12; n++) await credits.store.insertPurchase(purchaseRecordOf(session(user, n) as never));
  }
  for (let i = seed; ; i++) {
    const user = users[i % users.length]!;
    const jobs: Array<Promise<unknown>> = [
      credits.grantCredits(user, 7, { idempotencyKey: `g${i % 20}` }),
      credits.deductCredits(user, 3, { idempotencyKey: `d${i % 15}` }),
      credits.deductCredits(user, 2),
      credits.fulfillCheckoutSession(session(user, i % 12)),
      fetch(`http://127.0.0.1:${port}/fail`, { method: 'POST', headers: { 'x-user': user } }),
    ];
    await Promise.allSettled(jobs);
  }
}

function session(userId: string, n: number): Stripe.Checkout.Session {
  return {
    id: `cs_test_crash_${userId}_${n}`,
    object: 'checkout.session',
    mode: 'payment',
    livemode: false,
    status: 'complete',
    payment_status: 'paid',
    amount_total: 500,
    currency: 'usd',
    client_reference_id: userId,
    payment_intent: `pi_crash_${userId}_${n}`,
    metadata: { credit_kit_user_id: userId, credit_kit_credits: '50' },
  } as unknown as Stripe.Checkout.Session;
}

void main();
