/**
 * createCredits checks every option once, at start-up, and a bad one is a CreditsConfigError that names it
 * and says what it should be; nothing is left to fail on the first request.
 */
import type { Connection } from 'mongoose';
import { createCredits, CreditsConfigError, type CreateCreditsOptions } from 'credit-kit/server';
import { MongoCreditStore } from '../store/mongo-store';
import { connect, headerUser, stripeMockClient, WEBHOOK_SECRET } from './helpers';

let connection: Connection;
const savedPublicUrl = process.env.NEXT_PUBLIC_URL;
const savedPrice = process.env.CREDIT_PRICE_USD;
beforeAll(async () => {
  connection = await connect();
});
afterAll(() => connection.close());
beforeEach(() => {
  delete process.env.NEXT_PUBLIC_URL;
  delete process.env.CREDIT_PRICE_USD;
});
afterEach(() => {
  restore('NEXT_PUBLIC_URL', savedPublicUrl);
  restore('CREDIT_PRICE_USD', savedPrice);
});

function restore(name: string, value: string | undefined) {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

const stripe = stripeMockClient();
const withStripe = { stripe, webhookSecret: WEBHOOK_SECRET, publicUrl: 'https://app.example.com' };

/** The options under test on top of a valid base: a connection and getUserId. */
const start = (extra: Record<string, unknown>) => () => createCredits({ connection, getUserId: headerUser, ...extra } as CreateCreditsOptions);

describe('a bad option is a start-up error that names it', () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['Stripe without publicUrl or NEXT_PUBLIC_URL', { stripe, webhookSecret: WEBHOOK_SECRET }, /`publicUrl` \(or NEXT_PUBLIC_URL\) is required with `stripe`/],
    ['Stripe without webhookSecret', { stripe, publicUrl: 'https://app.example.com' }, /`webhookSecret` is required with `stripe`/],
    ['a webhookSecret that is an API key', { ...withStripe, webhookSecret: 'sk_test_123' }, /`webhookSecret` looks like a Stripe API key/],
    ['a webhookSecret that is not a string', { ...withStripe, webhookSecret: 42 }, /`webhookSecret` is required/],
    ['a webhookSecret without stripe', { webhookSecret: WEBHOOK_SECRET }, /`webhookSecret` is set but `stripe` is not/],
    ['a stripe that is not a Stripe client', { ...withStripe, stripe: { checkout: {} } }, /`stripe` must be a Stripe client/],
    ['a relative publicUrl', { publicUrl: '/app' }, /`publicUrl` must be an absolute http\(s\) URL/],
    ['a publicUrl with a query', { publicUrl: 'https://app.example.com/?x=1' }, /`publicUrl` must be an origin \(optionally with a path\), without a query/],
    ['a publicUrl that is not a string', { publicUrl: 42 }, /`publicUrl` must be an absolute/],
    ['an ftp publicUrl', { publicUrl: 'ftp://app.example.com' }, /`publicUrl` must be an absolute http\(s\) URL/],
    ['a negative timeoutMs', { timeoutMs: -1 }, /`timeoutMs` must be a positive integer, got -1/],
    ['a fractional timeoutMs', { timeoutMs: 2.5 }, /`timeoutMs` must be a positive integer, got 2.5/],
    ['a timeoutMs past what a timer holds', { timeoutMs: 2 ** 31 }, /`timeoutMs` must be at most 2147483647 ms/],
    ['a NaN claimLeaseMs', { claimLeaseMs: NaN }, /`claimLeaseMs` must be a positive integer, got NaN/],
    ['a string claimLeaseMs', { claimLeaseMs: '60000' }, /`claimLeaseMs` must be a positive integer, got "60000"/],
    ['a fractional idempotencyKeyTtlMs', { idempotencyKeyTtlMs: 1.5 }, /`idempotencyKeyTtlMs` must be a positive integer, got 1.5/],
    ['an idempotencyKeyTtlMs past ten years', { idempotencyKeyTtlMs: 1e15 }, /`idempotencyKeyTtlMs` must be at most 315360000000 ms \(ten years\)/],
    ['a zero settleWithinMs', { settleWithinMs: 0 }, /`settleWithinMs` must be a positive integer, got 0/],
    ['a settleWithinMs in seconds as text', { settleWithinMs: '600' }, /`settleWithinMs` must be a positive integer, got "600"/],
    ['a settleWithinMs past ten years', { settleWithinMs: 1e15 }, /`settleWithinMs` must be at most 315360000000 ms \(ten years\)/],
    ['a zero webhookToleranceSeconds', { webhookToleranceSeconds: 0 }, /`webhookToleranceSeconds` must be a positive integer/],
    ['a fractional credit price', { pricing: { creditPriceCents: 0.5 } }, /`pricing.creditPriceCents` must be a positive integer, got 0.5/],
    ['a negative credit price', { pricing: { creditPriceCents: -10 } }, /`pricing.creditPriceCents` must be a positive integer/],
    ['a misspelt pricing key', { pricing: { creditPrice: 10 } }, /unknown key `pricing.creditPrice`\. Did you mean `pricing.creditPriceCents`\?/],
    ['a currency in capitals', { pricing: { currency: 'USD' } }, /`pricing.currency` must be a three-letter ISO code in lower case/],
    ['a currency that is not a string', { pricing: { currency: 840 } }, /`pricing.currency`/],
    ['minQuantity above maxQuantity', { pricing: { minQuantity: 10, maxQuantity: 5 } }, /`pricing.minQuantity` \(10\) is above `pricing.maxQuantity` \(5\)/],
    ['a maxQuantity above Stripe’s largest charge', { pricing: { maxQuantity: 100_000_000 } }, /above Stripe's largest charge/],
    ['bundles that are not an array', { pricing: { bundles: { starter: 1 } } }, /`pricing.bundles` must be an array/],
    ['a bundle with a fractional price', { pricing: { bundles: [{ id: 'starter', credits: 100, price: 99.5 }] } }, /`bundle 'starter' price` must be a positive integer, got 99.5/],
    ['a bundle with negative credits', { pricing: { bundles: [{ id: 'starter', credits: -1, price: 900 }] } }, /`bundle 'starter' credits` must be a positive integer/],
    ['a bundle below the minimum charge', { pricing: { bundles: [{ id: 'tiny', credits: 1, price: 10 }] } }, /bundle 'tiny' costs 10 cents, below the minimum charge of 50 cents/],
    ['a bundle with a misspelt key', { pricing: { bundles: [{ id: 'starter', credits: 100, prize: 900 }] } }, /unknown key `pricing.bundles\[0\].prize`\. Did you mean `pricing.bundles\[0\].price`\?/],
    ['a bundle used twice', { pricing: { bundles: [{ id: 'a', credits: 1, price: 100 }, { id: 'a', credits: 2, price: 200 }] } }, /bundle id 'a' is used twice/],
    ['a bundle with an empty name', { pricing: { bundles: [{ id: 'a', credits: 1, price: 100, name: ' ' }] } }, /bundle 'a' name must be a non-empty string/],
    ['a bundle id with spaces', { pricing: { bundles: [{ id: 'a b', credits: 1, price: 100 }] } }, /a bundle id must be 1-64 letters/],
    ['pricing that is not an object', { pricing: 10 }, /`pricing` must be an object/],
    ['a successPath without a leading slash', { successPath: 'success' }, /`successPath` must be a path on publicUrl starting with one '\/'/],
    ['a protocol-relative cancelPath', { cancelPath: '//evil.example/cancel' }, /`cancelPath` must be a path on publicUrl/],
    ['a rateLimit with a misspelt key', { rateLimit: { window: 1000 } }, /unknown key `rateLimit.window`\. Did you mean `rateLimit.windowMs`\?/],
    ['a rateLimit with a fractional limit', { rateLimit: { guarded: 1.5 } }, /`rateLimit.guarded` must be a positive integer/],
    ['a rateLimit that is not an object', { rateLimit: true }, /`rateLimit` must be an object/],
    ['a bodyLimit that is not a size', { bodyLimit: 'sixteen kilobytes' }, /`bodyLimit` must be a size such as '16kb'/],
    ['a bodyLimit as a number', { bodyLimit: 16384 }, /`bodyLimit` must be a size/],
    ['a collectionPrefix with a $', { collectionPrefix: 'credit$' }, /`collectionPrefix` must be 1-64 letters/],
    ['a collectionPrefix into system collections', { collectionPrefix: 'system.' }, /`collectionPrefix`/],
    ['an empty creditName', { creditName: '' }, /`creditName` must be a non-empty string/],
    ['an unknown refundOn', { refundOn: 'always' }, /`refundOn` must be 'server-error', 'error', 'never' or a function/],
    ['an unknown overage', { overage: 'free' }, /`overage` must be 'cap' or 'debt'/],
    ['an onWebhook that is not a function', { onWebhook: 'log' }, /`onWebhook` must be a function/],
    ['a hooks key nobody reads', { hooks: { onError: () => undefined } }, /unknown key `hooks.onError`/],
    ['an onBackgroundError that is not a function', { hooks: { onBackgroundError: true } }, /`hooks.onBackgroundError` must be a function/],
    ['a logger without error()', { logger: { warn: () => undefined } }, /`logger` must be an object with warn\(line, record\) and error\(line, record\) methods, or a function/],
    ['a misspelt option', { timeoutMS: 5 }, /unknown option `timeoutMS`\. Did you mean `timeoutMs`\?/],
    ['a nearly right option', { claimLease: 5 }, /unknown option `claimLease`\. Did you mean `claimLeaseMs`\?/],
    ['costs that are not an object', { costs: [{ credits: 5 }] }, /`costs` must be an object/],
    ['a cost given as a bare number', { costs: { summarize: 5 } }, /`costs.summarize` must be \{ credits, label\? \} \(fixed\) or \{ metered: true, reserve, label\?, perModel\? \} \(metered\), got 5\. Write \{ credits: 5 \} for a fixed cost/],
    ['a cost name with spaces', { costs: { 'sum up': { credits: 5 } } }, /a cost name must be 1-64 letters, digits/],
    ['a fixed cost of 0 credits', { costs: { summarize: { credits: 0 } } }, /`costs.summarize.credits` must be a positive integer, got 0/],
    ['a fixed cost of fractional credits', { costs: { summarize: { credits: 2.5 } } }, /`costs.summarize.credits` must be a positive integer, got 2.5/],
    ['a fixed cost without credits', { costs: { summarize: { label: 'Summarize' } } }, /`costs.summarize.credits` must be a positive integer, got undefined/],
    ['a reserve without metered', { costs: { analyze: { reserve: 50 } } }, /`costs.analyze` has `reserve` but not `metered: true`/],
    ['perModel on a fixed cost', { costs: { chat: { credits: 5, perModel: {} } } }, /`costs.chat` has `perModel` but not `metered: true`/],
    ['a metered cost with credits', { costs: { analyze: { metered: true, credits: 50 } } }, /`costs.analyze` is metered: it reserves `reserve` up front and settles the rest, so it has no `credits`/],
    ['a metered cost without reserve', { costs: { analyze: { metered: true } } }, /`costs.analyze.reserve` must be a positive integer, got undefined/],
    ['metered that is not a boolean', { costs: { analyze: { metered: 'yes', reserve: 5 } } }, /`costs.analyze.metered` must be true or false, got "yes"/],
    ['a misspelt cost key', { costs: { summarize: { credit: 5 } } }, /unknown key `costs.summarize.credit`\. Did you mean `costs.summarize.credits`\?/],
    ['a misspelt metered key', { costs: { chat: { metered: true, reserve: 5, perModle: {} } } }, /unknown key `costs.chat.perModle`\. Did you mean `costs.chat.perModel`\?/],
    ['an empty label', { costs: { summarize: { credits: 5, label: ' ' } } }, /`costs.summarize.label` must be a non-empty line of at most 100 characters/],
    ['a label with a line break', { costs: { summarize: { credits: 5, label: 'Sum\nmarize' } } }, /`costs.summarize.label` must be a non-empty line/],
    ['a perModel that is not an object', { costs: { chat: { metered: true, reserve: 5, perModel: 'gpt-4o' } } }, /`costs.chat.perModel` must be an object/],
    ['a model price that is not an object', { costs: { chat: { metered: true, reserve: 5, perModel: { 'gpt-4o': 4 } } } }, /`costs.chat.perModel\['gpt-4o'\]` must be a token price \{ input, output, per \}/],
    ['a negative token price', { costs: { chat: { metered: true, reserve: 5, perModel: { 'gpt-4o': { input: -1, output: 4, per: 1000 } } } } }, /`costs.chat.perModel\['gpt-4o'\]`.input must be a whole number of credits, 0 or more/],
    ['a fractional token price', { costs: { chat: { metered: true, reserve: 5, perModel: { 'gpt-4o': { input: 1, output: 0.25, per: 1000 } } } } }, /.output must be a whole number of credits/],
    ['a token price without per', { costs: { chat: { metered: true, reserve: 5, perModel: { 'gpt-4o': { input: 1, output: 4 } } } } }, /.per must be a positive integer, the number of tokens the prices are for \(such as 1000\), got undefined/],
    ['a free model', { costs: { chat: { metered: true, reserve: 5, perModel: { 'gpt-4o': { input: 0, output: 0, per: 1000 } } } } }, /makes every call free/],
    ['a misspelt token price key', { costs: { chat: { metered: true, reserve: 5, perModel: { m: { input: 1, outputs: 4, per: 1000 } } } } }, /unknown key `outputs`\. Did you mean `output`\?/],
    ['a misspelt costs option', { cost: {} }, /unknown option `cost`\. Did you mean `costs`\?/],
    ['a store that is not a CreditStore', { store: { applyEntry: () => null } }, /`store` must implement CreditStore .*it lacks init, fenceEntry/],
  ])('%s', (_what, extra, message) => {
    const attempt = start(extra);
    expect(attempt).toThrow(CreditsConfigError);
    expect(attempt).toThrow(message);
  });

  it('a CREDIT_PRICE_USD that is not whole cents', () => {
    process.env.CREDIT_PRICE_USD = '0.125';
    expect(start({})).toThrow(/CREDIT_PRICE_USD=0.125 is not a whole number of cents/);
  });

  it('a NEXT_PUBLIC_URL that is not a URL', () => {
    process.env.NEXT_PUBLIC_URL = 'myapp.example';
    expect(start({})).toThrow(/NEXT_PUBLIC_URL must be an absolute http\(s\) URL/);
  });
});

describe('good options start', () => {
  it('Stripe with NEXT_PUBLIC_URL instead of publicUrl', () => {
    process.env.NEXT_PUBLIC_URL = 'https://app.example.com/';
    expect(start({ stripe, webhookSecret: WEBHOOK_SECRET })).not.toThrow();
  });

  it('every option set to a good value', () => {
    expect(
      start({
        ...withStripe,
        publicUrl: 'https://app.example.com/shop/',
        creditName: 'tokens',
        collectionPrefix: 'ck.',
        timeoutMs: 2000,
        refundOn: ({ status }: { status: number }) => status >= 500,
        overage: 'debt',
        claimLeaseMs: 30_000,
        idempotencyKeyTtlMs: 3_600_000,
        settleWithinMs: 120_000,
        pricing: { creditPriceCents: 2, currency: 'eur', minQuantity: 25, maxQuantity: 1000, minimumChargeCents: 50, bundles: [{ id: 'starter', credits: 500, price: 900, name: 'Starter' }] },
        successPath: '/done?session_id={CHECKOUT_SESSION_ID}',
        cancelPath: '/shop',
        webhookToleranceSeconds: 120,
        rateLimit: { windowMs: 1000, guarded: 5, checkout: 2 },
        costs: {
          summarize: { credits: 20, label: 'Summarize' },
          analyze: { metered: true, reserve: 50, label: 'Analyze' },
          chat: { metered: true, reserve: 100, perModel: { 'gpt-4o': { input: 1, output: 4, per: 1000 }, 'free-input': { input: 0, output: 1, per: 1 } } },
        },
        bodyLimit: '64kb',
        onWebhook: () => undefined,
        hooks: { onBackgroundError: () => undefined },
        logger: { warn: () => undefined, error: () => undefined },
      }),
    ).not.toThrow();
  });

  it('a store of the app’s own, with every method of the port', () => {
    const store = new MongoCreditStore({ connection, collectionPrefix: 'own_' });
    expect(() => createCredits({ store, getUserId: headerUser })).not.toThrow();
  });
});
