/**
 * A Stripe client whose every request goes to stripe-mock on loopback (STRIPE_MOCK_URL, set by jest's global
 * setup). Kept apart from the test helpers so that processes the tests start (which cannot resolve
 * `credit-kit/server` to sources) can use it too.
 */
import Stripe from 'stripe';

export function stripeMockClient(mockUrl = process.env.STRIPE_MOCK_URL ?? 'http://127.0.0.1:12111'): Stripe {
  const url = new URL(mockUrl);
  return new Stripe('sk_test_123', {
    host: url.hostname,
    port: Number(url.port),
    protocol: 'http',
    maxNetworkRetries: 0,
  });
}
