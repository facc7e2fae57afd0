/**
 * credit-kit/testing as an app's tests use it: sessions created through the kit's checkout route (against
 * stripe-mock), events built from them and signed by the helper, delivered over HTTP to the real webhook
 * route, which verifies them with stripe-node.
 */
import { asyncPaymentFailed, asyncPaymentSucceeded, chargeDispute, chargeRefunded, checkoutCompleted, checkoutExpired, signEvent, stripeEvent } from 'credit-kit/testing';
import { audit, harness, post, stripeMockClient, WEBHOOK_SECRET, type Harness } from './helpers';

let h: Harness;
const stripe = stripeMockClient();

beforeAll(async () => {
  h = await harness(() => undefined, { stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com' });
});
afterAll(() => h.close());

async function createdSession(user: string, quantity: number): Promise<string> {
  const res = await post(`${h.url}/api/stripe/checkout/credits`, user, { quantity });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

function deliver(delivery: { body: string; headers: Record<string, string> }) {
  return fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers: delivery.headers, body: delivery.body });
}

it('signs exactly as stripe-node does', () => {
  const event = stripeEvent('checkout.session.completed', { id: 'cs_test_x', object: 'checkout.session' });
  const timestamp = 1_790_000_000;
  const ours = signEvent(event, WEBHOOK_SECRET, { timestamp });
  expect(ours.headers['stripe-signature']).toBe(stripe.webhooks.generateTestHeaderString({ payload: ours.body, secret: WEBHOOK_SECRET, timestamp }));
  // And stripe-node accepts it.
  expect(stripe.webhooks.constructEvent(ours.body, ours.headers['stripe-signature'], WEBHOOK_SECRET, Number.MAX_SAFE_INTEGER).id).toBe(event.id);
});

it('a purchase, its replay, a partial refund and a lost dispute, each as the kit handles them', async () => {
  const id = await createdSession('t-buyer', 100);
  const completed = await checkoutCompleted(h.credits, id);
  expect((await deliver(signEvent(completed, WEBHOOK_SECRET))).status).toBe(200);
  expect((await deliver(signEvent(completed, WEBHOOK_SECRET))).status).toBe(200); // Stripe's retry
  expect(await h.credits.getBalance('t-buyer')).toBe(100);

  expect((await deliver(signEvent(await chargeRefunded(h.credits, id, 500), WEBHOOK_SECRET))).status).toBe(200);
  await h.credits.flush();
  expect(await h.credits.getBalance('t-buyer')).toBe(50); // $5 of $10 refunded: half the credits

  expect((await deliver(signEvent(await chargeDispute(h.credits, id, 'charge.dispute.created', 'needs_response'), WEBHOOK_SECRET))).status).toBe(200);
  expect((await deliver(signEvent(await chargeDispute(h.credits, id, 'charge.dispute.closed', 'lost'), WEBHOOK_SECRET))).status).toBe(200);
  await h.credits.flush();
  const a = await audit(h.credits, 't-buyer');
  expect(a).toMatchObject({ balance: 0, sum: 0 }); // refund and dispute together never take back more than the purchase
});

it('refuses to build events for a session the app did not create, and a stale signature is refused by the kit', async () => {
  await expect(checkoutCompleted(h.credits, 'cs_test_never_created')).rejects.toThrow(/was created through this app's checkout route/);
  const id = await createdSession('t-stale', 10);
  const stale = signEvent(await checkoutCompleted(h.credits, id), WEBHOOK_SECRET, { timestamp: Math.floor(Date.now() / 1000) - 3600 });
  const res = await deliver(stale);
  expect(res.status).toBe(400);
  expect(await h.credits.getBalance('t-stale')).toBe(0);
  expect(() => signEvent(stripeEvent('x', {}), '')).toThrow(TypeError);
});

it('delayed payments: unpaid at completion, credited when the payment succeeds, never when it fails or the session expires', async () => {
  const later = await createdSession('t-delayed', 40);
  expect((await deliver(signEvent(await checkoutCompleted(h.credits, later, { paid: false }), WEBHOOK_SECRET))).status).toBe(200);
  expect(await h.credits.getBalance('t-delayed')).toBe(0);
  expect((await deliver(signEvent(await asyncPaymentSucceeded(h.credits, later), WEBHOOK_SECRET))).status).toBe(200);
  expect(await h.credits.getBalance('t-delayed')).toBe(40);

  const failing = await createdSession('t-failed', 40);
  await deliver(signEvent(await checkoutCompleted(h.credits, failing, { paid: false }), WEBHOOK_SECRET));
  expect((await deliver(signEvent(await asyncPaymentFailed(h.credits, failing), WEBHOOK_SECRET))).status).toBe(200);
  const abandoned = await createdSession('t-failed', 40);
  expect((await deliver(signEvent(await checkoutExpired(h.credits, abandoned), WEBHOOK_SECRET))).status).toBe(200);
  await h.credits.flush();
  expect(await h.credits.getBalance('t-failed')).toBe(0);
  expect(await audit(h.credits, 't-failed')).toMatchObject({ balance: 0, sum: 0, entries: 0 });
});
