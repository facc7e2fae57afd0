/**
 * Auto-recharge against the embedded database, real HTTP, stripe-mock for every Stripe request the kit makes
 * (customers, the setup-mode Checkout Session, the setup intent with its payment method, the off-session
 * PaymentIntent with its idempotency key) and really signed events. Declines and authentication come from the
 * FAKE in stripe-card-fake.ts (stripe-mock cannot produce them), and from signed payment_intent events.
 */
import mongoose, { type Connection } from 'mongoose';
import { createCredits, CreditsConfigError, type AutoRechargeOptions } from 'credit-kit/server';
import { createFetchCredits } from 'credit-kit/fetch';
import { connect, consistentAudit, get, headerUser, mongoUri, post, WEBHOOK_SECRET } from './helpers';
import { stripeCardFake, type StripeCardFake } from './stripe-card-fake';
import type { RechargeRecord } from '../domain/recharge';
import { crossedWith, deliverEvent, optIn, paymentIntent, put, rechargeKit, record, saveCard, setupSession, type Kit } from './auto-recharge-kit';

let connection: Connection;
const others: Connection[] = [];
let fake: StripeCardFake;

beforeAll(async () => {
  connection = await connect();
  fake = await stripeCardFake();
});
afterAll(async () => {
  await Promise.all(others.map((c) => c.close()));
  await connection.close();
  await fake.close();
});
beforeEach(() => {
  fake.behaviour = 'succeed';
});

async function sameDatabase(): Promise<Connection> {
  const c = mongoose.createConnection(mongoUri(), { dbName: connection.name, serverSelectionTimeoutMS: 2000, maxPoolSize: 50 });
  await c.asPromise();
  others.push(c);
  return c;
}

const PRICING = { creditPriceCents: 10, bundles: [{ id: 'starter', credits: 500, price: 4500 }, { id: 'huge', credits: 50_000, price: 400_000 }] };

/** A kit on this file's database (or `conn`), with two declines allowed before auto-recharge turns off. */
const kit = (auto: Partial<AutoRechargeOptions> = {}, conn = connection) => rechargeKit(fake, conn, PRICING, { maxDeclines: 2, ...auto });
const deliver = (url: string, type: string, object: unknown) => deliverEvent(fake.stripe, url, type, object);

const creationsFor = (user: string) => fake.paymentIntentCreations().filter((r) => r.form.get('metadata[credit_kit_user_id]') === user);

describe('options', () => {
  it('are checked at start-up', () => {
    const base = { connection, getUserId: headerUser };
    expect(() => createCredits({ ...base, autoRecharge: { monthlyCap: 100 } })).toThrow(/pass `stripe` and `webhookSecret`/);
    const withStripe = { ...base, stripe: fake.stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://a.example' };
    expect(() => createCredits({ ...withStripe, autoRecharge: {} as AutoRechargeOptions })).toThrow(/monthlyCap` is required/);
    expect(() => createCredits({ ...withStripe, autoRecharge: { monthlyCap: 1.5 } })).toThrow(CreditsConfigError);
    expect(() => createCredits({ ...withStripe, autoRecharge: { monthlyCap: 100, cooldownMs: -1 } })).toThrow(/cooldownMs/);
    expect(() => createCredits({ ...withStripe, autoRecharge: { monthlyCap: 100, maxDeclines: 0 } })).toThrow(/maxDeclines/);
    expect(() => createCredits({ ...withStripe, autoRecharge: { monthlyCap: 100, cooldown: 5 } as AutoRechargeOptions })).toThrow(/unknown key `autoRecharge.cooldown`/);
    expect(() => createCredits({ ...withStripe, autoRecharge: { monthlyCap: 100, returnPath: '//evil.example' } })).toThrow(/returnPath/);
  });
});

describe('saving a card', () => {
  let k: Kit;
  beforeAll(async () => {
    k = await kit();
  });
  afterAll(() => k.close());

  it('creates one customer and a setup-mode session, and saves the card the verified completion names', async () => {
    fake.requests.length = 0;
    const res = await post(`${k.url}/api/credits/auto-recharge/card`, 'saver', {});
    expect(res.status).toBe(201);
    const { id, url } = (await res.json()) as { id: string; url: string };
    expect(id).toMatch(/^cs_/);
    expect(url).toMatch(/^https:\/\//);
    const [customer, session] = fake.requests;
    expect(customer).toMatchObject({ method: 'POST', path: '/v1/customers' });
    expect(customer!.headers['idempotency-key']).toMatch(/^credit-kit-customer-/);
    expect(customer!.form.get('metadata[credit_kit_user_id]')).toBe('saver');
    expect(session).toMatchObject({ method: 'POST', path: '/v1/checkout/sessions' });
    expect(session!.form.get('mode')).toBe('setup');
    expect(session!.form.get('customer')).toMatch(/^cus_/);
    expect(session!.form.get('metadata[credit_kit_purpose]')).toBe('auto_recharge_card');
    expect(session!.form.get('success_url')).toBe('https://app.example.com/');

    // A second card-saving session keeps the same customer: no second creation.
    fake.requests.length = 0;
    expect((await post(`${k.url}/api/credits/auto-recharge/card`, 'saver', {})).status).toBe(201);
    expect(fake.requests.map((r) => r.path)).toEqual(['/v1/checkout/sessions']);

    const r = await record(k, 'saver');
    expect(r.card).toBeNull();
    fake.requests.length = 0;
    const done = await deliver(k.url, 'checkout.session.completed', setupSession(id, 'saver', r.customerId!));
    expect(done).toMatchObject({ status: 200, body: { autoRecharge: { cardSaved: true } } });
    expect(fake.requests.map((q) => `${q.method} ${q.path.split('?')[0]}`)).toEqual(['GET /v1/setup_intents/seti_123']);
    const view = await (await get(`${k.url}/api/credits/auto-recharge`, 'saver')).json();
    expect(view).toMatchObject({ enabled: false, card: { brand: 'visa', last4: '4242' }, state: 'idle', monthlyCap: 5000 });
    // The same completion again changes nothing.
    expect((await deliver(k.url, 'checkout.session.completed', setupSession(id, 'saver', r.customerId!))).status).toBe(200);
    expect((await record(k, 'saver')).version).toBe((await record(k, 'saver')).version);
  });

  it('ignores completions of sessions the kit did not create for that user', async () => {
    await post(`${k.url}/api/credits/auto-recharge/card`, 'victim', {});
    const victim = await record(k, 'victim');
    const strangers = await deliver(k.url, 'checkout.session.completed', setupSession('cs_test_not_ours', 'victim', victim.customerId!));
    expect(strangers.body.reason).toMatch(/no card-saving session/);
    const other = await deliver(k.url, 'checkout.session.completed', setupSession(victim.setupSessions[0]!, 'victim', 'cus_someone_else'));
    expect(other.body.reason).toMatch(/another customer/);
    expect((await record(k, 'victim')).card).toBeNull();
  });
});

describe('settings', () => {
  let k: Kit;
  beforeAll(async () => {
    k = await kit({ monthlyCap: 1000 });
    await saveCard(k, 'owner');
    await saveCard(k, 'intruder');
  });
  afterAll(() => k.close());

  it('are refused, with a 4xx JSON error and nothing changed, when hostile', async () => {
    expect((await put(k.url, 'owner', { enabled: true, threshold: 100, bundle: 'starter' })).status).toBe(200);
    // stripe-mock answers every setup intent with the same payment method: the intruder's card is given an id of its own.
    const intruder = await record(k, 'intruder');
    await k.credits.store.replaceRecharge({ ...intruder, card: { ...intruder.card!, paymentMethodId: 'pm_intruders_card' }, version: intruder.version + 1 });
    const intruderCard = 'pm_intruders_card';
    const before = await record(k, 'owner');
    const bad: Array<[unknown, number, RegExp]> = [
      [{ threshold: -5 }, 400, /threshold/],
      [{ threshold: 0 }, 400, /threshold/],
      [{ threshold: 10.5 }, 400, /threshold/],
      [{ threshold: 1e300 }, 400, /threshold/],
      [{ threshold: '100' }, 400, /threshold/],
      [{ threshold: 1001 }, 400, /monthly cap/],
      [{ credits: 3.5 }, 400, /credits/],
      [{ credits: -200 }, 400, /credits/],
      [{ credits: 2000 }, 400, /monthly cap/],
      [{ credits: 2 }, 400, /credits/], // below the minimum charge
      [{ bundle: 'nope' }, 400, /Unknown bundle/],
      [{ bundle: 'huge' }, 400, /monthly cap/],
      [{ bundle: { $ne: null } }, 400, /Unknown bundle/],
      [{ bundle: 'starter', credits: 100 }, 400, /not both/],
      [{ enabled: 'yes' }, 400, /enabled/],
      [{ userId: 'intruder' }, 400, /Unknown field/],
      [{ paymentMethod: intruderCard }, 404, /No such card/],
      [{ paymentMethod: 'pm_made_up' }, 404, /No such card/],
      [[1, 2], 400, /JSON object/],
    ];
    for (const [body, status, message] of bad) {
      const res = await put(k.url, 'owner', body);
      const json = (await res.json()) as { error: { message: string } };
      expect([JSON.stringify(body), res.status]).toEqual([JSON.stringify(body), status]);
      expect(json.error.message).toMatch(message);
    }
    const notJson = await fetch(`${k.url}/api/credits/auto-recharge`, { method: 'PUT', headers: { 'x-test-user': 'owner', 'content-type': 'text/plain' }, body: '{}' });
    expect(notJson.status).toBe(415);
    expect((await put(k.url, 'nobody-has-a-card', { enabled: true, threshold: 5, credits: 100 })).status).toBe(409);
    expect((await fetch(`${k.url}/api/credits/auto-recharge`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(401);
    expect(await record(k, 'owner')).toEqual(before);
    // The owner may name their own card.
    const own = await put(k.url, 'owner', { paymentMethod: before.card!.paymentMethodId, threshold: 50 });
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ enabled: true, threshold: 50, topUp: { bundle: 'starter', credits: 500, amount: 4500 } });
  });

  it('turn off, and remove the card (detached at Stripe)', async () => {
    const off = await fetch(`${k.url}/api/credits/auto-recharge`, { method: 'DELETE', headers: { 'x-test-user': 'owner' } });
    expect(await off.json()).toMatchObject({ enabled: false, card: { last4: '4242' } });
    fake.requests.length = 0;
    const removed = await fetch(`${k.url}/api/credits/auto-recharge/card`, { method: 'DELETE', headers: { 'x-test-user': 'owner' } });
    expect(await removed.json()).toMatchObject({ enabled: false, card: null });
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([expect.stringMatching(/^POST \/v1\/payment_methods\/pm_\w+\/detach$/)]);
    expect((await get(`${k.url}/api/credits/auto-recharge/action`, 'owner')).status).toBe(404);
  });
});

describe('the trigger', () => {
  it('starts exactly one payment when 150 concurrent spends on three instances take the balance through the threshold', async () => {
    const a = await kit();
    const b = await kit({}, await sameDatabase());
    const c = await kit({}, await sameDatabase());
    const user = 'crowd';
    await optIn(a, user);
    const spends = await Promise.all(Array.from({ length: 150 }, (_, i) => [a, b, c][i % 3]!.credits.deductCredits(user, 2)));
    expect(spends.every(Boolean)).toBe(true);
    await Promise.all([a, b, c].map((k) => k.credits.flush()));

    const created = creationsFor(user);
    expect(created).toHaveLength(1);
    const f = created[0]!.form;
    const r = await record(a, user);
    expect(Object.fromEntries(f)).toMatchObject({
      amount: '2000',
      currency: 'usd',
      customer: r.customerId,
      payment_method: r.card!.paymentMethodId,
      off_session: 'true',
      confirm: 'true',
      'metadata[credit_kit_user_id]': user,
      'metadata[credit_kit_credits]': '200',
      'metadata[credit_kit_recharge_attempt]': r.attempt!.id,
    });
    expect(created[0]!.headers['idempotency-key']).toMatch(/^credit-kit-recharge-[0-9a-f]{64}$/);
    expect(r).toMatchObject({ state: 'pending', attempt: { credits: 200, amount: 2000, paymentIntentId: expect.stringMatching(/^pi_/) } });
    expect([...a.events, ...b.events, ...c.events].filter((e) => e.type === 'started')).toHaveLength(1);
    expect(await a.credits.getBalance(user)).toBe(0); // nothing credited before Stripe's event

    // The verified event, replayed and delivered to every instance at once: credited once.
    const succeeded = paymentIntent(r, 'succeeded');
    const answers = await Promise.all([a, b, c, a, b, c].map((k) => deliver(k.url, 'payment_intent.succeeded', succeeded)));
    expect(answers.every((x) => x.status === 200)).toBe(true);
    expect(answers.reduce((s, x) => s + ((x.body.autoRecharge as { creditsAdded: number }).creditsAdded ?? 0), 0)).toBe(200);
    // A failure reported after the success (reordered) changes nothing.
    await deliver(b.url, 'payment_intent.payment_failed', paymentIntent(r, 'requires_payment_method', { last_payment_error: { code: 'card_declined' } }));
    await Promise.all([a, b, c].map((k) => k.credits.flush()));
    expect(await record(a, user)).toMatchObject({ state: 'idle', lastResult: { status: 'succeeded', credits: 200 } });
    let audit = await consistentAudit(a.credits, user);
    expect(audit.balance).toBe(200);
    expect([...a.events, ...b.events, ...c.events].filter((e) => e.type === 'succeeded')).toHaveLength(1);

    // Another crossing (200 -> 50) is another recharge; a spend below the threshold is not a crossing.
    await b.credits.deductCredits(user, 150);
    await c.credits.deductCredits(user, 10);
    await Promise.all([a, b, c].map((k) => k.credits.flush()));
    expect(creationsFor(user)).toHaveLength(2);
    const second = await record(a, user);
    expect(second.attempt!.id).not.toBe(r.attempt!.id);
    expect(new Set(creationsFor(user).map((q) => q.headers['idempotency-key'])).size).toBe(2);
    await deliver(c.url, 'payment_intent.succeeded', paymentIntent(second, 'succeeded'));
    audit = await consistentAudit(a.credits, user);
    expect(audit.balance).toBe(240);
    expect((await a.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(0);
    await Promise.all([a, b, c].map((k) => k.close()));
  });

  it('claws a refunded or disputed recharge back exactly like a purchase', async () => {
    const k = await kit();
    await optIn(k, 'refunded', { enabled: true, threshold: 100, bundle: 'starter' });
    await k.credits.deductCredits('refunded', 250);
    await k.credits.flush();
    const r = await record(k, 'refunded');
    expect(r.attempt).toMatchObject({ credits: 500, amount: 4500 });
    // The refund arrives before the success: kept by payment intent, applied once the credits are.
    const charge = { id: 'ch_r', object: 'charge', payment_intent: r.attempt!.paymentIntentId, amount: 4500, amount_refunded: 2250, refunded: false };
    await deliver(k.url, 'charge.refunded', charge);
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(r, 'succeeded'));
    await deliver(k.url, 'charge.refunded', charge);
    let audit = await consistentAudit(k.credits, 'refunded');
    expect(audit.balance).toBe(50 + 500 - 250);
    const dispute = { id: 'dp_r', object: 'dispute', payment_intent: r.attempt!.paymentIntentId, amount: 2250, status: 'lost' };
    await deliver(k.url, 'charge.dispute.closed', dispute);
    await deliver(k.url, 'charge.dispute.closed', dispute);
    audit = await consistentAudit(k.credits, 'refunded');
    expect(audit.balance).toBe(50);
    const history = await k.credits.listTransactions('refunded', { limit: 10 });
    // The refund was known before the success: the purchase entry is what was left of it, the dispute took the rest.
    expect(history.transactions.filter((t) => t.kind === 'purchase' || t.kind === 'clawback').map((t) => [t.kind, t.amount])).toEqual([
      ['clawback', -250],
      ['purchase', 250],
    ]);
    await k.close();
  });

  it('starts nothing within the cooldown or past the monthly cap, and says why', async () => {
    const k = await kit({ monthlyCap: 300, cooldownMs: 60_000 });
    await optIn(k, 'looper', { enabled: true, threshold: 100, credits: 200 });
    await k.credits.deductCredits('looper', 250); // 300 -> 50: the first recharge
    await k.credits.flush();
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(await record(k, 'looper'), 'succeeded'));
    await k.credits.deductCredits('looper', 200); // 250 -> 50: within the cooldown
    await k.credits.flush();
    expect(creationsFor('looper')).toHaveLength(1);
    expect(await record(k, 'looper')).toMatchObject({ state: 'idle', lastResult: { status: 'skipped', reason: 'cooldown' } });

    // Past the cooldown (moved back in the record, as if a minute went by), the cap still stops it: 200 + 200 > 300.
    const r = await record(k, 'looper');
    await k.credits.store.replaceRecharge({ ...r, lastAttemptAt: new Date(Date.now() - 120_000), version: r.version + 1 });
    await k.credits.grantCredits('looper', 100, { idempotencyKey: 'looper-up' });
    await k.credits.deductCredits('looper', 100);
    await k.credits.flush();
    expect(creationsFor('looper')).toHaveLength(1);
    expect(await record(k, 'looper')).toMatchObject({ lastResult: { status: 'skipped', reason: 'monthly_cap' }, month: { credits: 200 } });
    expect(k.events.filter((e) => e.type === 'skipped').map((e) => e.reason)).toEqual(['cooldown', 'monthly_cap']);
    await consistentAudit(k.credits, 'looper');
    await k.close();
  });
});

describe('a crossing owed', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Opted in, recharged once (300 -> 50 -> 250), then a spend crosses again within the cooldown (250 -> 50). */
  async function crossWithinCooldown(k: Kit, user: string): Promise<RechargeRecord> {
    await optIn(k, user, { enabled: true, threshold: 100, credits: 200 });
    await k.credits.deductCredits(user, 250);
    await k.credits.flush();
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(await record(k, user), 'succeeded'));
    await k.credits.deductCredits(user, 200);
    await k.credits.flush();
    const r = await record(k, user);
    expect(r).toMatchObject({ state: 'idle', owed: r.crossingSeq, lastResult: { status: 'skipped', reason: 'cooldown' } });
    expect(r.owed).toBeGreaterThan(r.attempt!.crossingSeq);
    expect(r.dueAt!.getTime()).toBe(r.lastAttemptAt!.getTime() + 400);
    expect(creationsFor(user)).toHaveLength(1);
    return r;
  }

  it('is recharged by reconcile() once the cooldown is over: one payment, even with two instances reconciling at once', async () => {
    const a = await kit({ cooldownMs: 400 });
    const b = await kit({ cooldownMs: 400 }, await sameDatabase());
    const user = 'owed-later';
    const skipped = await crossWithinCooldown(a, user);
    // Not within the cooldown.
    expect((await a.credits.reconcile()).rechargesSent + (await b.credits.reconcile()).rechargesSent).toBe(0);
    expect(creationsFor(user)).toHaveLength(1);

    await sleep(Math.max(0, skipped.dueAt!.getTime() - Date.now()) + 50);
    const passes = await Promise.all([a, b, a, b].map((k) => k.credits.reconcile()));
    expect(passes.reduce((n, p) => n + p.rechargesSent, 0)).toBe(1);
    await Promise.all([a, b].map((k) => k.credits.flush()));
    const created = creationsFor(user);
    expect(created).toHaveLength(2);
    expect(new Set(created.map((q) => q.headers['idempotency-key'])).size).toBe(2);
    const r = await record(a, user);
    expect(r).toMatchObject({ state: 'pending', attempt: { id: `${skipped.owed}.1`, crossingSeq: skipped.owed, credits: 200, paymentIntentId: expect.stringMatching(/^pi_/) } });
    expect(r.owed).toBeUndefined();
    expect(created[1]!.form.get('metadata[credit_kit_recharge_attempt]')).toBe(`${skipped.owed}.1`);
    expect([...a.events, ...b.events].filter((e) => e.type === 'started')).toHaveLength(2);
    // Paid: nothing more owed, whatever reconciles next.
    expect((await Promise.all([a, b].map((k) => k.credits.reconcile({ olderThanMs: 0 })))).every((p) => p.rechargesSent === 0)).toBe(true);
    await Promise.all([a, b].map((k) => deliver(k.url, 'payment_intent.succeeded', paymentIntent(r, 'succeeded'))));
    expect(await record(a, user)).toMatchObject({ state: 'idle', lastResult: { status: 'succeeded' } });
    expect((await consistentAudit(a.credits, user)).balance).toBe(250);
    expect(creationsFor(user)).toHaveLength(2);
    await Promise.all([a, b].map((k) => k.close()));
  });

  it('is dropped when the balance went back above the threshold meanwhile, or auto-recharge was turned off', async () => {
    const k = await kit({ cooldownMs: 400 });
    const up = await crossWithinCooldown(k, 'owed-topped');
    await k.credits.grantCredits('owed-topped', 100, { idempotencyKey: 'owed-topped-up' }); // 50 -> 150
    const off = await crossWithinCooldown(k, 'owed-off');
    expect((await put(k.url, 'owed-off', { enabled: false })).status).toBe(200);
    await sleep(Math.max(up.dueAt!.getTime(), off.dueAt!.getTime()) - Date.now() + 50);
    expect((await k.credits.reconcile()).rechargesSent).toBe(0);
    for (const user of ['owed-topped', 'owed-off']) {
      const r = await record(k, user);
      expect(r.owed).toBeUndefined();
      expect(r.dueAt).toBeUndefined();
      expect(creationsFor(user)).toHaveLength(1);
    }
    // Turned on again: the old crossing is not revived.
    expect((await put(k.url, 'owed-off', { enabled: true })).status).toBe(200);
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(0);
    expect(creationsFor('owed-off')).toHaveLength(1);
    expect((await consistentAudit(k.credits, 'owed-topped')).balance).toBe(150);
    expect((await consistentAudit(k.credits, 'owed-off')).balance).toBe(50);
    await k.close();
  });

  it('is owed again while a recharge leaves the balance below the threshold, until the monthly cap', async () => {
    const k = await kit({ monthlyCap: 400, cooldownMs: 0 });
    const user = 'owed-high';
    await optIn(k, user, { enabled: true, threshold: 400, credits: 150 }, 400);
    await k.credits.deductCredits(user, 350); // 400 -> 50: the crossing
    await k.credits.flush();
    const first = await record(k, user);
    expect(first.attempt).toMatchObject({ n: 1, credits: 150 });
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(first, 'succeeded')); // 200, still below 400
    expect(await record(k, user)).toMatchObject({ state: 'idle', owed: first.attempt!.crossingSeq });
    expect((await k.credits.reconcile()).rechargesSent).toBe(1);
    const second = await record(k, user);
    expect(second).toMatchObject({ state: 'pending', month: { credits: 300 }, attempt: { id: `${first.attempt!.crossingSeq}.2`, n: 2 } });
    // A replay of the first success owes nothing more.
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(first, 'succeeded'));
    expect((await k.credits.reconcile()).rechargesSent).toBe(0);
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(second, 'succeeded')); // 350, still below
    expect((await record(k, user)).owed).toBe(first.attempt!.crossingSeq);
    // The cap stops it: 300 + 150 > 400. Not owed any more, told once.
    expect((await k.credits.reconcile()).rechargesSent).toBe(0);
    expect((await k.credits.reconcile()).rechargesSent).toBe(0);
    const last = await record(k, user);
    expect(last).toMatchObject({ state: 'idle', lastResult: { status: 'skipped', reason: 'monthly_cap' } });
    expect(last.owed).toBeUndefined();
    expect(last.dueAt).toBeUndefined();
    const created = creationsFor(user);
    expect(created).toHaveLength(2);
    expect(new Set(created.map((q) => q.headers['idempotency-key'])).size).toBe(2);
    await k.credits.flush();
    expect(k.events.filter((e) => e.type === 'skipped').map((e) => e.reason)).toEqual(['monthly_cap']);
    expect((await consistentAudit(k.credits, user)).balance).toBe(350);
    await k.close();
  });
});

describe('failures', () => {
  it('retries a declined card after the cooldown, at most maxDeclines times, then pauses and tells the app', async () => {
    const k = await kit({ cooldownMs: 300, maxDeclines: 2 });
    await optIn(k, 'declined');
    fake.behaviour = 'decline';
    await k.credits.deductCredits('declined', 250);
    await k.credits.flush();
    expect(await record(k, 'declined')).toMatchObject({ state: 'retrying', declines: 1, lastResult: { status: 'declined', reason: 'insufficient_funds' }, month: { credits: 0 } });
    // Not before the cooldown: reconcile() waits.
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(0);
    await new Promise((r) => setTimeout(r, 350));
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(1);
    await k.credits.flush();
    const created = creationsFor('declined');
    expect(created).toHaveLength(2);
    expect(created[0]!.headers['idempotency-key']).not.toBe(created[1]!.headers['idempotency-key']);
    const paused = await record(k, 'declined');
    expect(paused).toMatchObject({ state: 'paused', declines: 2 });
    expect(k.events.map((e) => e.type)).toEqual(['started', 'declined', 'started', 'paused']);
    // The Stripe event of the same decline, delivered after, counts nothing twice.
    await deliver(k.url, 'payment_intent.payment_failed', paymentIntent(paused, 'requires_payment_method', { last_payment_error: { code: 'card_declined' } }));
    expect((await record(k, 'declined')).declines).toBe(2);

    // Paused: another crossing starts nothing until the user turns it on again.
    fake.behaviour = 'succeed';
    await k.credits.grantCredits('declined', 100, { idempotencyKey: 'declined-up' });
    await k.credits.deductCredits('declined', 100);
    await k.credits.flush();
    await new Promise((r) => setTimeout(r, 350));
    await k.credits.reconcile({ olderThanMs: 0 });
    expect(creationsFor('declined')).toHaveLength(2);
    expect((await put(k.url, 'declined', { enabled: true })).status).toBe(200);
    expect(await record(k, 'declined')).toMatchObject({ state: 'idle', declines: 0 });
    await consistentAudit(k.credits, 'declined');
    await k.close();
  });

  it('leaves a payment that needs authentication to its owner, who gets the client secret, and credits it once completed', async () => {
    const k = await kit();
    const r = await crossedWith(fake, k, 'sca', 'authenticate');
    expect(r).toMatchObject({ state: 'requires_action', lastResult: { status: 'requires_action' }, attempt: { paymentIntentId: expect.stringMatching(/^pi_fake_/) } });
    expect(k.events.map((e) => e.type)).toEqual(['started', 'requires_action']);
    const seen = fake.requests.length;
    const action = await get(`${k.url}/api/credits/auto-recharge/action`, 'sca');
    expect(action.status).toBe(200);
    expect(await action.json()).toMatchObject({ paymentIntentId: r.attempt!.paymentIntentId, clientSecret: expect.stringMatching(/_secret_/), credits: 200, amount: 2000 });
    expect(fake.requests.slice(seen).map((q) => `${q.method} ${q.path}`)).toEqual([`GET /v1/payment_intents/${r.attempt!.paymentIntentId}`]);
    expect((await get(`${k.url}/api/credits/auto-recharge/action`, 'someone-else')).status).toBe(404);
    expect((await get(`${k.url}/api/credits/auto-recharge/action`, null)).status).toBe(401);

    // While it waits, another crossing starts nothing: one in flight.
    await k.credits.grantCredits('sca', 100, { idempotencyKey: 'sca-up' });
    await k.credits.deductCredits('sca', 100);
    await k.credits.flush();
    expect(creationsFor('sca')).toHaveLength(1);
    // The Stripe event saying the same changes nothing; the success after authentication credits once.
    await deliver(k.url, 'payment_intent.payment_failed', paymentIntent(r, 'requires_action', { last_payment_error: { code: 'authentication_required' } }));
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(r, 'succeeded'));
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(r, 'succeeded'));
    expect(await record(k, 'sca')).toMatchObject({ state: 'idle', lastResult: { status: 'succeeded' } });
    expect((await consistentAudit(k.credits, 'sca')).balance).toBe(250);
    expect((await get(`${k.url}/api/credits/auto-recharge/action`, 'sca')).status).toBe(404);
    await k.close();
  });

  it('closes an open payment that succeeds after its record went idle (a paused record turned on again), so later crossings are not held behind it', async () => {
    const k = await kit({ maxDeclines: 1 });
    const user = 'late-success';
    await optIn(k, user);
    fake.behaviour = 'decline';
    fake.cancelBehaviour = 'already-succeeded'; // Stripe: it cannot be canceled, it has succeeded
    try {
      await k.credits.deductCredits(user, 250);
      await k.credits.flush();
      await k.credits.reconcile({ olderThanMs: 0 });
      await k.credits.flush();
      const paused = await record(k, user);
      expect(paused).toMatchObject({ state: 'paused', attempt: { open: true } });
      // The user turns auto-recharge on again: the record is idle, its old payment still open.
      fake.cancelBehaviour = 'cancel';
      expect((await put(k.url, user, { enabled: true })).status).toBe(200);
      expect(await record(k, user)).toMatchObject({ state: 'idle', attempt: { open: true } });
      // The old payment's success arrives: its credits once, and nothing is left open.
      fake.behaviour = 'succeed';
      const done = await deliver(k.url, 'payment_intent.succeeded', paymentIntent(paused, 'succeeded'));
      expect(done.body.autoRecharge).toMatchObject({ creditsAdded: 200, state: 'idle' });
      const after = await record(k, user);
      expect(after.attempt?.open).toBeUndefined();
      expect(after).toMatchObject({ state: 'idle', lastResult: { status: 'succeeded' } });
      // The next crossing starts a payment of its own.
      await k.credits.deductCredits(user, 200);
      await k.credits.flush();
      await k.credits.reconcile({ olderThanMs: 0 });
      await k.credits.flush();
      expect(creationsFor(user)).toHaveLength(2);
      await consistentAudit(k.credits, user);
    } finally {
      fake.behaviour = 'succeed';
      fake.cancelBehaviour = 'cancel';
      await k.close();
    }
  });

  it('takes the outcome from payment_intent events too: a decline reported only by its event', async () => {
    const k = await kit({ maxDeclines: 1 });
    await optIn(k, 'late-decline');
    await k.credits.deductCredits('late-decline', 250);
    await k.credits.flush();
    const r = await record(k, 'late-decline');
    expect(r.state).toBe('pending');
    const failed = paymentIntent(r, 'requires_payment_method', { last_payment_error: { code: 'card_declined', decline_code: 'expired_card' } });
    await Promise.all([deliver(k.url, 'payment_intent.payment_failed', failed), deliver(k.url, 'payment_intent.payment_failed', failed)]);
    expect(await record(k, 'late-decline')).toMatchObject({ state: 'paused', declines: 1, lastResult: { status: 'declined', reason: 'expired_card' } });
    // An event about a payment the kit did not start, or one that does not match the attempt, credits nothing.
    expect((await deliver(k.url, 'payment_intent.succeeded', { ...paymentIntent(r, 'succeeded'), metadata: {} })).body.ignored).toBe(true);
    const tampered = await deliver(k.url, 'payment_intent.succeeded', { ...paymentIntent(r, 'succeeded'), amount: 1 });
    expect(tampered.body.reason).toMatch(/does not match/);
    expect((await consistentAudit(k.credits, 'late-decline')).balance).toBe(50);
    await k.close();
  });

  it('sends a payment a crash left unsent under the same idempotency key, and survives a lost reply', async () => {
    const k = await kit();
    await optIn(k, 'crashed');
    // The record as a crash right after the compare-and-set leaves it: pending, no PaymentIntent yet.
    const r = await record(k, 'crashed');
    const attempt = { id: '9.1', crossingSeq: 9, n: 1, credits: 200, amount: 2000, currency: 'usd', paymentMethodId: r.card!.paymentMethodId, paymentIntentId: null, startedAt: new Date(Date.now() - 5000) };
    await k.credits.store.replaceRecharge({ ...r, state: 'pending', attempt, crossingSeq: 9, dueAt: new Date(Date.now() - 1000), version: r.version + 1 });
    fake.behaviour = 'lose-reply';
    await k.credits.reconcile({ olderThanMs: 0 }); // the reply is lost: reported, left due
    expect(k.errors.map((e) => (e as { code?: string }).code)).toContain('payment_provider_error');
    expect((await record(k, 'crashed')).dueAt).toBeDefined();
    fake.behaviour = 'succeed';
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(1);
    const created = creationsFor('crashed');
    expect(created.length).toBeGreaterThanOrEqual(2);
    expect(new Set(created.map((q) => q.headers['idempotency-key'])).size).toBe(1);
    const sent = await record(k, 'crashed');
    expect(sent.attempt!.paymentIntentId).toMatch(/^pi_/);
    expect(sent.dueAt).toBeUndefined();
    await deliver(k.url, 'payment_intent.succeeded', paymentIntent(sent, 'succeeded'));
    expect((await consistentAudit(k.credits, 'crashed')).balance).toBe(500);
    await k.close();
  });
});

describe('the Fetch side', () => {
  it('serves the same routes on the shared core', async () => {
    const credits = createFetchCredits({
      connection,
      getUserId: (req) => req.headers.get('x-test-user'),
      stripe: fake.stripe,
      webhookSecret: WEBHOOK_SECRET,
      publicUrl: 'https://app.example.com',
      pricing: PRICING,
      autoRecharge: { monthlyCap: 1000 },
    });
    const at = (path: string, init: RequestInit & { user?: string } = {}) =>
      new Request(`https://app.example.com/api${path}`, { ...init, headers: { ...(init.user ? { 'x-test-user': init.user } : {}), 'content-type': 'application/json' } });
    const view = await credits.routes.GET(at('/credits/auto-recharge', { user: 'fetcher' }));
    expect(await view.json()).toMatchObject({ enabled: false, card: null, state: 'idle', monthlyCap: 1000 });
    const saved = await credits.routes.POST(at('/credits/auto-recharge/card', { user: 'fetcher', method: 'POST', body: '{}' }));
    expect(saved.status).toBe(201);
    const refused = await credits.routes.PUT(at('/credits/auto-recharge', { user: 'fetcher', method: 'PUT', body: JSON.stringify({ threshold: -1 }) }));
    expect(refused.status).toBe(400);
    const on = await credits.routes.PUT(at('/credits/auto-recharge', { user: 'fetcher', method: 'PUT', body: JSON.stringify({ enabled: true, threshold: 10, credits: 100 }) }));
    expect(on.status).toBe(409); // no card yet
    const off = await credits.routes.DELETE(at('/credits/auto-recharge', { user: 'fetcher', method: 'DELETE' }));
    expect(await off.json()).toMatchObject({ enabled: false });
    expect((await credits.routes.GET(at('/credits/auto-recharge/action', { user: 'fetcher' }))).status).toBe(404);
    await credits.flush();
  });
});
