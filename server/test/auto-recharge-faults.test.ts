/**
 * Auto-recharge under the faults of a review: an attempt given up on whose PaymentIntent may still succeed
 * (declined after authentication started, paused, abandoned authentication), a PaymentIntent event whose
 * metadata names another user's attempt, an unsent attempt older than Stripe keeps idempotency keys. Against
 * the embedded database, real HTTP, stripe-mock behind the named card fake (stripe-card-fake.ts), signed events.
 */
import express from 'express';
import type { Connection } from 'mongoose';
import type { AutoRechargeOptions } from 'credit-kit/server';
import { connect, consistentAudit, listen, post } from './helpers';
import { stripeCardFake, type StripeCardFake } from './stripe-card-fake';
import { crossedWith, deliverEvent, optIn, paymentIntent, put, rechargeKit, record, type Kit } from './auto-recharge-kit';

let connection: Connection;
let fake: StripeCardFake;

beforeAll(async () => {
  connection = await connect();
  fake = await stripeCardFake();
});
afterAll(async () => {
  await connection.close();
  await fake.close();
});
beforeEach(() => {
  fake.behaviour = 'succeed';
  fake.cancelBehaviour = 'cancel';
});

/** A kit on this file's database, with three declines allowed before auto-recharge turns off. */
const kit = (auto: Partial<AutoRechargeOptions> = {}) => rechargeKit(fake, connection, { creditPriceCents: 10 }, { maxDeclines: 3, ...auto });

/** Delivers a signed event, which must be answered 200; the JSON answer. */
async function deliver(url: string, type: string, object: unknown): Promise<Record<string, unknown>> {
  const res = await deliverEvent(fake.stripe, url, type, object);
  expect(res.status).toBe(200);
  return res.body;
}

const creationsFor = (user: string) => fake.paymentIntentCreations().filter((r) => r.form.get('metadata[credit_kit_user_id]') === user);

/** Takes the balance through the threshold again (a grant back above it, then a spend below it). */
async function crossAgain(k: Kit, user: string, key: string): Promise<void> {
  const balance = await k.credits.getBalance(user);
  if (balance < 150) await k.credits.grantCredits(user, 150 - balance, { idempotencyKey: `${key}-up` });
  await k.credits.deductCredits(user, 100);
  await k.credits.flush();
}

const cancelsOf = (pi: string | null) => fake.paymentIntentCancels().filter((r) => r.path === `/v1/payment_intents/${pi}/cancel`);

describe('an attempt the kit gives up on', () => {
  it('is canceled at Stripe before a retry creates the next payment: never two that can succeed', async () => {
    const k = await kit();
    const first = await crossedWith(fake, k, 'sca-then-fail', 'authenticate');
    expect(first.state).toBe('requires_action'); // the page has the client secret from now on
    // The card holder fails the authentication once; Stripe says so; the page may still try again.
    await deliver(k.url, 'payment_intent.payment_failed', paymentIntent(first, 'requires_payment_method', { last_payment_error: { code: 'payment_intent_authentication_failure' } }));
    await k.credits.flush();
    expect((await record(k, 'sca-then-fail')).state).toBe('retrying');
    fake.behaviour = 'succeed';
    await k.credits.reconcile({ olderThanMs: 0 });
    await k.credits.flush();
    // The first PaymentIntent was canceled before the second was created.
    expect(cancelsOf(first.attempt!.paymentIntentId)).toHaveLength(1);
    const created = creationsFor('sca-then-fail');
    expect(created).toHaveLength(2);
    expect(fake.requests.indexOf(cancelsOf(first.attempt!.paymentIntentId)[0]!)).toBeLessThan(fake.requests.indexOf(created[1]!));
    await k.close();
  });

  it('that succeeded meanwhile is not retried: the late success credits it once and counts against the month', async () => {
    const k = await kit();
    const first = await crossedWith(fake, k, 'late-success', 'authenticate');
    // The page completes it meanwhile: Stripe refuses the cancel, the PaymentIntent has succeeded.
    fake.behaviour = 'succeed';
    fake.cancelBehaviour = 'already-succeeded';
    await deliver(k.url, 'payment_intent.payment_failed', paymentIntent(first, 'requires_payment_method', { last_payment_error: { code: 'payment_intent_authentication_failure' } }));
    await k.credits.flush();
    expect(cancelsOf(first.attempt!.paymentIntentId).length).toBeGreaterThanOrEqual(1);
    await k.credits.reconcile({ olderThanMs: 0 });
    await k.credits.flush();
    expect(creationsFor('late-success')).toHaveLength(1);
    const result = await deliver(k.url, 'payment_intent.succeeded', paymentIntent(first, 'succeeded'));
    expect(result).toMatchObject({ autoRecharge: { creditsAdded: 200 } });
    expect(await record(k, 'late-success')).toMatchObject({ state: 'idle', month: { credits: 200 }, lastResult: { status: 'succeeded' } });
    expect((await consistentAudit(k.credits, 'late-success')).balance).toBe(250);
    await k.close();
  });

  it('paused, and turned on again: the paused attempt is canceled before another crossing may start one', async () => {
    const k = await kit({ maxDeclines: 1 });
    const first = await crossedWith(fake, k, 'paused', 'authenticate');
    await deliver(k.url, 'payment_intent.payment_failed', paymentIntent(first, 'requires_payment_method', { last_payment_error: { code: 'payment_intent_authentication_failure' } }));
    await k.credits.flush();
    expect((await record(k, 'paused')).state).toBe('paused');
    // Canceled as soon as the kit gave up on it (or by the next reconcile() when Stripe was down).
    await k.credits.reconcile({ olderThanMs: 0 });
    expect(cancelsOf(first.attempt!.paymentIntentId)).toHaveLength(1);
    fake.behaviour = 'succeed';
    const on = await put(k.url, 'paused', '{"enabled":true}');
    expect(on.status).toBe(200);
    await crossAgain(k, 'paused', 'paused');
    expect(creationsFor('paused')).toHaveLength(2);
    await k.close();
  });

  it('needing authentication nobody completes is canceled after actionTimeoutMs, which frees auto-recharge', async () => {
    const k = await kit({ actionTimeoutMs: 200 });
    const first = await crossedWith(fake, k, 'abandoned', 'authenticate');
    expect(first).toMatchObject({ state: 'requires_action', month: { credits: 200 } });
    // Before the timeout nothing frees it: the card holder may still be on the page.
    await k.credits.reconcile({ olderThanMs: 0 });
    expect(cancelsOf(first.attempt!.paymentIntentId)).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 250));
    await k.credits.reconcile({ olderThanMs: 0 });
    expect(cancelsOf(first.attempt!.paymentIntentId)).toHaveLength(1);
    expect(await record(k, 'abandoned')).toMatchObject({ state: 'idle', month: { credits: 0 }, lastResult: { status: 'declined', reason: 'authentication_not_completed' } });
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(0);
    expect(cancelsOf(first.attempt!.paymentIntentId)).toHaveLength(1); // once
    fake.behaviour = 'succeed';
    await crossAgain(k, 'abandoned', 'abandoned');
    expect(creationsFor('abandoned')).toHaveLength(2);
    await k.close();
  });
});

describe('trust', () => {
  it('credits nothing for a PaymentIntent of another customer whose metadata names this user\'s attempt, even before the create reply', async () => {
    const k = await kit();
    const r = await crossedWith(fake, k, 'victim', 'lose-reply');
    expect(r.attempt!.paymentIntentId).toBeNull(); // the kit does not know its PaymentIntent yet
    const forged = { ...paymentIntent({ ...r, attempt: { ...r.attempt!, paymentIntentId: 'pi_someone_elses' } }, 'succeeded'), customer: 'cus_someone_else' };
    const answer = await deliver(k.url, 'payment_intent.succeeded', forged);
    expect(answer).toMatchObject({ autoRecharge: { creditsAdded: 0 } });
    expect(answer.reason).toMatch(/customer/);
    expect((await k.credits.store.getPurchase(`recharge:victim:${r.attempt!.id}`))!.paymentIntentId).toBeFalsy();
    expect((await consistentAudit(k.credits, 'victim')).balance).toBe(50);
    fake.behaviour = 'succeed';
    await k.credits.reconcile({ olderThanMs: 0 });
    await k.close();
  });
});

describe('an unsent attempt', () => {
  it('older than Stripe keeps idempotency keys is never sent: it could be a second payment', async () => {
    const k = await kit();
    await optIn(k, 'stale');
    const r = await record(k, 'stale');
    const startedAt = new Date(Date.now() - 25 * 3600_000);
    const attempt = { id: '9.1', crossingSeq: 9, n: 1, credits: 200, amount: 2000, currency: 'usd', paymentMethodId: r.card!.paymentMethodId, paymentIntentId: null, startedAt };
    await k.credits.store.replaceRecharge({ ...r, state: 'pending', attempt, crossingSeq: 9, month: { key: startedAt.toISOString().slice(0, 7), credits: 200 }, dueAt: new Date(startedAt.getTime() + 30_000), version: r.version + 1 });
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(0);
    expect(creationsFor('stale')).toHaveLength(0);
    const after = await record(k, 'stale');
    expect(after).toMatchObject({ state: 'idle', month: { credits: 0 }, lastResult: { status: 'skipped', reason: 'attempt_too_old' } });
    expect(after.dueAt).toBeUndefined();
    await k.close();
  });
});

describe('off the request path', () => {
  it('a guarded route answers while Stripe is unreachable; the crossing\'s payment is sent later under its key', async () => {
    const k = await kit();
    await optIn(k, 'outage');
    const app = express();
    app.post('/work', k.credits.requireCredits(250), (_req, res) => void res.json({ ok: true }));
    const server = await listen(app);
    fake.behaviour = 'lose-reply'; // every PaymentIntent creation fails
    const started = Date.now();
    const res = await post(`${server.url}/work`, 'outage', {});
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
    await k.credits.flush();
    expect(await record(k, 'outage')).toMatchObject({ state: 'pending', attempt: { paymentIntentId: null } });
    expect(await k.credits.getBalance('outage')).toBe(50);
    fake.behaviour = 'succeed';
    expect((await k.credits.reconcile({ olderThanMs: 0 })).rechargesSent).toBe(1);
    expect(new Set(creationsFor('outage').map((q) => q.headers['idempotency-key'])).size).toBe(1);
    await server.close();
    await k.close();
  });
});

describe('settings changed while a payment is pending', () => {
  it('turning auto-recharge off and on, or saving another card, starts no second payment; the pending one credits once', async () => {
    const k = await kit();
    await optIn(k, 'toggler');
    // The card the attempt starts with (stripe-mock names every saved card alike: this one is given its own id).
    const r0 = await record(k, 'toggler');
    await k.credits.store.replaceRecharge({ ...r0, card: { ...r0.card!, paymentMethodId: 'pm_old_card' }, version: r0.version + 1 });
    fake.behaviour = 'lose-reply'; // the payment stays pending (no PaymentIntent id known yet)
    await k.credits.deductCredits('toggler', 250);
    await k.credits.flush();
    const settings = (body: unknown) =>
      fetch(`${k.url}/api/credits/auto-recharge`, { method: 'PUT', headers: { 'x-test-user': 'toggler', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await fetch(`${k.url}/api/credits/auto-recharge`, { method: 'DELETE', headers: { 'x-test-user': 'toggler' } })).status).toBe(200);
    expect((await settings({ enabled: true, credits: 300 })).status).toBe(200);
    // Another card saved meanwhile (a second setup session of the same user).
    const res = await post(`${k.url}/api/credits/auto-recharge/card`, 'toggler', {});
    const { id } = (await res.json()) as { id: string };
    const session = { id, object: 'checkout.session', mode: 'setup', status: 'complete', livemode: false, customer: r0.customerId, setup_intent: 'seti_123', metadata: { credit_kit_user_id: 'toggler', credit_kit_purpose: 'auto_recharge_card' } };
    expect(await deliver(k.url, 'checkout.session.completed', session)).toMatchObject({ autoRecharge: { cardSaved: true, state: 'pending' } });
    await crossAgain(k, 'toggler', 'toggler');
    fake.behaviour = 'succeed';
    await k.credits.reconcile({ olderThanMs: 0 });
    await k.credits.flush();
    const keys = new Set(creationsFor('toggler').map((q) => q.headers['idempotency-key']));
    expect(keys.size).toBe(1); // one attempt, however often its creation was tried
    const sent = await record(k, 'toggler');
    expect(sent.attempt).toMatchObject({ credits: 200, paymentMethodId: 'pm_old_card' }); // as it was started
    const first = await deliver(k.url, 'payment_intent.succeeded', paymentIntent(sent, 'succeeded'));
    const again = await deliver(k.url, 'payment_intent.succeeded', paymentIntent(sent, 'succeeded'));
    expect([first, again].map((x) => (x.autoRecharge as { creditsAdded: number }).creditsAdded)).toEqual([200, 0]);
    expect(await record(k, 'toggler')).toMatchObject({ state: 'idle', card: { paymentMethodId: r0.card!.paymentMethodId } });
    await consistentAudit(k.credits, 'toggler');
    await k.close();
  });
});
