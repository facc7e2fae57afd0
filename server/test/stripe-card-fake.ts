/**
 * A FAKE in front of stripe-mock, for auto-recharge tests only. stripe-mock is stateless: it checks every
 * request against Stripe's OpenAPI spec and answers fixed fixtures, so it can neither decline a card nor ask
 * for authentication. This loopback proxy records every request the kit sends (all of them still reach
 * stripe-mock, so all of them are still checked against the spec) and, for PaymentIntent creations only,
 * can replace stripe-mock's answer with the one Stripe gives for a declined card or a card that needs
 * authentication (HTTP 402, `card_error`, with the PaymentIntent in the error), or drop the answer after
 * stripe-mock has seen the request (a lost reply). For PaymentIntent cancels only, it can answer what Stripe
 * answers for a PaymentIntent that has succeeded meanwhile (HTTP 400, `payment_intent_unexpected_state`,
 * status `succeeded`). Everything else is stripe-mock's own answer.
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import type { RecordedStripeRequest } from './helpers';

export type CardBehaviour = 'succeed' | 'decline' | 'authenticate' | 'lose-reply';
/** What a PaymentIntent cancel meets: stripe-mock's answer (canceled), or Stripe's refusal for one that already succeeded. */
export type CancelBehaviour = 'cancel' | 'already-succeeded';

export interface StripeCardFake {
  stripe: Stripe;
  requests: RecordedStripeRequest[];
  /** What the next PaymentIntent creations meet (default `succeed`: stripe-mock's own answer). */
  behaviour: CardBehaviour;
  /** What the next PaymentIntent cancels meet (default `cancel`). */
  cancelBehaviour: CancelBehaviour;
  /** The PaymentIntent creations seen, with their idempotency keys. */
  paymentIntentCreations(): RecordedStripeRequest[];
  /** The PaymentIntent cancels seen (their paths name the PaymentIntent). */
  paymentIntentCancels(): RecordedStripeRequest[];
  close(): Promise<void>;
}

let counter = 0;

export async function stripeCardFake(): Promise<StripeCardFake> {
  const target = new URL(process.env.STRIPE_MOCK_URL ?? 'http://127.0.0.1:12111');
  const fake: StripeCardFake = {
    stripe: undefined as unknown as Stripe,
    requests: [],
    behaviour: 'succeed',
    cancelBehaviour: 'cancel',
    paymentIntentCreations: () => fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents'),
    paymentIntentCancels: () => fake.requests.filter((r) => r.method === 'POST' && /^\/v1\/payment_intents\/[^/]+\/cancel$/.test(r.path)),
    close: async () => undefined,
  };
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const form = new URLSearchParams(body.toString());
      fake.requests.push({ method: req.method!, path: req.url!, headers: req.headers, form });
      const isCreate = req.method === 'POST' && req.url === '/v1/payment_intents';
      const cancelled = req.method === 'POST' ? /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(req.url!) : null;
      const behaviour = isCreate ? fake.behaviour : cancelled && fake.cancelBehaviour === 'already-succeeded' ? 'already-succeeded' : 'succeed';
      const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
        if (behaviour === 'succeed') {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        up.resume();
        up.on('end', () => {
          if (behaviour === 'lose-reply') {
            res.destroy(); // stripe-mock saw the request; the kit never learns what it answered
            return;
          }
          if (behaviour === 'already-succeeded') {
            const paymentIntent = { id: cancelled![1], object: 'payment_intent', livemode: false, metadata: {}, status: 'succeeded' };
            const error = { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: 'This PaymentIntent could not be canceled because it has a status of succeeded.', payment_intent: paymentIntent };
            res.writeHead(400, { 'content-type': 'application/json', 'request-id': `req_fake_${++counter}` });
            res.end(JSON.stringify({ error }));
            return;
          }
          const id = `pi_fake_${++counter}_${Date.now()}`;
          const paymentIntent = {
            id,
            object: 'payment_intent',
            amount: Number(form.get('amount')),
            currency: form.get('currency'),
            customer: form.get('customer'),
            livemode: false,
            metadata: {},
            client_secret: `${id}_secret_fake`,
            status: behaviour === 'authenticate' ? 'requires_action' : 'requires_payment_method',
          };
          const error =
            behaviour === 'authenticate'
              ? { type: 'card_error', code: 'authentication_required', message: 'This payment requires authentication.', payment_intent: paymentIntent }
              : { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.', payment_intent: paymentIntent };
          res.writeHead(402, { 'content-type': 'application/json', 'request-id': `req_fake_${counter}` });
          res.end(JSON.stringify({ error }));
        });
      });
      upstream.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const { port } = proxy.address() as AddressInfo;
  fake.stripe = new Stripe('sk_test_123', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 0 });
  fake.close = () =>
    new Promise((r) => {
      proxy.closeAllConnections();
      proxy.close(() => r());
    });
  return fake;
}
