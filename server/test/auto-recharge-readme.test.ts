/**
 * README "Auto-recharge": the example as written (its options, a card saved through the route, the settings,
 * a spend through the threshold, the verified success), against stripe-mock and signed events.
 */
import express from 'express';
import { createCredits, type AutoRechargeEvent } from 'credit-kit/server';
import { connect, headerUser, listen, post, recordingStripe, signedDelivery, WEBHOOK_SECRET } from './helpers';

it('runs the README example', async () => {
  const connection = await connect();
  const rec = await recordingStripe();
  const told: string[] = [];
  const notify = (userId: string, text: string) => void told.push(`tell ${userId}: ${text}`);
  const seen: AutoRechargeEvent[] = [];
  const credits = createCredits({
    connection,
    getUserId: headerUser,
    stripe: rec.stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    pricing: { creditPriceCents: 10, bundles: [{ id: 'top-up', credits: 500, price: 5200 }] }, // $2 of fees passed on
    autoRecharge: {
      monthlyCap: 5000,
      cooldownMs: 60_000,
      maxDeclines: 3,
      returnPath: '/settings/billing',
      onAutoRecharge(event) {
        seen.push(event);
        if (event.type === 'requires_action') notify(event.userId, 'Confirm your top-up on the billing page');
        if (event.type === 'paused') notify(event.userId, 'Your card was declined; auto-recharge is paused');
      },
    },
  });
  const app = express();
  app.use('/api', credits.router());
  const server = await listen(app);
  const deliver = async (type: string, object: unknown) => {
    const d = signedDelivery(rec.stripe, { type, object });
    const res = await fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: d.headers, body: d.body });
    expect(res.status).toBe(200);
  };
  try {
    const saved = await post(`${server.url}/api/credits/auto-recharge/card`, 'user-1', {});
    expect(saved.status).toBe(201);
    const { id } = (await saved.json()) as { id: string };
    expect(rec.requests.find((r) => r.path === '/v1/checkout/sessions')!.form.get('success_url')).toBe('https://app.example.com/settings/billing');
    const customer = (await credits.store.getRecharge('user-1'))!.customerId;
    const metadata = { credit_kit_user_id: 'user-1', credit_kit_purpose: 'auto_recharge_card' };
    await deliver('checkout.session.completed', { id, object: 'checkout.session', mode: 'setup', status: 'complete', livemode: false, customer, setup_intent: 'seti_123', metadata });

    const on = await fetch(`${server.url}/api/credits/auto-recharge`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-test-user': 'user-1' },
      body: JSON.stringify({ enabled: true, threshold: 100, bundle: 'top-up' }),
    });
    expect(await on.json()).toMatchObject({ enabled: true, threshold: 100, topUp: { bundle: 'top-up', credits: 500, amount: 5200 }, card: { last4: '4242' } });

    await credits.grantCredits('user-1', 150, { idempotencyKey: 'welcome-user-1' });
    await credits.deductCredits('user-1', 60); // 150 -> 90: below 100
    await credits.flush();
    const pi = rec.requests.find((r) => r.path === '/v1/payment_intents')!.form;
    expect([pi.get('amount'), pi.get('off_session'), pi.get('confirm')]).toEqual(['5200', 'true', 'true']);

    const r = (await credits.store.getRecharge('user-1'))!;
    const a = r.attempt!;
    await deliver('payment_intent.succeeded', {
      id: a.paymentIntentId, object: 'payment_intent', amount: 5200, currency: 'usd', customer: r.customerId, livemode: false, status: 'succeeded',
      metadata: { credit_kit_user_id: 'user-1', credit_kit_credits: '500', credit_kit_recharge_attempt: a.id },
    });
    expect(await credits.getBalance('user-1')).toBe(590);
    const page = await credits.listTransactions('user-1', { limit: 1 });
    expect(page.transactions[0]).toMatchObject({ kind: 'purchase', amount: 500, reason: 'Auto-recharge: 500 credits' });
    await credits.flush();
    expect(seen.map((e) => e.type)).toEqual(['started', 'succeeded']);
    expect(told).toEqual([]);
  } finally {
    await credits.flush();
    await server.close();
    await rec.close();
    await connection.close();
  }
});
