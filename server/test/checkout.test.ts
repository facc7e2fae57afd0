/**
 * POST /api/stripe/checkout/credits against stripe-mock (through a recording proxy, so the test sees the
 * exact parameters Stripe receives and stripe-mock checks them against Stripe's OpenAPI spec).
 */
import { harness, post, recordingStripe, WEBHOOK_SECRET, type Harness } from './helpers';

let h: Harness;
let rec: Awaited<ReturnType<typeof recordingStripe>>;

beforeAll(async () => {
  rec = await recordingStripe();
  h = await harness(() => undefined, {
    stripe: rec.stripe,
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
    pricing: { bundles: [{ id: 'starter', credits: 500, price: 4000, name: 'Starter pack' }] },
  });
});
afterAll(async () => {
  await h.close();
  await rec.close();
});
beforeEach(() => {
  rec.requests.length = 0;
});

const checkoutUrl = () => `${h.url}/api/stripe/checkout/credits`;

it('creates a payment-mode session priced on the server, tagged with the user and credits', async () => {
  const res = await post(checkoutUrl(), 'buyer', { quantity: 100 });
  expect(res.status).toBe(201);
  const body = await res.json();
  expect(body).toEqual({ id: expect.stringMatching(/^cs_/), url: expect.stringMatching(/^https:\/\//), credits: 100, amount: 1000 });

  expect(rec.requests).toHaveLength(1);
  const [sent] = rec.requests;
  expect(sent!.path).toBe('/v1/checkout/sessions');
  const f = sent!.form;
  expect(f.get('mode')).toBe('payment');
  expect(f.get('line_items[0][price_data][unit_amount]')).toBe('10');
  expect(f.get('line_items[0][price_data][currency]')).toBe('usd');
  expect(f.get('line_items[0][quantity]')).toBe('100');
  expect(f.get('line_items[0][price_data][product_data][name]')).toBe('Credits Bundle');
  expect(f.get('line_items[0][price_data][product_data][description]')).toBe('Bundle of 100 credits');
  expect(f.get('client_reference_id')).toBe('buyer');
  expect(f.get('metadata[credit_kit_user_id]')).toBe('buyer');
  expect(f.get('metadata[credit_kit_credits]')).toBe('100');
  expect(f.get('payment_intent_data[metadata][credit_kit_credits]')).toBe('100');
  expect(f.get('success_url')).toBe('https://app.example.com/success?session_id={CHECKOUT_SESSION_ID}');
  expect(f.get('cancel_url')).toBe('https://app.example.com/cancel');
  expect(sent!.headers['idempotency-key']).toEqual(expect.stringMatching(/^credit-kit-checkout-/));
});

it('sells a named bundle at its own price', async () => {
  const res = await post(checkoutUrl(), 'buyer', { bundle: 'starter' });
  expect(res.status).toBe(201);
  const f = rec.requests[0]!.form;
  expect(f.get('line_items[0][price_data][unit_amount]')).toBe('4000');
  expect(f.get('line_items[0][quantity]')).toBe('1');
  expect(f.get('line_items[0][price_data][product_data][name]')).toBe('Starter pack');
  expect(f.get('metadata[credit_kit_credits]')).toBe('500');
});

it('uses one Stripe idempotency key for the same click retried, and another for another click', async () => {
  await post(checkoutUrl(), 'buyer', { quantity: 100 }, { 'idempotency-key': 'click-1' });
  await post(checkoutUrl(), 'buyer', { quantity: 100 }, { 'idempotency-key': 'click-1' });
  await post(checkoutUrl(), 'buyer', { quantity: 100 }, { 'idempotency-key': 'click-2' });
  const keys = rec.requests.map((r) => r.headers['idempotency-key']);
  expect(keys[0]).toBe(keys[1]);
  expect(keys[2]).not.toBe(keys[0]);
});

it('creates an embedded checkout page with a return URL', async () => {
  const res = await post(checkoutUrl(), 'buyer', { quantity: 100, ui: 'embedded' });
  expect(res.status).toBe(201);
  expect(Object.keys(await res.json()).sort()).toEqual(['amount', 'clientSecret', 'credits', 'id']);
  const f = rec.requests[0]!.form;
  expect(f.get('ui_mode')).toBe('embedded_page');
  expect(f.get('return_url')).toBe('https://app.example.com/success?session_id={CHECKOUT_SESSION_ID}');
  expect(f.get('success_url')).toBeNull();
});

const badBodies: Array<[string, unknown]> = [
  ['no fields', {}],
  ['quantity 0', { quantity: 0 }],
  ['negative quantity', { quantity: -5 }],
  ['fractional quantity', { quantity: 10.5 }],
  ['quantity as a string', { quantity: '100' }],
  ['quantity above the maximum', { quantity: 100_001 }],
  ['a huge quantity', { quantity: 1e300 }],
  ['quantity null', { quantity: null }],
  ['quantity as an operator object', { quantity: { $gt: 0 } }],
  ['quantity as an array', { quantity: [100] }],
  ['a charge below $0.50', { quantity: 4 }],
  ['a client price', { quantity: 100, price: 1 }],
  ['a client unit_amount', { quantity: 100, unit_amount: 1 }],
  ['a client line_items', { quantity: 100, line_items: [] }],
  ['an unknown bundle', { bundle: 'free' }],
  ['a bundle as an object', { bundle: { $ne: null } }],
  ['both bundle and quantity', { bundle: 'starter', quantity: 5 }],
  ['an unknown ui', { quantity: 100, ui: 'popup' }],
  ['an array body', [{ quantity: 100 }]],
  ['a JSON string body', '"quantity"'],
  ['a user id field', { quantity: 100, userId: 'someone-else' }],
  ['a success_url field', { quantity: 100, success_url: 'https://evil.example' }],
];

it.each(badBodies)('refuses %s with a 400 that names the problem, and calls no Stripe API', async (_what, body) => {
  const res = await post(checkoutUrl(), 'buyer', body);
  expect(res.status).toBe(400);
  const json = await res.json();
  expect(json.error.code).toBe('invalid_request');
  expect(json.error.message.length).toBeGreaterThan(10);
  expect(rec.requests).toHaveLength(0);
});

it('refuses bodies that are not JSON, too large, or unauthenticated, without calling Stripe', async () => {
  const form = await fetch(checkoutUrl(), {
    method: 'POST',
    headers: { 'x-test-user': 'buyer', 'content-type': 'application/x-www-form-urlencoded' },
    body: 'quantity=100',
  });
  expect(form.status).toBe(415);
  const plain = await fetch(checkoutUrl(), {
    method: 'POST',
    headers: { 'x-test-user': 'buyer', 'content-type': 'text/plain' },
    body: '{"quantity":100}',
  });
  expect(plain.status).toBe(415);
  expect((await post(checkoutUrl(), 'buyer', '{"quantity": 1')).status).toBe(400);
  const big = await post(checkoutUrl(), 'buyer', JSON.stringify({ quantity: 100, pad: 'x'.repeat(20_000) }));
  expect(big.status).toBe(413);
  expect((await big.json()).error.code).toBe('payload_too_large');
  const anon = await post(checkoutUrl(), null, { quantity: 100 });
  expect(anon.status).toBe(401);
  expect(rec.requests).toHaveLength(0);
});

it('serves the price, limits and bundles for clients', async () => {
  const res = await fetch(`${h.url}/api/credits/pricing`);
  expect(await res.json()).toEqual({
    creditName: 'credits',
    currency: 'usd',
    creditPriceCents: 10,
    minQuantity: 5,
    maxQuantity: 100_000,
    bundles: [{ id: 'starter', credits: 500, price: 4000, name: 'Starter pack' }],
    costs: [],
  });
});

describe('pricing options', () => {
  const { resolvePricing, centsFromUsd } = jest.requireActual<typeof import('../options')>('../options');
  it('reads CREDIT_PRICE_USD and refuses prices that are not whole cents or break Stripe limits', () => {
    expect(resolvePricing({}, {}).creditPriceCents).toBe(10);
    expect(resolvePricing({}, { CREDIT_PRICE_USD: '0.25' }).creditPriceCents).toBe(25);
    expect(centsFromUsd('1')).toBe(100);
    expect(() => centsFromUsd('0.125')).toThrow(/whole number of cents/);
    expect(() => centsFromUsd('abc')).toThrow(/CREDIT_PRICE_USD/);
    expect(() => centsFromUsd('0')).toThrow(/above 0/);
    expect(() => resolvePricing({ maxQuantity: 10_000_000 }, {})).toThrow(/largest charge/);
    expect(() => resolvePricing({ bundles: [{ id: 'tiny', credits: 1, price: 10 }] }, {})).toThrow(/minimum charge/);
    expect(() => resolvePricing({ currency: 'USD' }, {})).toThrow(/lower case/);
  });
});
