/**
 * credit-kit/testing's subscription events, delivered signed to the kit as an app's own test would
 * (README "Subscriptions", Testing): a period granted once, a renewal, a cancellation, a refund.
 */
import { invoiceDisputed, invoiceRefunded, signEvent, subscriptionCheckoutCompleted, subscriptionInvoicePaid, subscriptionUpdated } from 'credit-kit/testing';
import { consistentAudit, harness, post, postWebhook, recordingStripe, WEBHOOK_SECRET, type Harness } from './helpers';

let h: Harness;
let rec: Awaited<ReturnType<typeof recordingStripe>>;
beforeAll(async () => {
  rec = await recordingStripe();
  h = await harness(() => undefined, { stripe: rec.stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com', plans: { basic: { price: 'price_basic', credits: 100 } } });
});
afterAll(async () => {
  await h.close();
  await rec.close();
});

const deliver = (d: { body: string; headers: Record<string, string> }) => postWebhook(h.url, d);

it('builds the events of a subscription the app started, for its own tests', async () => {
  expect((await post(`${h.url}/api/credits/subscribe`, 't1', { plan: 'basic' })).status).toBe(201);
  await expect(subscriptionInvoicePaid(h.credits, 'nobody')).rejects.toThrow(/has no subscription started through this app/);

  const first = await subscriptionInvoicePaid(h.credits, 't1');
  const paid = signEvent(first, WEBHOOK_SECRET);
  expect((await deliver(paid)).body).toEqual(expect.objectContaining({ creditsGranted: 100 }));
  expect((await deliver(paid)).body).toEqual(expect.objectContaining({ creditsGranted: 0 }));
  await deliver(signEvent(await subscriptionCheckoutCompleted(h.credits, 't1'), WEBHOOK_SECRET));
  expect(await h.credits.getSubscription('t1')).toEqual(expect.objectContaining({ plan: 'basic', status: 'active' }));

  const start = new Date((first.data.object as { lines: { data: Array<{ period: { end: number } }> } }).lines.data[0]!.period.end * 1000);
  const end = new Date(start.getTime() + 30 * 86_400_000);
  const renewal = await subscriptionInvoicePaid(h.credits, 't1', { periodStart: start, periodEnd: end });
  expect((await deliver(signEvent(renewal, WEBHOOK_SECRET))).body).toEqual(expect.objectContaining({ creditsGranted: 100 }));
  expect((await deliver(signEvent(invoiceRefunded(first), WEBHOOK_SECRET))).body).toEqual(expect.objectContaining({ revoked: 100 }));
  expect((await deliver(signEvent(invoiceDisputed(renewal), WEBHOOK_SECRET))).body).toEqual(expect.objectContaining({ revoked: 100 }));

  const cancelled = await subscriptionUpdated(h.credits, 't1', { periodStart: start, periodEnd: end, status: 'canceled', endedAt: end });
  expect(cancelled.type).toBe('customer.subscription.deleted');
  await deliver(signEvent(cancelled, WEBHOOK_SECRET));
  expect(await h.credits.getSubscription('t1')).toEqual({ plan: null });
  expect(await h.credits.getBalance('t1')).toBe(0);
  await consistentAudit(h.credits, 't1');
});
