/**
 * Adversarial money cases for subscriptions, each with signed deliveries against the kit over real HTTP:
 * a period paid by two invoices (a retried or re-issued invoice whose period start or end drifts), plan
 * changes back and forth in one period, a refund of an upgrade's invoice, metadata edited in the
 * dashboard, another livemode, an invoice after the cancellation, replays older than the kept periods.
 */
import { randomUUID } from 'node:crypto';
import { consistentAudit, harness, postWebhook, recordingStripe, WEBHOOK_SECRET, type Harness } from './helpers';
import { chargeRefunded, DAY, delivery, dispute, invoice, newSub, nowSeconds, paymentIntentOf, sessionCompleted, subscribeSession, subscription, type Sub } from './subscription-events';

let h: Harness;
let rec: Awaited<ReturnType<typeof recordingStripe>>;

const PLANS = {
  basic: { price: 'price_basic_monthly', credits: 100, label: 'Basic' },
  pro: { price: 'price_pro_monthly', credits: 300, label: 'Pro' },
  max: { price: 'price_max_monthly', credits: 1000, label: 'Max' },
};

beforeAll(async () => {
  rec = await recordingStripe();
  h = await harness(() => undefined, { stripe: rec.stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com', plans: PLANS });
});
afterAll(async () => {
  await h.close();
  await rec.close();
});

const user = () => `u-${randomUUID()}`;

const deliver = (d: { body: string; headers: Record<string, string> }) => postWebhook(h.url, d);

async function subscribe(userId: string, plan: keyof typeof PLANS = 'basic'): Promise<Sub> {
  const sessionId = await subscribeSession(h.url, userId, plan);
  const [record] = await h.credits.store.findSubscriptions({ userId }, 1);
  return newSub(record!.id, userId, plan, sessionId);
}

const period = (start = nowSeconds() - 60) => ({ start, end: start + 30 * DAY });
const line = (plan: keyof typeof PLANS, p: { start: number; end: number }, amount = 1900) => ({ price: PLANS[plan].price, amount, ...p });
const paid = (s: Sub, lines: Parameters<typeof invoice>[1], opts: Parameters<typeof invoice>[2] = {}) => invoice(s, lines, opts);
const send = (type: string, object: unknown, created?: number) => deliver(delivery(rec.stripe, type, object, created ? { created } : {}));

/** A new Basic subscriber whose first period's invoice has been delivered; the subscription, the period and its invoice. */
async function firstPeriodPaid(): Promise<{ s: Sub; p: { start: number; end: number }; base: ReturnType<typeof paid> }> {
  const s = await subscribe(user());
  const p = period();
  const base = paid(s, [line('basic', p)], { billingReason: 'subscription_create' });
  await send('invoice.paid', base);
  return { s, p, base };
}

/** The invoices of two upgrades within period `p`: Basic → Pro a day in, then Pro → Max two days in. */
function twoUpgrades(s: Sub, p: { start: number; end: number }) {
  const m1 = { start: p.start + DAY, end: p.end };
  const m2 = { start: p.start + 2 * DAY, end: p.end };
  const up1 = paid(s, [line('basic', m1, -1800), line('pro', m1, 3500)], { billingReason: 'subscription_update' });
  const up2 = paid(s, [line('pro', m2, -3300), line('max', m2, 9000)], { billingReason: 'subscription_update' });
  return [up1, up2] as const;
}

describe('a period is granted once, whatever invoices pay it', () => {
  it('a second invoice for the same period whose start drifted grants nothing more', async () => {
    const s = await subscribe(user());
    const p = period();
    expect((await send('invoice.paid', paid(s, [line('basic', p)], { billingReason: 'subscription_create' }))).body.creditsGranted).toBe(100);
    const again = await send('invoice.paid', paid(s, [line('basic', { start: p.start + 5, end: p.end })], { billingReason: 'subscription_cycle' }));
    expect(again.status).toBe(200);
    expect(again.body.creditsGranted).toBe(0);
    const moved = await send('invoice.paid', paid(s, [line('basic', { start: p.start, end: p.end + 3600 })], { billingReason: 'manual' }));
    expect(moved.body.creditsGranted).toBe(0);
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    await consistentAudit(h.credits, s.userId);
  });

  it('two invoices for one period delivered concurrently grant once', async () => {
    const s = await subscribe(user());
    const p = period();
    const a = paid(s, [line('basic', p)]);
    const b = paid(s, [line('basic', { start: p.start - 2, end: p.end })]);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => send('invoice.paid', i % 2 ? a : b)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(results.reduce((sum, r) => sum + (r.body.creditsGranted as number), 0)).toBe(100);
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    await consistentAudit(h.credits, s.userId);
  });
});

describe('plan changes within one period', () => {
  it('up, down and up again: the period never holds more than the biggest plan paid for', async () => {
    const { s, p } = await firstPeriodPaid();
    const mid = { start: p.start + 5 * DAY, end: p.end };
    const toMax = await send('invoice.paid', paid(s, [line('basic', mid, -1500), line('max', mid, 8000)], { billingReason: 'subscription_update' }));
    expect(toMax.body.creditsGranted).toBe(900);
    const later = { start: p.start + 6 * DAY, end: p.end };
    await send('invoice.paid', paid(s, [line('max', later, -7700), line('basic', later, 1400)], { billingReason: 'subscription_update', paymentIntent: null }));
    const laterStill = { start: p.start + 7 * DAY, end: p.end };
    const toPro = await send('invoice.paid', paid(s, [line('basic', laterStill, -1300), line('pro', laterStill, 3000)], { billingReason: 'subscription_update' }));
    expect(toPro.status).toBe(200);
    expect(toPro.body.creditsGranted).toBe(0);
    expect(await h.credits.getBalance(s.userId)).toBe(1000);
    await consistentAudit(h.credits, s.userId);
  });

  it('basic → pro → max grants up to max in all, each step once', async () => {
    const { s, p } = await firstPeriodPaid();
    const [up1, up2] = twoUpgrades(s, p);
    await Promise.all([send('invoice.paid', up1), send('invoice.paid', up1), send('invoice.paid', up2)]);
    expect(await h.credits.getBalance(s.userId)).toBe(1000);
    await consistentAudit(h.credits, s.userId);
  });

  it('two upgrades delivered in either order end with the biggest plan: Pro → Max before Basic → Pro still grants Max', async () => {
    for (const order of ['forward', 'backward'] as const) {
      const { s, p } = await firstPeriodPaid();
      const [up1, up2] = twoUpgrades(s, p);
      for (const inv of order === 'forward' ? [up1, up2] : [up2, up1]) await send('invoice.paid', inv);
      expect([order, await h.credits.getBalance(s.userId)]).toEqual([order, 1000]);
      await consistentAudit(h.credits, s.userId);
    }
  });
});

describe('refunds take back what the refunded payment paid for', () => {
  it("a refund of an upgrade's invoice takes back the upgrade's difference, not the period's allowance", async () => {
    const { s, p, base } = await firstPeriodPaid();
    const mid = { start: p.start + 5 * DAY, end: p.end };
    const up = paid(s, [line('basic', mid, -1500), line('pro', mid, 3000)], { billingReason: 'subscription_update' });
    await send('invoice.paid', up);
    expect(await h.credits.getBalance(s.userId)).toBe(300);
    const r = await send('charge.refunded', chargeRefunded(paymentIntentOf(up), 1500));
    expect(r.body).toEqual(expect.objectContaining({ subscription: s.ref, revoked: 200 }));
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    // A dispute of the base payment then takes the allowance, once.
    const d = await Promise.all([1, 2, 3].map(() => send('charge.dispute.created', dispute(paymentIntentOf(base), 1900))));
    expect(d.reduce((sum, x) => sum + (x.body.revoked as number), 0)).toBe(100);
    expect(await h.credits.getBalance(s.userId)).toBe(0);
    await consistentAudit(h.credits, s.userId);
  });

  it("a refund of the period's invoice leaves an upgrade paid separately", async () => {
    const { s, p, base } = await firstPeriodPaid();
    const mid = { start: p.start + 5 * DAY, end: p.end };
    await send('invoice.paid', paid(s, [line('basic', mid, -1500), line('pro', mid, 3000)], { billingReason: 'subscription_update' }));
    const r = await send('charge.refunded', chargeRefunded(paymentIntentOf(base), 1900));
    expect(r.body.revoked).toBe(100);
    expect(await h.credits.getBalance(s.userId)).toBe(200);
    await consistentAudit(h.credits, s.userId);
  });
});

describe('only the kit’s record decides', () => {
  it("metadata edited in the dashboard to another user's subscription still grants the user the kit recorded", async () => {
    const s = await subscribe(user());
    await send('checkout.session.completed', sessionCompleted(s));
    const b = await subscribe(user()); // B has an open checkout, not linked to a Stripe subscription yet
    const p = period();
    const forged = paid(s, [line('basic', p)], { metadata: { credit_kit_user_id: b.userId, credit_kit_plan: 'basic', credit_kit_subscription: b.ref } });
    const r = await send('invoice.paid', forged);
    expect(r.body).toEqual(expect.objectContaining({ subscription: s.ref, creditsGranted: 100 }));
    expect(await h.credits.getBalance(b.userId)).toBe(0);
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    // The user's name alone edited: still the recorded user.
    const next = { start: p.end, end: p.end + 30 * DAY };
    const renamed = paid(s, [line('basic', next)], { metadata: { credit_kit_user_id: b.userId, credit_kit_plan: 'basic', credit_kit_subscription: s.ref } });
    expect((await send('invoice.paid', renamed)).body.creditsGranted).toBe(100);
    expect(await h.credits.getBalance(b.userId)).toBe(0);
    const [recordB] = await h.credits.store.findSubscriptions({ userId: b.userId }, 1);
    expect(recordB!.stripeSubscriptionId).toBeNull();
  });

  it('a subscription event of the other livemode changes nothing', async () => {
    const { s, p } = await firstPeriodPaid();
    await send('customer.subscription.updated', subscription(s, { price: PLANS.basic.price, ...p }));
    const live = { ...subscription(s, { price: PLANS.basic.price, status: 'canceled', ...p, endedAt: nowSeconds() }), livemode: true };
    const r = await send('customer.subscription.deleted', live, nowSeconds() + 10);
    expect(r.body).toEqual(expect.objectContaining({ ignored: true, reason: expect.stringMatching(/livemode/) }));
    expect((await h.credits.getSubscription(s.userId)).plan).toBe('basic');
    const liveInvoice = { ...paid(s, [line('basic', { start: p.end, end: p.end + 30 * DAY })]), livemode: true };
    expect((await send('invoice.paid', liveInvoice)).body).toEqual(expect.objectContaining({ ignored: true }));
    expect(await h.credits.getBalance(s.userId)).toBe(100);
  });
});

describe('late and old deliveries', () => {
  it('an invoice for an earlier period delivered after the deletion still grants it; the later one does not', async () => {
    const s = await subscribe(user());
    const p1 = period();
    const p2 = { start: p1.end, end: p1.end + 30 * DAY };
    const end = p1.end;
    const deleted = await send('customer.subscription.deleted', subscription(s, { price: PLANS.basic.price, status: 'canceled', ...p1, endedAt: end }));
    expect(deleted.status).toBe(200);
    expect((await send('invoice.paid', paid(s, [line('basic', p1)], { billingReason: 'subscription_create' }))).body.creditsGranted).toBe(100);
    expect((await send('invoice.paid', paid(s, [line('basic', p2)]))).body).toEqual(expect.objectContaining({ creditsGranted: 0, ignored: true }));
    expect(await h.credits.getBalance(s.userId)).toBe(100);
  });

  it('keeps 24 periods, and a replay of a period older than those grants nothing again', async () => {
    const s = await subscribe(user());
    // 26 short periods, all still running (so each can be granted), oldest first.
    const base = nowSeconds() - 60;
    const invoices = Array.from({ length: 26 }, (_, i) => paid(s, [line('basic', { start: base + i * 1000, end: base + (i + 1) * 1000 })]));
    for (const inv of invoices) expect((await send('invoice.paid', inv)).body.creditsGranted).toBe(100);
    const [record] = await h.credits.store.findSubscriptions({ userId: s.userId }, 1);
    expect(record!.periods).toHaveLength(24);
    expect(record!.periods[0]!.start).toBe(base + 2 * 1000);
    const replay = await send('invoice.paid', invoices[0]);
    expect(replay.status).toBe(200);
    expect(replay.body.creditsGranted).toBe(0);
    // And its refund, no longer linked to a kept period, takes nothing from the others.
    await send('charge.refunded', chargeRefunded(paymentIntentOf(invoices[1]!), 1900));
    expect(await h.credits.getBalance(s.userId)).toBe(2600);
    expect((await h.credits.store.findSubscriptions({ userId: s.userId }, 1))[0]!.periods).toHaveLength(24);
    await consistentAudit(h.credits, s.userId);
  });
});
