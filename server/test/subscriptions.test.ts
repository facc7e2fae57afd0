/**
 * Subscriptions through Stripe, end to end over real HTTP: the subscribe and portal routes against
 * stripe-mock (through the recording proxy, so the test sees what Stripe receives), and really signed
 * webhook deliveries of invoices, sessions, subscription changes, refunds and disputes, in every order.
 */
import { randomUUID } from 'node:crypto';
import { checkoutSession, purchaseRecordOf } from '../../tools/stripe-events';
import { mulberry32 } from '../../tools/prng';
import { consistentAudit, get, harness, post, postWebhook, recordingStripe, signedDelivery, WEBHOOK_SECRET, type Harness } from './helpers';
import {
  chargeRefunded,
  DAY,
  delivery,
  dispute,
  invoice,
  newSub,
  nowSeconds,
  paymentIntentOf,
  sessionCompleted,
  subscribeSession,
  subscription,
  type Sub,
} from './subscription-events';

let h: Harness;
let rec: Awaited<ReturnType<typeof recordingStripe>>;

const PLANS = {
  basic: { price: 'price_basic_monthly', credits: 100, label: 'Basic', rollover: { max: 30 } },
  pro: { price: 'price_pro_monthly', credits: 300, label: 'Pro', priority: 40 },
  plus: { price: 'price_plus_monthly', credits: 200, label: 'Plus', rollover: { max: 80 } },
};

beforeAll(async () => {
  rec = await recordingStripe();
  h = await harness(() => undefined, { stripe: rec.stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com', plans: PLANS });
});
afterAll(async () => {
  await h.close();
  await rec.close();
});
beforeEach(() => {
  rec.requests.length = 0;
});

const user = () => `u-${randomUUID()}`;

const deliver = (d: { body: string; headers: Record<string, string> }) => postWebhook(h.url, d);

/** Subscribes through the route (stripe-mock creates the session); the ids the events about it carry. */
async function subscribe(userId: string, plan: keyof typeof PLANS = 'basic'): Promise<Sub> {
  const sessionId = await subscribeSession(h.url, userId, plan);
  const sent = rec.requests.find((r) => r.path === '/v1/checkout/sessions' && r.form.get('metadata[credit_kit_user_id]') === userId)!;
  return newSub(sent.form.get('metadata[credit_kit_subscription]')!, userId, plan, sessionId);
}

const period = (startOffsetDays = 0, start = nowSeconds() - 60) => ({ start: start + startOffsetDays * 30 * DAY, end: start + (startOffsetDays + 1) * 30 * DAY });
const line = (plan: keyof typeof PLANS, p: { start: number; end: number }, amount = 1900) => ({ price: PLANS[plan].price, amount, ...p });

async function details(userId: string) {
  return h.credits.getBalanceDetails(userId);
}

describe('subscribe', () => {
  it('creates a subscription-mode Checkout Session for the plan price, naming the user and plan in both metadata', async () => {
    const u = user();
    const res = await post(`${h.url}/api/credits/subscribe`, u, { plan: 'pro' });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ id: expect.stringMatching(/^cs_/), url: expect.stringMatching(/^https:\/\//), plan: 'pro' });
    expect(rec.requests).toHaveLength(1);
    const f = rec.requests[0]!.form;
    expect(rec.requests[0]!.path).toBe('/v1/checkout/sessions');
    expect(f.get('mode')).toBe('subscription');
    expect(f.get('line_items[0][price]')).toBe('price_pro_monthly');
    expect(f.get('line_items[0][quantity]')).toBe('1');
    expect(f.get('client_reference_id')).toBe(u);
    expect(f.get('metadata[credit_kit_user_id]')).toBe(u);
    expect(f.get('metadata[credit_kit_plan]')).toBe('pro');
    expect(f.get('subscription_data[metadata][credit_kit_user_id]')).toBe(u);
    expect(f.get('subscription_data[metadata][credit_kit_plan]')).toBe('pro');
    expect(f.get('subscription_data[metadata][credit_kit_subscription]')).toBe(f.get('metadata[credit_kit_subscription]'));
    expect(f.get('success_url')).toBe('https://app.example.com/success?session_id={CHECKOUT_SESSION_ID}');
    expect(f.get('cancel_url')).toBe('https://app.example.com/cancel');
    expect(rec.requests[0]!.headers['idempotency-key']).toEqual(expect.stringMatching(/^credit-kit-subscribe-sub_ck_/));
    expect(await h.credits.store.findSubscriptions({ userId: u }, 10)).toEqual([expect.objectContaining({ userId: u, plan: 'pro', status: 'checkout' })]);
  });

  it('refuses an unknown plan, extra fields, no user and a non-JSON body, creating nothing', async () => {
    const u = user();
    const cases: Array<[unknown, number, string]> = [
      [{ plan: 'gold' }, 400, 'Unknown plan "gold". Known plans: basic, pro, plus.'],
      [{ plan: 'basic', userId: 'someone-else' }, 400, 'Unknown field "userId"'],
      [{}, 400, 'Unknown plan'],
      [[], 400, 'must be a JSON object'],
      [{ plan: { $ne: '' } }, 400, 'Unknown plan'],
      [{ plan: ['basic'] }, 400, 'Unknown plan'],
      [{ plan: 'basic'.repeat(2000) }, 400, 'Unknown plan'],
      [{ plan: 'basic'.repeat(4000) }, 413, 'larger than'],
      [{ plan: 'constructor' }, 400, 'Unknown plan'],
      [{ plan: 'basic', price: 'price_cheap' }, 400, 'Unknown field "price"'],
      [{ plan: 'basic', success_url: 'https://evil.example' }, 400, 'Unknown field "success_url"'],
    ];
    for (const [body, status, message] of cases) {
      const res = await post(`${h.url}/api/credits/subscribe`, u, body);
      expect(res.status).toBe(status);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(message);
    }
    expect((await post(`${h.url}/api/credits/subscribe`, null, { plan: 'basic' })).status).toBe(401);
    expect((await get(`${h.url}/api/credits/plan?userId=other`, u)).status).toBe(400);
    expect((await get(`${h.url}/api/credits/plan`, null)).status).toBe(401);
    expect((await post(`${h.url}/api/credits/subscribe`, u, 'plan=basic', { 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(415);
    expect(rec.requests).toHaveLength(0);
    expect(await h.credits.store.findSubscriptions({ userId: u }, 10)).toEqual([]);
  });

  it('refuses (409) a second subscription while one is live: plan changes go through the portal', async () => {
    const s = await subscribe(user());
    await deliver(delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(s)));
    rec.requests.length = 0;
    const res = await post(`${h.url}/api/credits/subscribe`, s.userId, { plan: 'pro' });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/already subscribe to the Basic plan.*portal/);
    expect(rec.requests).toHaveLength(0);
  });
});

describe('invoice.paid', () => {
  it('grants the first period, expiring at its end, and shows the plan', async () => {
    const s = await subscribe(user());
    const p = period();
    await deliver(delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(s)));
    const r = await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', p)], { billingReason: 'subscription_create' })));
    expect(r).toEqual({ status: 200, body: expect.objectContaining({ received: true, subscription: s.ref, creditsGranted: 100, revoked: 0 }) });
    const d = await details(s.userId);
    expect(d.bySource).toEqual({ subscription: 100 });
    expect(d.nextExpiry).toEqual({ amount: 100, expiresAt: new Date(p.end * 1000).toISOString() });
    expect(d.grants).toEqual([expect.objectContaining({ id: `grant:subscription:${s.subscriptionId}:${p.start}`, source: 'subscription', remaining: 100 })]);
    const plan = await (await get(`${h.url}/api/credits/plan`, s.userId)).json();
    expect(plan).toEqual({
      plan: 'basic',
      label: 'Basic',
      credits: 100,
      status: 'active',
      currentPeriod: { start: new Date(p.start * 1000).toISOString(), end: new Date(p.end * 1000).toISOString() },
      cancelAtPeriodEnd: false,
    });
    expect(await h.credits.getSubscription(s.userId)).toEqual(plan);
    await consistentAudit(h.credits, s.userId);
  });

  it('grants exactly once when the same invoice is delivered 10 times concurrently, and again later', async () => {
    const s = await subscribe(user());
    const inv = invoice(s, [line('basic', period())]);
    const results = await Promise.all(Array.from({ length: 10 }, () => deliver(delivery(rec.stripe, 'invoice.paid', inv))));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(results.reduce((sum, r) => sum + (r.body.creditsGranted as number), 0)).toBe(100);
    // A replay of the very same delivery, and a new event for the same invoice, a day later in Stripe's eyes.
    const same = delivery(rec.stripe, 'invoice.paid', inv);
    expect((await deliver(same)).body.creditsGranted).toBe(0);
    expect((await deliver(same)).body.creditsGranted).toBe(0);
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    const a = await consistentAudit(h.credits, s.userId);
    expect(a.entries).toBe(1);
  });

  it('grants once when the invoice comes before the session completion, and links on either', async () => {
    const s = await subscribe(user());
    const r = await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', period())], { billingReason: 'subscription_create' })));
    expect(r.body.creditsGranted).toBe(100);
    expect((await h.credits.getSubscription(s.userId)).plan).toBe('basic');
    const c = await deliver(delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(s)));
    expect(c.body).toEqual(expect.objectContaining({ subscription: s.ref, creditsGranted: 0 }));
    const [record] = await h.credits.store.findSubscriptions({ userId: s.userId }, 1);
    expect(record).toEqual(expect.objectContaining({ stripeSubscriptionId: s.subscriptionId, customerId: s.customerId, status: 'active' }));
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    await consistentAudit(h.credits, s.userId);
  });

  it('reads the payment from Stripe when the event does not carry it', async () => {
    const s = await subscribe(user());
    rec.requests.length = 0;
    const inv = invoice(s, [line('basic', period())]);
    delete inv.payments;
    const r = await deliver(delivery(rec.stripe, 'invoice.paid', inv));
    expect(r.body.creditsGranted).toBe(100);
    expect(rec.requests.map((x) => `${x.method} ${x.path.split('?')[0]}`)).toEqual(['GET /v1/invoice_payments']);
    expect(rec.requests[0]!.path).toContain(`invoice=${inv.id as string}`);
  });

  it('renews: the next period is its own grant, and purchased credits are untouched by renewal and expiry', async () => {
    const s = await subscribe(user());
    // 40 purchased credits, through the purchase path (a paid session the app recorded).
    const bought = checkoutSession(s.userId, 40);
    await h.credits.store.insertPurchase(purchaseRecordOf(bought as never));
    expect((await deliver(signedDelivery(rec.stripe, { type: 'checkout.session.completed', object: bought }))).body.creditsAdded).toBe(40);

    const p1 = period();
    const p2 = { start: p1.end, end: p1.end + 30 * DAY };
    await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', p1)], { billingReason: 'subscription_create' })));
    await h.credits.deductCredits(s.userId, 50);
    const renewal = await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', p2)])));
    expect(renewal.body.creditsGranted).toBe(100);
    expect((await details(s.userId)).bySource).toEqual({ purchase: 40, subscription: 150 });

    // The first period ends: its unspent 50 leave (at most 30 roll over into a grant of their own).
    await h.credits.expireGrants({ now: new Date(p1.end * 1000 + 1000), userId: s.userId });
    const after = await details(s.userId);
    expect(after.bySource.purchase).toBe(40);
    const rolled = after.grants.filter((g) => g.id.startsWith('rollover:'));
    expect(rolled).toEqual([expect.objectContaining({ remaining: 30, expiresAt: new Date(p2.end * 1000).toISOString() })]);
    expect(after.balance).toBe(40 + 100 + 30);

    // The rollover is capped at the next renewal: it expires with the second period and never rolls again;
    // the second period's own unspent 100 keeps 30, until the end of the period after.
    await h.credits.expireGrants({ now: new Date(p2.end * 1000 + 1000), userId: s.userId });
    const end = await details(s.userId);
    const p2Grant = `grant:subscription:${s.subscriptionId}:${p2.start}`;
    expect(end.grants.map((g) => [g.id, g.remaining, g.expiresAt])).toEqual(
      expect.arrayContaining([
        [`rollover:${p2Grant}`, 30, new Date((p2.end + 30 * DAY) * 1000).toISOString()],
        [expect.stringMatching(/^checkout:/), 40, null],
      ]),
    );
    expect(end.grants).toHaveLength(2);
    expect(end.balance).toBe(70);
    await consistentAudit(h.credits, s.userId);
  });

  it('ignores (2xx) invoices for subscriptions the kit never created and prices that are no plan', async () => {
    const s = await subscribe(user());
    const stranger = { ...s, ref: 'sub_ck_unknown' };
    const cases: Array<[Record<string, unknown>, string]> = [
      [invoice(s, [line('basic', period())], { metadata: null }), 'created by this app'],
      [invoice(stranger, [line('basic', period())]), 'created by this app'],
      [invoice({ ...s, userId: 'mallory' }, [line('basic', period())]), 'the user differs'],
      [invoice(s, [{ price: 'price_elsewhere', amount: 900, ...period() }]), 'no line of the invoice is for a price in `plans`'],
      [{ ...invoice(s, [line('basic', period())]), parent: null }, 'not for a subscription'],
    ];
    for (const [inv, reason] of cases) {
      const r = await deliver(delivery(rec.stripe, 'invoice.paid', inv));
      expect(r.status).toBe(200);
      expect(r.body).toEqual(expect.objectContaining({ ignored: true, creditsGranted: 0, reason: expect.stringContaining(reason) }));
    }
    const unknownSub = await deliver(delivery(rec.stripe, 'customer.subscription.updated', { ...subscription(s, { price: PLANS.basic.price, ...period() }), metadata: {} }));
    expect(unknownSub.body).toEqual(expect.objectContaining({ ignored: true, reason: expect.stringContaining('not created by this app') }));
    expect(await h.credits.getBalance(s.userId)).toBe(0);
    expect(await h.credits.getBalance('mallory')).toBe(0);
  });

  it('acknowledges an invoice first delivered after its period ended, granting nothing', async () => {
    const s = await subscribe(user());
    const ended = { start: nowSeconds() - 40 * DAY, end: nowSeconds() - 10 * DAY };
    const r = await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', ended)])));
    expect(r).toEqual({ status: 200, body: expect.objectContaining({ ignored: true, reason: 'the period ended before its paid invoice was delivered' }) });
    expect(await h.credits.getBalance(s.userId)).toBe(0);
  });

  it('refuses a delivery with a bad signature, changing nothing', async () => {
    const s = await subscribe(user());
    const d = delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', period())]));
    const r = await deliver({ body: d.body.replace('"amount_paid":1900', '"amount_paid":1'), headers: d.headers });
    expect(r.status).toBe(400);
    expect(await h.credits.getBalance(s.userId)).toBe(0);
  });
});

describe('subscription state', () => {
  it('keeps the newest state: an older update delivered after a newer one changes nothing', async () => {
    const s = await subscribe(user());
    const p = period();
    const t = nowSeconds();
    const newer = delivery(rec.stripe, 'customer.subscription.updated', subscription(s, { price: PLANS.basic.price, ...p, cancelAtPeriodEnd: true }), { created: t + 10 });
    const older = delivery(rec.stripe, 'customer.subscription.updated', subscription(s, { price: PLANS.basic.price, ...p, status: 'past_due' }), { created: t });
    expect((await deliver(newer)).body).toEqual(expect.objectContaining({ subscription: s.ref }));
    expect((await deliver(older)).body).toEqual(expect.objectContaining({ ignored: true, reason: 'an event newer than this one has been applied' }));
    expect(await h.credits.getSubscription(s.userId)).toEqual(expect.objectContaining({ status: 'active', cancelAtPeriodEnd: true }));
  });

  it('a price changed to one that is no plan keeps the plan, and its status still counts', async () => {
    const s = await subscribe(user());
    const p = period();
    const r = await deliver(delivery(rec.stripe, 'customer.subscription.updated', subscription(s, { price: 'price_elsewhere', ...p, cancelAtPeriodEnd: true })));
    expect(r.body).toEqual(expect.objectContaining({ subscription: s.ref, reason: expect.stringContaining('price_elsewhere is not one of the plans: the plan stays basic') }));
    expect(await h.credits.getSubscription(s.userId)).toEqual(expect.objectContaining({ plan: 'basic', cancelAtPeriodEnd: true }));
  });

  it('cancellation stops future grants; the current period runs to its end', async () => {
    const s = await subscribe(user());
    const p1 = period();
    await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', p1)], { billingReason: 'subscription_create' })));
    const endedAt = p1.end;
    const r = await deliver(delivery(rec.stripe, 'customer.subscription.deleted', subscription(s, { price: PLANS.basic.price, ...p1, status: 'canceled', endedAt })));
    expect(r.body).toEqual(expect.objectContaining({ subscription: s.ref }));
    expect(await (await get(`${h.url}/api/credits/plan`, s.userId)).json()).toEqual({ plan: null });
    // A late invoice for a period from the end on grants nothing; the current period's allowance stays.
    const late = await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', { start: p1.end, end: p1.end + 30 * DAY })])));
    expect(late.body).toEqual(expect.objectContaining({ ignored: true, reason: 'the subscription was cancelled before this period began' }));
    expect(await h.credits.getBalance(s.userId)).toBe(100);
    // After cancelling, the user may subscribe again.
    expect((await post(`${h.url}/api/credits/subscribe`, s.userId, { plan: 'pro' })).status).toBe(201);
    await consistentAudit(h.credits, s.userId);
  });
});

describe('plan changes', () => {
  it('an upgrade paid mid-period grants the difference once; a downgrade waits for the next period', async () => {
    const s = await subscribe(user());
    const p = period();
    await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', p)], { billingReason: 'subscription_create' })));
    const mid = { start: p.start + 10 * DAY, end: p.end };
    const upgrade = invoice(s, [line('basic', mid, -1200), line('pro', mid, 3300)], { billingReason: 'subscription_update' });
    const results = await Promise.all(Array.from({ length: 5 }, () => deliver(delivery(rec.stripe, 'invoice.paid', upgrade))));
    expect(results.reduce((sum, r) => sum + (r.body.creditsGranted as number), 0)).toBe(200);
    expect((await details(s.userId)).bySource).toEqual({ subscription: 300 });

    const downgrade = invoice(s, [line('pro', mid, -2000), line('basic', mid, 0)], { billingReason: 'subscription_update', paymentIntent: null });
    const d = await deliver(delivery(rec.stripe, 'invoice.paid', downgrade));
    expect(d.body).toEqual(expect.objectContaining({ ignored: true, reason: 'a plan change that is not an upgrade applies from the next period' }));
    expect(await h.credits.getBalance(s.userId)).toBe(300);
    await consistentAudit(h.credits, s.userId);
  });
});

describe('plan changes and rollover', () => {
  it('a period with an upgrade rolls over at most the biggest rollover.max among its plans, not their sum', async () => {
    const s = await subscribe(user());
    const p = period();
    await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', p)], { billingReason: 'subscription_create' })));
    const mid = { start: p.start + 10 * DAY, end: p.end };
    const up = await deliver(delivery(rec.stripe, 'invoice.paid', invoice(s, [line('basic', mid, -1200), line('plus', mid, 2500)], { billingReason: 'subscription_update' })));
    expect(up.body.creditsGranted).toBe(100);
    // Nothing spent: 200 unspent at the period's end; Basic may keep 30, Plus 80: the period keeps 80, not 110.
    await h.credits.expireGrants({ now: new Date(p.end * 1000 + 1000), userId: s.userId });
    const after = await details(s.userId);
    expect(after.grants.filter((g) => g.id.startsWith('rollover:')).map((g) => g.remaining).sort((a, b) => a - b)).toEqual([30, 50]);
    expect(after.balance).toBe(80);
    await consistentAudit(h.credits, s.userId);
  });
});

describe('refunds and disputes', () => {
  it('a refund after the period rolled over takes the rollover back too: the outcome does not depend on when the sweep ran', async () => {
    for (const sweepFirst of [true, false]) {
      const s = await subscribe(user());
      const p = period();
      const inv = invoice(s, [line('basic', p)]);
      await deliver(delivery(rec.stripe, 'invoice.paid', inv));
      await h.credits.deductCredits(s.userId, 50);
      const sweep = () => h.credits.expireGrants({ now: new Date(p.end * 1000 + 1000), userId: s.userId });
      if (sweepFirst) await sweep();
      const refund = await deliver(delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 1900)));
      expect(refund.body).toEqual(expect.objectContaining({ subscription: s.ref, revoked: sweepFirst ? 30 : 50 }));
      if (!sweepFirst) await sweep();
      expect(await h.credits.getBalance(s.userId)).toBe(0);
      expect((await details(s.userId)).grants).toEqual([]);
      await consistentAudit(h.credits, s.userId);
    }
  });

  it('a refund takes back the period’s unspent allowance once, whatever is delivered again', async () => {
    const s = await subscribe(user());
    const inv = invoice(s, [line('basic', period())]);
    await deliver(delivery(rec.stripe, 'invoice.paid', inv));
    await h.credits.deductCredits(s.userId, 30);
    const refund = delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 1900));
    const first = await deliver(refund);
    expect(first.body).toEqual(expect.objectContaining({ subscription: s.ref, revoked: 70 }));
    expect((await deliver(refund)).body.revoked).toBe(0);
    expect((await deliver(delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 1900)))).body.revoked).toBe(0);
    // The invoice delivered again grants nothing back.
    expect((await deliver(delivery(rec.stripe, 'invoice.paid', inv))).body).toEqual(expect.objectContaining({ creditsGranted: 0 }));
    expect(await h.credits.getBalance(s.userId)).toBe(0);
    await consistentAudit(h.credits, s.userId);
  });

  it('a dispute takes back its period only, once; purchased credits stay', async () => {
    const s = await subscribe(user());
    const bought = checkoutSession(s.userId, 25);
    await h.credits.store.insertPurchase(purchaseRecordOf(bought as never));
    await deliver(signedDelivery(rec.stripe, { type: 'checkout.session.completed', object: bought }));
    const p1 = period();
    const p2 = { start: p1.end, end: p1.end + 30 * DAY };
    const inv1 = invoice(s, [line('basic', p1)]);
    const inv2 = invoice(s, [line('basic', p2)]);
    await deliver(delivery(rec.stripe, 'invoice.paid', inv1));
    await deliver(delivery(rec.stripe, 'invoice.paid', inv2));
    const results = await Promise.all(Array.from({ length: 5 }, () => deliver(delivery(rec.stripe, 'charge.dispute.created', dispute(paymentIntentOf(inv2), 1900)))));
    expect(results.reduce((sum, r) => sum + (r.body.revoked as number), 0)).toBe(100);
    const d = await details(s.userId);
    expect(d.bySource).toEqual({ purchase: 25, subscription: 100 });
    expect(d.grants.find((g) => g.source === 'subscription')!.id).toBe(`grant:subscription:${s.subscriptionId}:${p1.start}`);
    await consistentAudit(h.credits, s.userId);
  });

  it('a refund delivered before the invoice is kept and applied when the payment is linked', async () => {
    const s = await subscribe(user());
    const inv = invoice(s, [line('basic', period())]);
    const early = await deliver(delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv), 1900)));
    expect(early.status).toBe(200);
    const r = await deliver(delivery(rec.stripe, 'invoice.paid', inv));
    expect(r.body).toEqual(expect.objectContaining({ creditsGranted: 100, revoked: 100 }));
    expect(await h.credits.getBalance(s.userId)).toBe(0);
    await consistentAudit(h.credits, s.userId);
  });
});

describe('plans and the portal', () => {
  it('lists the plans with their Stripe price (read once)', async () => {
    const res = await get(`${h.url}/api/credits/plans`, null);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { plans: Array<Record<string, unknown>> };
    expect(body.plans.map((p) => [p.id, p.label, p.credits, p.price, p.rollover])).toEqual([
      ['basic', 'Basic', 100, 'price_basic_monthly', { max: 30 }],
      ['pro', 'Pro', 300, 'price_pro_monthly', null],
      ['plus', 'Plus', 200, 'price_plus_monthly', { max: 80 }],
    ]);
    expect(body.plans[0]).toEqual(expect.objectContaining({ amount: expect.any(Number), currency: expect.any(String) }));
    await get(`${h.url}/api/credits/plans`, null);
    expect(rec.requests.filter((r) => r.path.startsWith('/v1/prices/'))).toHaveLength(rec.requests.length);
    expect(rec.requests.length).toBeLessThanOrEqual(Object.keys(PLANS).length); // one read per price, then cached
    expect((await get(`${h.url}/api/credits/plans?x=1`, null)).status).toBe(400);
  });

  it('opens the billing portal for the user’s customer, and 404s without one', async () => {
    const none = await post(`${h.url}/api/credits/portal`, user());
    expect(none.status).toBe(404);
    expect(rec.requests).toHaveLength(0);
    const s = await subscribe(user());
    await deliver(delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(s)));
    rec.requests.length = 0;
    const res = await post(`${h.url}/api/credits/portal`, s.userId);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ url: expect.stringMatching(/^https:\/\//) });
    expect(rec.requests.map((r) => r.path)).toEqual(['/v1/billing_portal/sessions']);
    expect(rec.requests[0]!.form.get('customer')).toBe(s.customerId);
    expect(rec.requests[0]!.form.get('return_url')).toBe('https://app.example.com');
    expect((await post(`${h.url}/api/credits/portal`, null)).status).toBe(401);
  });
});

describe('any order', () => {
  it('every shuffle of a subscription’s deliveries, repeated and concurrent, ends in the same state', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const random = mulberry32(seed);
      const s = await subscribe(user());
      const p1 = period();
      const p2 = { start: p1.end, end: p1.end + 30 * DAY };
      const inv1 = invoice(s, [line('basic', p1)], { billingReason: 'subscription_create' });
      const inv2 = invoice(s, [line('basic', p2)]);
      const t = nowSeconds();
      const events = [
        delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(s)),
        delivery(rec.stripe, 'invoice.paid', inv1),
        delivery(rec.stripe, 'invoice.paid', inv2),
        delivery(rec.stripe, 'customer.subscription.created', subscription(s, { price: PLANS.basic.price, ...p1 }), { created: t }),
        delivery(rec.stripe, 'customer.subscription.updated', subscription(s, { price: PLANS.basic.price, ...p2, cancelAtPeriodEnd: true }), { created: t + 5 }),
        delivery(rec.stripe, 'charge.refunded', chargeRefunded(paymentIntentOf(inv1), 1900)),
      ];
      // Each delivered one to three times, in a shuffled order, in concurrent batches of up to four.
      const sends = events.flatMap((d) => Array.from({ length: 1 + Math.floor(random() * 3) }, () => d));
      for (let i = sends.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [sends[i], sends[j]] = [sends[j]!, sends[i]!];
      }
      let granted = 0;
      let revoked = 0;
      while (sends.length) {
        const batch = sends.splice(0, 1 + Math.floor(random() * 4));
        for (const r of await Promise.all(batch.map(deliver))) {
          expect(r.status).toBe(200);
          granted += (r.body.creditsGranted as number | undefined) ?? 0;
          revoked += (r.body.revoked as number | undefined) ?? 0;
        }
      }
      expect([seed, granted, revoked]).toEqual([seed, 200, 100]);
      expect(await h.credits.getBalance(s.userId)).toBe(100);
      expect(await h.credits.getSubscription(s.userId)).toEqual(
        expect.objectContaining({ plan: 'basic', status: 'active', cancelAtPeriodEnd: true, currentPeriod: { start: new Date(p2.start * 1000).toISOString(), end: new Date(p2.end * 1000).toISOString() } }),
      );
      await consistentAudit(h.credits, s.userId);
    }
  });
});
