/**
 * The same kind of app once stripe is installed: stripe-node's client, events and sessions fit the kit's
 * structural Stripe types (tools/package.test.ts installs the newest stripe the peer range allows).
 */
import mongoose from 'mongoose';
import Stripe from 'stripe';
import { createCredits, type FulfillmentResult } from 'credit-kit/server';

const credits = createCredits({
  connection: mongoose.connection,
  getUserId: (req) => req.get('x-user-id') ?? null,
  stripe: new Stripe(process.env.STRIPE_SECRET_KEY ?? 'sk_test_placeholder'),
  webhookSecret: process.env.STRIPE_WEBHOOK_SECRET ?? 'whsec_placeholder',
  publicUrl: 'https://app.example.com',
  onWebhook: (report) => {
    const event = report.event as Stripe.Event | undefined; // narrow to stripe-node's own type
    if (event?.type === 'checkout.session.completed') console.log(event.data.object.payment_status);
  },
});

export function fulfil(session: Stripe.Checkout.Session): Promise<FulfillmentResult> {
  return credits.fulfillCheckoutSession(session);
}
