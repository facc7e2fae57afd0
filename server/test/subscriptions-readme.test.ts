/**
 * README "Subscriptions": the example as written (options, route, getSubscription, getBalanceDetails),
 * against stripe-mock and signed events.
 */
import express from 'express';
import { createCredits } from 'credit-kit/server';
import { connect, headerUser, listen, post, recordingStripe, WEBHOOK_SECRET } from './helpers';
import { DAY, delivery, invoice, newSub, nowSeconds } from './subscription-events';

it('runs the README example', async () => {
  const connection = await connect();
  const rec = await recordingStripe();
  const getUserId = headerUser;
  const credits = createCredits({
    connection,
    getUserId,
    stripe: rec.stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://myapp.example',
    plans: {
      basic: { price: 'price_1Basic', credits: 1000, label: 'Basic', rollover: { max: 300 } },
      pro: { price: 'price_1Pro', credits: 5000, label: 'Pro', priority: 40 },
    },
  });
  const app = express();
  app.use('/api', credits.router());
  const server = await listen(app);
  try {
    const res = await post(`${server.url}/api/credits/subscribe`, 'user-1', { plan: 'basic' });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ id: expect.any(String), url: expect.stringMatching(/^https:/), plan: 'basic' });
    const form = rec.requests.find((r) => r.path === '/v1/checkout/sessions')!.form;
    const s = newSub(form.get('metadata[credit_kit_subscription]')!, 'user-1', 'basic', 'cs_x');

    // Stripe: the first invoice is paid.
    const start = nowSeconds() - 60;
    const end = start + 31 * DAY;
    const d = delivery(rec.stripe, 'invoice.paid', invoice(s, [{ price: 'price_1Basic', amount: 1900, start, end }], { billingReason: 'subscription_create' }));
    expect((await fetch(`${server.url}/api/stripe/webhook`, { method: 'POST', headers: d.headers, body: d.body })).status).toBe(200);

    const period = { start: new Date(start * 1000).toISOString(), end: new Date(end * 1000).toISOString() };
    expect(await credits.getSubscription('user-1')).toEqual({ plan: 'basic', label: 'Basic', credits: 1000, status: 'active', cancelAtPeriodEnd: false, currentPeriod: period });
    expect(await credits.getBalanceDetails('user-1')).toEqual(
      expect.objectContaining({
        balance: 1000,
        bySource: { subscription: 1000 },
        nextExpiry: { amount: 1000, expiresAt: period.end },
        grants: [expect.objectContaining({ id: `grant:subscription:${s.subscriptionId}:${start}` })],
      }),
    );
  } finally {
    await credits.flush();
    await server.close();
    await rec.close();
    await connection.close();
  }
});
