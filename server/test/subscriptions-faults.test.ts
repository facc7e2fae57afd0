/**
 * Subscriptions under faults: a store write that fails between the steps of a delivery (as a lost
 * connection or a crashed process would) leaves the delivery unanswered 2xx, and Stripe's retry finishes
 * it, with nothing granted or taken back twice. The fault sits between the kit and its storage (a store
 * decorator in this test), not inside the product.
 */
import express from 'express';
import type { Connection } from 'mongoose';
import { createCredits, type Credits } from 'credit-kit/server';
import { decorateStore } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';
import { connect, consistentAudit, headerUser, listen, post, postWebhook, recordingStripe, WEBHOOK_SECRET } from './helpers';
import { chargeRefunded, DAY, delivery, invoice, newSub, nowSeconds, paymentIntentOf, type Sub } from './subscription-events';

let connection: Connection;
let credits: Credits;
let server: { url: string; close(): Promise<void> };
let rec: Awaited<ReturnType<typeof recordingStripe>>;
/** The next `n` calls of `method` fail after (or before) they reach the database. */
let fault: { method: string; when: 'before' | 'after'; skip: number } | undefined;
/** Runs once before the next call of `method` (another delivery landing in between two steps). */
let between: { method: string; run: () => Promise<unknown> } | undefined;

beforeAll(async () => {
  connection = await connect();
  rec = await recordingStripe();
  const store = decorateStore(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), async (name, call) => {
    if (between?.method === name) {
      const b = between;
      between = undefined;
      await b.run();
    }
    const f = fault?.method === name ? fault : undefined;
    if (f && f.skip-- > 0) return call();
    if (f) fault = undefined;
    if (f?.when === 'before') throw new Error(`injected: ${name} never reached the database`);
    const result = await call();
    if (f) throw new Error(`injected: ${name} landed, its answer was lost`);
    return result;
  });
  credits = createCredits({
    connection,
    store,
    getUserId: headerUser,
    stripe: rec.stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    plans: { basic: { price: 'price_basic', credits: 100 } },
    logger: () => undefined,
  });
  await credits.init();
  const app = express();
  app.use('/api', credits.router());
  server = await listen(app);
});
afterAll(async () => {
  await credits.flush();
  await server.close();
  await rec.close();
  await connection.close();
});

async function subscribe(userId: string): Promise<Sub> {
  rec.requests.length = 0;
  const res = await post(`${server.url}/api/credits/subscribe`, userId, { plan: 'basic' });
  const { id } = (await res.json()) as { id: string };
  return newSub(rec.requests[0]!.form.get('metadata[credit_kit_subscription]')!, userId, 'basic', id);
}

const deliver = (d: { body: string; headers: Record<string, string> }) => postWebhook(server.url, d);

const start = () => nowSeconds() - 60;

it('a failure after the grant is claimed in the record, before it is made: the retry makes it once, and a refund finds it', async () => {
  const s = await subscribe(`f-${Date.now()}-1`);
  const p = start();
  const inv = invoice(s, [{ price: 'price_basic', amount: 900, start: p, end: p + 30 * DAY }]);
  const d = delivery(rec.stripe, 'invoice.paid', inv);
  fault = { method: 'replaceSubscription', when: 'after', skip: 0 };
  const first = await deliver(d);
  expect(first.status).toBeGreaterThanOrEqual(500);
  expect(await credits.getBalance(s.userId)).toBe(0); // the claim landed, the grant was not made
  const [claimed] = await credits.store.findSubscriptions({ userId: s.userId }, 1);
  expect(claimed!.periods[0]!.grants).toEqual([expect.objectContaining({ credits: 100, invoiceId: inv.id })]);
  const retries = await Promise.all([deliver(d), deliver(d), deliver(d)]);
  expect(retries.every((r) => r.status === 200)).toBe(true);
  expect(retries.reduce((sum, r) => sum + (r.body.creditsGranted as number), 0)).toBe(100);
  const refund = await deliver(delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 900)));
  expect(refund.body).toEqual(expect.objectContaining({ revoked: 100 }));
  expect(await credits.getBalance(s.userId)).toBe(0);
  await consistentAudit(credits, s.userId);
});

it('a failure before the grant reaches the ledger (its claim in the record landed): the retry grants once', async () => {
  const s = await subscribe(`f-${Date.now()}-2`);
  const p = start();
  const d = delivery(rec.stripe, 'invoice.paid', invoice(s, [{ price: 'price_basic', amount: 900, start: p, end: p + 30 * DAY }]));
  fault = { method: 'insertClaim', when: 'before', skip: 0 };
  expect((await deliver(d)).status).toBeGreaterThanOrEqual(500);
  const retries = await Promise.all(Array.from({ length: 5 }, () => deliver(d)));
  expect(retries.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  expect(retries.reduce((sum, r) => sum + (r.body.creditsGranted as number), 0)).toBe(100);
  expect(await credits.getBalance(s.userId)).toBe(100);
  await consistentAudit(credits, s.userId);
});

it('a failure after the period is marked taken back, before the revocation: the retried refund takes it back once', async () => {
  const s = await subscribe(`f-${Date.now()}-3`);
  const p = start();
  const inv = invoice(s, [{ price: 'price_basic', amount: 900, start: p, end: p + 30 * DAY }]);
  await deliver(delivery(rec.stripe, 'invoice.paid', inv));
  await credits.deductCredits(s.userId, 10);
  const refund = delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 900));
  fault = { method: 'replaceSubscription', when: 'after', skip: 0 };
  expect((await deliver(refund)).status).toBeGreaterThanOrEqual(500);
  expect(await credits.getBalance(s.userId)).toBe(90); // marked, not yet taken
  const again = await Promise.all([deliver(refund), deliver(refund), deliver(refund)]);
  expect(again.every((r) => r.status === 200)).toBe(true);
  expect(again.reduce((sum, r) => sum + (r.body.revoked as number), 0)).toBe(90);
  expect(await credits.getBalance(s.userId)).toBe(0);
  await consistentAudit(credits, s.userId);
});

it('a refund delivered between the claim and the grant takes the grant back once it is made', async () => {
  const s = await subscribe(`f-${Date.now()}-4`);
  const p = start();
  const inv = invoice(s, [{ price: 'price_basic', amount: 900, start: p, end: p + 30 * DAY }]);
  let refund: { status: number; body: Record<string, unknown> } | undefined;
  // The refund lands when the grant is about to be written: its payment is linked, its grant not made yet.
  between = { method: 'insertClaim', run: async () => (refund = await deliver(delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 900)))) };
  const paid = await deliver(delivery(rec.stripe, 'invoice.paid', inv));
  expect(refund).toEqual({ status: 200, body: expect.objectContaining({ revoked: 0 }) }); // nothing to take yet
  expect(paid).toEqual({ status: 200, body: expect.objectContaining({ creditsGranted: 100, revoked: 100 }) });
  expect((await deliver(delivery(rec.stripe, 'invoice.paid', inv))).body).toEqual(expect.objectContaining({ creditsGranted: 0, revoked: 0 }));
  expect(await credits.getBalance(s.userId)).toBe(0);
  await consistentAudit(credits, s.userId);
});
