/**
 * Subscriptions on the Fetch side (createFetchCredits: the same routes on the same core), and the `plans`
 * option checked at start-up.
 */
import { randomUUID } from 'node:crypto';
import type { Connection } from 'mongoose';
import { createCredits, CreditsConfigError, type CreateCreditsOptions } from 'credit-kit/server';
import { fetchHarness, type FetchHarness } from './fetch-helpers';
import { connect, consistentAudit, get, headerUser, post, recordingStripe, WEBHOOK_SECRET } from './helpers';
import { DAY, delivery, invoice, newSub, nowSeconds, sessionCompleted } from './subscription-events';

const PLANS = { team: { price: 'price_team', credits: 500, label: 'Team', rollover: { max: 0 } } };

describe('the Fetch side', () => {
  let h: FetchHarness;
  let rec: Awaited<ReturnType<typeof recordingStripe>>;
  beforeAll(async () => {
    rec = await recordingStripe();
    h = await fetchHarness(() => ({}), { stripe: rec.stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com', plans: PLANS });
  });
  afterAll(async () => {
    await h.close();
    await rec.close();
  });

  it('10 concurrent subscribes create one Stripe session, all answered with it', async () => {
    const u = `f-${randomUUID()}`;
    rec.requests.length = 0;
    const results = await Promise.all(Array.from({ length: 10 }, () => post(`${h.url}/api/credits/subscribe`, u, { plan: 'team' })));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(201));
    const ids = new Set(await Promise.all(results.map(async (r) => ((await r.json()) as { id: string }).id)));
    expect(ids.size).toBe(1);
    expect(rec.requests.filter((r) => r.path === '/v1/checkout/sessions')).toHaveLength(1);
  });

  it('subscribes, grants the paid period once, shows the plan and opens the portal', async () => {
    const u = `f-${randomUUID()}`;
    const plans = await (await get(`${h.url}/api/credits/plans`, null)).json();
    expect(plans).toEqual({ creditName: 'credits', plans: [expect.objectContaining({ id: 'team', credits: 500, price: 'price_team', rollover: { max: 0 } })] });
    expect(await (await get(`${h.url}/api/credits/plan`, u)).json()).toEqual({ plan: null });
    expect((await post(`${h.url}/api/credits/portal`, u)).status).toBe(404);
    expect((await post(`${h.url}/api/credits/subscribe`, u, { plan: 'nope' })).status).toBe(400);

    rec.requests.length = 0;
    const res = await post(`${h.url}/api/credits/subscribe`, u, { plan: 'team' });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const form = rec.requests[0]!.form;
    expect(form.get('mode')).toBe('subscription');
    const s = newSub(form.get('metadata[credit_kit_subscription]')!, u, 'team', id);

    const start = nowSeconds() - 60;
    const inv = invoice(s, [{ price: 'price_team', amount: 4900, start, end: start + 30 * DAY }], { billingReason: 'subscription_create' });
    const send = async (d: { body: string; headers: Record<string, string> }) =>
      (await (await fetch(`${h.url}/api/stripe/webhook`, { method: 'POST', headers: d.headers, body: d.body })).json()) as Record<string, unknown>;
    const granted = await Promise.all(Array.from({ length: 4 }, () => send(delivery(rec.stripe, 'invoice.paid', inv))));
    expect(granted.reduce((sum, r) => sum + (r.creditsGranted as number), 0)).toBe(500);
    await send(delivery(rec.stripe, 'checkout.session.completed', sessionCompleted(s)));

    expect(await (await get(`${h.url}/api/credits/plan`, u)).json()).toEqual(expect.objectContaining({ plan: 'team', label: 'Team', status: 'active' }));
    expect(await h.credits.getSubscription(u)).toEqual(expect.objectContaining({ plan: 'team' }));
    const portal = await post(`${h.url}/api/credits/portal`, u);
    expect(portal.status).toBe(200);
    expect(await portal.json()).toEqual({ url: expect.stringMatching(/^https:\/\//) });
    expect(await h.credits.getBalance(u)).toBe(500);
    await consistentAudit(h.credits, u);
  });
});

describe('the plans option', () => {
  let connection: Connection;
  beforeAll(async () => {
    connection = await connect();
  });
  afterAll(() => connection.close());
  const start = (plans: unknown) => () => createCredits({ connection, getUserId: headerUser, plans } as CreateCreditsOptions);

  it.each<[string, unknown, RegExp]>([
    ['not an object', [], /`plans` must be an object of plans by id/],
    ['a bad plan id', { 'a b': { price: 'price_1', credits: 1 } }, /a plan id must be 1-64 letters/],
    ['a price that is no Price id', { pro: { price: 'pro-monthly', credits: 1 } }, /`plans.pro.price` must be the id of a recurring Stripe Price/],
    ['fractional credits', { pro: { price: 'price_1', credits: 1.5 } }, /`plans.pro.credits` must be a positive integer/],
    ['no credits', { pro: { price: 'price_1', credits: 0 } }, /`plans.pro.credits` must be a positive integer/],
    ['two plans on one price', { a: { price: 'price_1', credits: 1 }, b: { price: 'price_1', credits: 2 } }, /plans 'a' and 'b' name the same price price_1/],
    ['a negative rollover', { pro: { price: 'price_1', credits: 10, rollover: { max: -1 } } }, /`plans.pro.rollover` must be \{ max \}/],
    ['a fractional rollover', { pro: { price: 'price_1', credits: 10, rollover: { max: 0.5 } } }, /`plans.pro.rollover` must be \{ max \}/],
    ['a rollover with other keys', { pro: { price: 'price_1', credits: 10, rollover: { max: 1, forever: true } } }, /`plans.pro.rollover` must be \{ max \}/],
    ['an unknown key', { pro: { price: 'price_1', credits: 10, credit: 5 } }, /unknown key `plans.pro.credit`/],
    ['a priority out of range', { pro: { price: 'price_1', credits: 10, priority: 101 } }, /`plans.pro.priority` must be an integer from 0 to 100/],
  ])('%s', (_what, plans, message) => {
    expect(start(plans)).toThrow(CreditsConfigError);
    expect(start(plans)).toThrow(message);
  });

  it('accepts good plans', () => {
    expect(start({ pro: { price: 'price_1', credits: 10, label: 'Pro', rollover: { max: 0 }, priority: 0 }, free: { price: 'price_2', credits: 1 } })).not.toThrow();
  });
});
