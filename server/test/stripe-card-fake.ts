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
import type { ServerResponse } from 'node:http';
import type Stripe from 'stripe';
import { recordingStripe, type RecordedStripeRequest } from './helpers';

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

const isCreation = (r: RecordedStripeRequest) => r.method === 'POST' && r.path === '/v1/payment_intents';
const cancelOf = (r: RecordedStripeRequest) => (r.method === 'POST' ? /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(r.path) : null);

/** Stripe's answer to a cancel of a PaymentIntent that has succeeded meanwhile. */
function alreadySucceeded(id: string) {
  return (res: ServerResponse) => {
    const paymentIntent = { id, object: 'payment_intent', livemode: false, metadata: {}, status: 'succeeded' };
    const error = { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: 'This PaymentIntent could not be canceled because it has a status of succeeded.', payment_intent: paymentIntent };
    res.writeHead(400, { 'content-type': 'application/json', 'request-id': `req_fake_${++counter}` });
    res.end(JSON.stringify({ error }));
  };
}

/** Stripe's answer to a creation whose card is declined or needs authentication, or none at all (a lost reply). */
function cardOutcome(behaviour: Exclude<CardBehaviour, 'succeed'>, form: URLSearchParams) {
  return (res: ServerResponse) => {
    if (behaviour === 'lose-reply') {
      res.destroy(); // stripe-mock saw the request; the kit never learns what it answered
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
  };
}

export async function stripeCardFake(): Promise<StripeCardFake> {
  const settings: { behaviour: CardBehaviour; cancelBehaviour: CancelBehaviour } = { behaviour: 'succeed', cancelBehaviour: 'cancel' };
  const recording = await recordingStripe({
    replaceAnswer: (r) => {
      if (isCreation(r)) return settings.behaviour === 'succeed' ? null : cardOutcome(settings.behaviour, r.form);
      const cancel = cancelOf(r);
      return cancel && settings.cancelBehaviour === 'already-succeeded' ? alreadySucceeded(cancel[1]!) : null;
    },
  });
  return Object.assign(settings, {
    stripe: recording.stripe,
    requests: recording.requests,
    paymentIntentCreations: () => recording.requests.filter(isCreation),
    paymentIntentCancels: () => recording.requests.filter((r) => cancelOf(r) !== null),
    close: recording.close,
  });
}
