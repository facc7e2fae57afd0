/**
 * The auto-recharge test kit shared by auto-recharge.test.ts and auto-recharge-faults.test.ts: an app with the
 * kit's router on a card fake (stripe-card-fake.ts), signed webhook deliveries, and a user opted in through the
 * kit's own routes (a saved card, then the settings), as a page would do it.
 */
import express from 'express';
import type { Connection } from 'mongoose';
import type Stripe from 'stripe';
import { createCredits, type AutoRechargeEvent, type AutoRechargeOptions, type Credits, type PricingOptions } from 'credit-kit/server';
import { headerUser, listen, post, postWebhook, signedDelivery, WEBHOOK_SECRET } from './helpers';
import type { CardBehaviour, StripeCardFake } from './stripe-card-fake';
import type { RechargeRecord } from '../domain/recharge';

export interface Kit {
  credits: Credits;
  url: string;
  /** The client the kit was made with (it signs this kit's webhook deliveries). */
  stripe: Stripe;
  events: AutoRechargeEvent[];
  /** What background work and reconcile() reported (a lost Stripe reply, say). */
  errors: unknown[];
  close(): Promise<void>;
}

/** A kit with auto-recharge on (monthly cap 5000, no cooldown, `auto` over that), served on a loopback port. */
export async function rechargeKit(fake: StripeCardFake, connection: Connection, pricing: PricingOptions, auto: Partial<AutoRechargeOptions>): Promise<Kit> {
  const events: AutoRechargeEvent[] = [];
  const errors: unknown[] = [];
  const credits = createCredits({
    hooks: { onBackgroundError: (err) => void errors.push(err) },
    connection,
    getUserId: headerUser,
    timeoutMs: 20_000,
    stripe: fake.stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    pricing,
    autoRecharge: { monthlyCap: 5000, cooldownMs: 0, onAutoRecharge: (e) => void events.push(e), ...auto },
  });
  await credits.init();
  const app = express();
  app.use('/api', credits.router());
  const server = await listen(app);
  return {
    credits,
    url: server.url,
    stripe: fake.stripe,
    events,
    errors,
    async close() {
      await credits.flush();
      await server.close();
    },
  };
}

/** Delivers a signed event of `type` about `object` to the webhook route under `url`; the status and the JSON answer. */
export async function deliverEvent(stripe: Stripe, url: string, type: string, object: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  return postWebhook(url, signedDelivery(stripe, { type, object }));
}

/** PUT /credits/auto-recharge as `user` (a string body is sent as it is). */
export function put(url: string, user: string, body: unknown) {
  return fetch(`${url}/api/credits/auto-recharge`, {
    method: 'PUT',
    headers: { 'x-test-user': user, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export const record = async (k: Kit, user: string) => (await k.credits.store.getRecharge(user))!;

/** A completed setup-mode Checkout Session that saves a card for `user`, as Stripe sends it. */
export function setupSession(id: string, user: string, customer: string) {
  return {
    id,
    object: 'checkout.session',
    mode: 'setup',
    status: 'complete',
    livemode: false,
    customer,
    setup_intent: 'seti_123',
    metadata: { credit_kit_user_id: user, credit_kit_purpose: 'auto_recharge_card' },
  };
}

/** Saves a card through the kit's route and the signed completion of the setup-mode session. */
export async function saveCard(k: Kit, user: string): Promise<void> {
  const res = await post(`${k.url}/api/credits/auto-recharge/card`, user, {});
  expect(res.status).toBe(201);
  const { id } = (await res.json()) as { id: string };
  const r = await record(k, user);
  const done = await deliverEvent(k.stripe, k.url, 'checkout.session.completed', setupSession(id, user, r.customerId!));
  expect(done).toMatchObject({ status: 200, body: { autoRecharge: { cardSaved: true } } });
}

/** Saves a card, turns auto-recharge on with `settings`, and grants `start` credits (none when 0). */
export async function optIn(k: Kit, user: string, settings: Record<string, unknown> = { enabled: true, threshold: 100, credits: 200 }, start = 300): Promise<void> {
  await saveCard(k, user);
  const res = await put(k.url, user, settings);
  expect(res.status).toBe(200);
  if (start > 0) await k.credits.grantCredits(user, start, { idempotencyKey: `start-${user}` });
  await k.credits.flush();
}

/**
 * Opts `user` in (300 credits, a threshold of 100), sets the card fake to `behaviour` (left so) and spends 250:
 * the crossing starts an attempt, which the fake answers so; the user's record once the kit is idle.
 */
export async function crossedWith(fake: StripeCardFake, k: Kit, user: string, behaviour: CardBehaviour): Promise<RechargeRecord> {
  await optIn(k, user);
  fake.behaviour = behaviour;
  await k.credits.deductCredits(user, 250);
  await k.credits.flush();
  return record(k, user);
}

/** A PaymentIntent event about the user's current attempt, as Stripe sends it. */
export function paymentIntent(r: RechargeRecord, status: string, extra: Record<string, unknown> = {}) {
  const a = r.attempt!;
  return {
    id: a.paymentIntentId,
    object: 'payment_intent',
    amount: a.amount,
    currency: a.currency,
    customer: r.customerId,
    livemode: false,
    status,
    metadata: { credit_kit_user_id: r.id, credit_kit_credits: String(a.credits), credit_kit_recharge_attempt: a.id },
    ...extra,
  };
}
