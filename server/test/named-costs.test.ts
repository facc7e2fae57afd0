/**
 * Costs by name (createCredits' `costs`), token-metered settlement and the balance headers, over real HTTP
 * on both adapters: an Express app and a Fetch app (node:http and a Fetch bridge) on the embedded database.
 * Each case runs on both, through the same routes.
 */
import express, { type ErrorRequestHandler } from 'express';
import { BALANCE_HEADERS, CreditsConfigError, CreditsError, createCredits, creditsForUsage, InvalidUsageError, type CreditsBase, type NamedCosts, type TokenUsage } from 'credit-kit/server';
import { createFetchCredits } from 'credit-kit/fetch';
import { decorateStore } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';
import { connect, consistentAudit, get, harness, headerUser, listen, post } from './helpers';
import { fetchHarness, fetchHeaderUser, serveFetch } from './fetch-helpers';

const costs: NamedCosts = {
  summarize: { credits: 20, label: 'Summarize' },
  analyze: { metered: true, reserve: 50, label: 'Analyze' },
  chat: {
    metered: true,
    reserve: 100,
    label: 'Chat',
    perModel: { 'gpt-4o': { input: 1, output: 4, per: 1000 }, 'claude-sonnet': { input: 3, output: 15, per: 1_000_000 } },
  },
  plain: { credits: 3 },
};

/** What each chat request sends: the usage its "model" reported and the model's name (or a price). */
interface ChatBody {
  usage: unknown;
  model: unknown;
  nan?: string;
}
/** JSON has no NaN or Infinity: the test names the field to set to it. */
const usageOf = (body: ChatBody): TokenUsage => (body.nan ? { ...(body.usage as object), [body.nan]: NaN } : body.usage) as TokenUsage;

interface App {
  url: string;
  credits: Pick<CreditsBase, 'flush' | 'listTransactions' | 'getBalance' | 'grantCredits'>;
  close(): Promise<void>;
}

/** The app's own error handler: the kit's errors as their JSON, anything else a 500. */
const jsonErrors: ErrorRequestHandler = (err, _req, res, _next) => {
  if (err instanceof CreditsError) return void res.status(err.status).json(err.toJSON());
  res.status(500).json({ error: { code: 'internal', message: 'The route failed.' } });
};

const apps: Array<[string, () => Promise<App>]> = [
  [
    'Express',
    () =>
      harness(
        (app, credits) => {
          app.post('/ai/summarize', credits.requireCredits('summarize'), (_req, res) => void res.json({ summary: 'short' }));
          app.post('/ai/plain-number', credits.requireCredits(5), (_req, res) => void res.json({ ok: true }));
          app.post('/ai/analyze', credits.requireCredits('analyze', async (req, res) => {
            await req.credits!.settle(Number(req.get('x-used')));
            res.json({ charged: req.credits!.charged });
          }));
          app.post('/ai/chat', express.json(), credits.requireCredits('chat', async (req, res) => {
            const body = req.body as ChatBody;
            const settled = await req.credits!.settleUsage(usageOf(body), body.model as string);
            res.json(settled);
          }));
          app.post('/ai/unpriced', credits.requireCredits('analyze', async (req, res) => {
            res.json(await req.credits!.settleUsage({ input_tokens: 1, output_tokens: 1 }, 'gpt-4o'));
          }));
          app.post('/ai/fails', credits.requireCredits('summarize', async () => {
            throw new Error('model down');
          }));
          app.post('/ai/answers-500', credits.requireCredits('summarize'), (_req, res) => void res.status(500).json({ error: 'overloaded' }));
          app.post('/ai/proxied', credits.requireCredits('plain'), async (req, res) => {
            const upstream = await fetch(`http://${req.get('host')}/api/credits/pricing`);
            res.status(upstream.status).json(await upstream.json());
          });
          app.use(jsonErrors);
        },
        { costs, logger: () => undefined },
      ),
  ],
  [
    'Fetch',
    () =>
      fetchHarness(
        (credits) => ({
          'POST /ai/summarize': credits.withCredits('summarize', () => Response.json({ summary: 'short' })),
          'POST /ai/plain-number': credits.withCredits(5, () => Response.json({ ok: true })),
          'POST /ai/analyze': credits.withCredits('analyze', async (request, { credits: c }) => {
            await c.settle(Number(request.headers.get('x-used')));
            return Response.json({ charged: c.charged });
          }),
          'POST /ai/chat': credits.withCredits('chat', async (request, { credits: c }) => {
            const body = (await request.json()) as ChatBody;
            return Response.json(await c.settleUsage(usageOf(body), body.model as string));
          }),
          'POST /ai/unpriced': credits.withCredits('analyze', async (_request, { credits: c }) =>
            Response.json(await c.settleUsage({ input_tokens: 1, output_tokens: 1 }, 'gpt-4o')),
          ),
          'POST /ai/fails': credits.withCredits('summarize', async () => {
            throw new Error('model down');
          }),
          'POST /ai/answers-500': credits.withCredits('summarize', () => Response.json({ error: 'overloaded' }, { status: 500 })),
          // A Response from fetch() has immutable headers: the kit answers a copy with its headers added.
          'POST /ai/proxied': credits.withCredits('plain', (request) => fetch(new URL('/api/credits/pricing', request.url))),
        }),
        { costs, logger: () => undefined },
      ),
  ],
];

/** The two headers of an answer, as numbers (null when absent). */
const headersOf = (res: Response) => ({
  charged: res.headers.has('credits-charged') ? Number(res.headers.get('credits-charged')) : null,
  balance: res.headers.has('credits-balance') ? Number(res.headers.get('credits-balance')) : null,
});

/** A 200 with this body and these headers. */
async function answered(response: Promise<Response>, body: unknown, headers: { charged: number; balance: number }): Promise<void> {
  const res = await response;
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual(body);
  expect(headersOf(res)).toEqual(headers);
}

describe.each(apps)('%s', (_name, start) => {
  let h: App;
  let n = 0;
  /** A fresh user holding `amount`. */
  const userWith = async (amount: number) => {
    const user = `u${++n}-${_name}`;
    await h.credits.grantCredits(user, amount, { idempotencyKey: `grant-${user}` });
    return user;
  };
  const chat = (user: string, body: ChatBody) => post(`${h.url}/ai/chat`, user, body);
  const history = async (user: string) => {
    await consistentAudit(h.credits, user);
    return (await h.credits.listTransactions(user)).transactions.map((t) => [t.kind, t.amount, t.ref?.label ?? null]);
  };

  beforeAll(async () => {
    h = await start();
  }, 60_000);
  afterAll(() => h?.close());

  it('charges a fixed named cost, labels its ledger entry, and says what it charged and what is left', async () => {
    const user = await userWith(100);
    await answered(post(`${h.url}/ai/summarize`, user), { summary: 'short' }, { charged: 20, balance: 80 });
    await h.credits.flush();
    const [usage] = (await h.credits.listTransactions(user)).transactions;
    expect(usage).toMatchObject({ kind: 'usage', amount: -20, ref: { note: 'POST /ai/summarize', cost: 'summarize', label: 'Summarize' } });
    // The history route carries it to the client.
    const page = (await (await get(`${h.url}/api/credits/transactions`, user)).json()) as { transactions: Array<{ ref?: { label?: string } }> };
    expect(page.transactions[0]!.ref?.label).toBe('Summarize');
  });

  it('reserves a metered named cost and settles it before the answer: the headers and both entries follow', async () => {
    const user = await userWith(100);
    await answered(post(`${h.url}/ai/analyze`, user, undefined, { 'x-used': '12' }), { charged: 12 }, { charged: 12, balance: 88 });
    expect(await history(user)).toEqual([['settle', 38, 'Analyze'], ['usage', -50, 'Analyze'], ['grant', 100, null]]);
  });

  it('a numeric cost still works, with the headers and without a label', async () => {
    const user = await userWith(10);
    const res = await post(`${h.url}/ai/plain-number`, user);
    expect(headersOf(res)).toEqual({ charged: 5, balance: 5 });
    expect((await history(user))[0]).toEqual(['usage', -5, null]);
  });

  it.each<[string, TokenUsage]>([
    ['Vercel AI SDK 4', { promptTokens: 1500, completionTokens: 500 }],
    ['Vercel AI SDK 5', { inputTokens: 1500, outputTokens: 500 }],
    ['OpenAI Chat Completions', { prompt_tokens: 1500, completion_tokens: 500 }],
    ['Anthropic / OpenAI Responses', { input_tokens: 1500, output_tokens: 500 }],
  ])('settles %s usage by the model price, rounded up once: 1500 × 1/1000 + 500 × 4/1000 = 3.5 → 4', async (_shape, usage) => {
    const user = await userWith(200);
    await answered(chat(user, { usage: { ...usage, totalTokens: 2000 }, model: 'gpt-4o' }), { charged: 4, balance: 196 }, { charged: 4, balance: 196 });
    expect(await history(user)).toEqual([['settle', 96, 'Chat'], ['usage', -100, 'Chat'], ['grant', 200, null]]);
  });

  it('rounds a single token up to a whole credit, charges nothing for no tokens, and prices per million exactly', async () => {
    const user = await userWith(1000);
    const one = await chat(user, { usage: { input_tokens: 1, output_tokens: 0 }, model: 'gpt-4o' });
    expect(headersOf(one)).toEqual({ charged: 1, balance: 999 });
    const none = await chat(user, { usage: { input_tokens: 0, output_tokens: 0 }, model: 'gpt-4o' });
    expect(headersOf(none)).toEqual({ charged: 0, balance: 999 });
    // 200000 × 3 + 20000 × 15 = 900000 per million: 0.9 → 1.
    const million = await chat(user, { usage: { input_tokens: 200_000, output_tokens: 20_000 }, model: 'claude-sonnet' });
    expect(headersOf(million)).toEqual({ charged: 1, balance: 998 });
    // Above the reservation: the difference is charged too. 30000 × 1 + 20000 × 4 = 110000 per 1000 → 110.
    const above = await chat(user, { usage: { input_tokens: 30_000, output_tokens: 20_000 }, model: 'gpt-4o' });
    expect(headersOf(above)).toEqual({ charged: 110, balance: 888 });
    expect((await consistentAudit(h.credits, user)).balance).toBe(888);
  });

  it.each<[string, ChatBody, RegExp]>([
    ['negative tokens', { usage: { prompt_tokens: -5, completion_tokens: 10 }, model: 'gpt-4o' }, /usage\.prompt_tokens must be a whole number of tokens, 0 or more, got -5/],
    ['fractional tokens', { usage: { inputTokens: 10.5, outputTokens: 1 }, model: 'gpt-4o' }, /usage\.inputTokens must be a whole number of tokens, 0 or more, got 10\.5/],
    ['NaN tokens', { usage: { input_tokens: 1, output_tokens: 1 }, nan: 'output_tokens', model: 'gpt-4o' }, /usage\.output_tokens must be a whole number.*got NaN/],
    ['tokens as strings', { usage: { promptTokens: '100', completionTokens: 1 }, model: 'gpt-4o' }, /usage\.promptTokens must be a whole number.*got "100"/],
    ['half a shape (AI SDK 5 without a count)', { usage: { inputTokens: 10 }, model: 'gpt-4o' }, /usage\.outputTokens must be a whole number.*got undefined/],
    ['no usage shape', { usage: { tokens: 10 }, model: 'gpt-4o' }, /The usage must be one of .*it has none of their fields/],
    ['two shapes at once', { usage: { input_tokens: 1, output_tokens: 1, promptTokens: 9, completionTokens: 9 }, model: 'gpt-4o' }, /ambiguous/],
    ['usage that is not an object', { usage: 'lots', model: 'gpt-4o' }, /The usage must be a model's token usage/],
  ])('refuses %s with 400 invalid_amount and gives the reservation back: nothing stays charged', async (_what, body, message) => {
    const user = await userWith(150);
    const res = await chat(user, body);
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('invalid_amount');
    expect(error.message).toMatch(message);
    expect(headersOf(res)).toEqual({ charged: 0, balance: 150 });
    expect((await history(user)).map(([kind, amount]) => [kind, amount])).toEqual([
      ['refund', 100],
      ['usage', -100],
      ['grant', 150],
    ]);
  });

  it("refuses a price object in the model's place (a client cannot set its own price), giving the reservation back", async () => {
    const user = await userWith(150);
    const res = await chat(user, { usage: { input_tokens: 10_000, output_tokens: 10_000 }, model: { input: 0, output: 1, per: 1_000_000 } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_request', message: expect.stringMatching(/The model must be a model's name.*got a value of type object/) } });
    expect(headersOf(res)).toEqual({ charged: 0, balance: 150 });
    expect((await history(user)).length).toBe(3);
  });

  it('answers settleUsage on a cost without perModel as the app\'s mistake: 500 misconfigured, given back', async () => {
    const user = await userWith(60);
    const res = await post(`${h.url}/ai/unpriced`, user);
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: { code: 'misconfigured', message: expect.stringMatching(/the cost 'analyze' has no `perModel` prices/) } });
    expect(headersOf(res)).toEqual({ charged: 0, balance: 60 });
  });

  it('refuses a model without a price with 400 invalid_request naming the priced ones, giving the reservation back', async () => {
    const user = await userWith(150);
    const res = await chat(user, { usage: { input_tokens: 1, output_tokens: 1 }, model: 'gpt-5-unlisted' });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error).toMatchObject({ code: 'invalid_request' });
    expect(error.message).toMatch(/no price for the model "gpt-5-unlisted" in the cost 'chat'.*Priced models: gpt-4o, claude-sonnet/);
    expect(headersOf(res)).toEqual({ charged: 0, balance: 150 });
    expect((await history(user)).length).toBe(3);
  });

  it('answers 402 with the balance in the body and the headers, charging nothing', async () => {
    const user = await userWith(7);
    const res = await post(`${h.url}/ai/summarize`, user);
    expect(res.status).toBe(402);
    expect(await res.json()).toMatchObject({ error: { code: 'insufficient_credits', required: 20, balance: 7 } });
    expect(headersOf(res)).toEqual({ charged: 0, balance: 7 });
    expect(await history(user)).toEqual([['grant', 7, null]]);
  });

  it('says 0 charged and the balance after the give-back on a failed answer (thrown, or a 500)', async () => {
    const user = await userWith(50);
    const thrown = await post(`${h.url}/ai/fails`, user);
    expect(thrown.status).toBe(500);
    expect(headersOf(thrown)).toEqual({ charged: 0, balance: 50 });
    const five = await post(`${h.url}/ai/answers-500`, user);
    expect(five.status).toBe(500);
    expect(headersOf(five)).toEqual({ charged: 0, balance: 50 });
    const entries = await history(user);
    expect(entries.map(([kind]) => kind)).toEqual(['refund', 'usage', 'refund', 'usage', 'grant']);
  });

  it("adds the headers to an answer passed on from another server's fetch()", async () => {
    const user = await userWith(10);
    const res = await post(`${h.url}/ai/proxied`, user);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { creditPriceCents: number }).creditPriceCents).toBe(10);
    expect(headersOf(res)).toEqual({ charged: 3, balance: 7 });
  });

  it('a replayed answer (same Idempotency-Key) carries no balance headers: it charged nothing and read nothing', async () => {
    const user = await userWith(100);
    const first = await post(`${h.url}/ai/summarize`, user, undefined, { 'idempotency-key': `k-${user}` });
    expect(headersOf(first)).toEqual({ charged: 20, balance: 80 });
    await h.credits.flush(); // the answer is kept from the background queue
    const again = await post(`${h.url}/ai/summarize`, user, undefined, { 'idempotency-key': `k-${user}` });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual({ summary: 'short' });
    expect(headersOf(again)).toEqual({ charged: null, balance: null });
    expect(await h.credits.getBalance(user)).toBe(80);
  });

  it('no headers without a user: a 401 has no balance to tell', async () => {
    const res = await post(`${h.url}/ai/summarize`, null);
    expect(res.status).toBe(401);
    expect(headersOf(res)).toEqual({ charged: null, balance: null });
  });

  it('lists the named costs on the pricing route', async () => {
    const pricing = (await (await get(`${h.url}/api/credits/pricing`, null)).json()) as { costs: unknown };
    expect(pricing.costs).toEqual([
      { name: 'summarize', label: 'Summarize', metered: false, credits: 20 },
      { name: 'analyze', label: 'Analyze', metered: true, reserve: 50, perModel: {} },
      {
        name: 'chat',
        label: 'Chat',
        metered: true,
        reserve: 100,
        perModel: { 'gpt-4o': { input: 1, output: 4, per: 1000 }, 'claude-sonnet': { input: 3, output: 15, per: 1_000_000 } },
      },
      { name: 'plain', label: 'plain', metered: false, credits: 3 },
    ]);
  });
});

describe('a guard naming a cost that is not in the list is a start-up error', () => {
  let connection: Awaited<ReturnType<typeof connect>>;
  beforeAll(async () => {
    connection = await connect();
  });
  afterAll(() => connection.close());

  it('on Express, with a "did you mean" and the known names', () => {
    const credits = createCredits({ connection, getUserId: headerUser, costs });
    expect(() => credits.requireCredits('summarise')).toThrow(CreditsConfigError);
    expect(() => credits.requireCredits('summarise')).toThrow(
      `requireCredits("summarise"): no cost of that name in \`costs\`. Did you mean 'summarize'? Known: summarize, analyze, chat, plain.`,
    );
    expect(() => credits.requireCredits('')).toThrow(/no cost of that name/);
  });

  it('on Fetch, and says how to add a price list when there is none', () => {
    const withList = createFetchCredits({ connection, getUserId: fetchHeaderUser, costs });
    expect(() => withList.withCredits('analyse', () => Response.json({}))).toThrow(/withCredits\("analyse"\): .*Did you mean 'analyze'\?/);
    const without = createFetchCredits({ connection, getUserId: fetchHeaderUser });
    expect(() => without.withCredits('summarize', () => Response.json({}))).toThrow(
      /withCredits\("summarize"\): there are no named costs\. Give createCredits a price list, such as costs: \{ summarize: \{ credits: 5/,
    );
  });

  it('does not compile a name that is not in a literal price list either (the check above stays for plain strings)', () => {
    const express_ = createCredits({ connection, getUserId: headerUser, costs: { summarize: { credits: 5 }, chat: { metered: true, reserve: 50 } } });
    express_.requireCredits('chat');
    // @ts-expect-error 'summarise' is not one of the names
    expect(() => express_.requireCredits('summarise')).toThrow(CreditsConfigError);
    const fetch_ = createFetchCredits({ connection, getUserId: fetchHeaderUser, costs: { summarize: { credits: 5 } } });
    // @ts-expect-error 'analyze' is not one of the names
    expect(() => fetch_.withCredits('analyze', () => Response.json({}))).toThrow(CreditsConfigError);
    // Without a list, or with one typed NamedCosts, any string compiles and is checked when the guard is created.
    expect(() => createCredits({ connection, getUserId: headerUser, costs }).requireCredits(String('x'))).toThrow(CreditsConfigError);
  });

  it('exports the header names, for CORS', () => {
    expect(BALANCE_HEADERS).toEqual(['Credits-Charged', 'Credits-Balance']);
  });
});

describe('a give-back the database cannot take now', () => {
  let connection: Awaited<ReturnType<typeof connect>>;
  let down = false;
  let flakyStores = 0;
  beforeAll(async () => {
    connection = await connect();
  });
  afterAll(() => connection.close());
  /** The real store, refusing every call while `down`: the database went away as the route failed. */
  const flaky = () =>
    decorateStore(new MongoCreditStore({ connection, collectionPrefix: `flaky${++flakyStores}_` }), (_name, call) =>
      down ? Promise.reject(new Error('connection refused (injected)')) : call(),
    );

  it.each<[string, () => Promise<{ url: string; credits: CreditsBase; close(): Promise<void> }>]>([
    [
      'Express',
      async () => {
        const credits = createCredits({ store: flaky(), getUserId: headerUser, costs, logger: () => undefined });
        const app = express();
        app.post('/ai', credits.requireCredits('summarize'), (_req, res) => {
          down = true;
          res.status(500).json({ error: 'model down' });
        });
        return { credits, ...(await listen(app)) };
      },
    ],
    [
      'Fetch',
      async () => {
        const credits = createFetchCredits({ store: flaky(), getUserId: fetchHeaderUser, costs, logger: () => undefined });
        const route = credits.withCredits('summarize', () => {
          down = true;
          return Response.json({ error: 'model down' }, { status: 500 });
        });
        return { credits, ...(await serveFetch(route)) };
      },
    ],
  ])('%s: answers with the charge as it still stands, and gives it back once the database is back', async (_name, start) => {
    down = false;
    const app = await start();
    try {
      await app.credits.grantCredits('unlucky', 100, { idempotencyKey: 'start' });
      const res = await post(`${app.url}/ai`, 'unlucky');
      expect(res.status).toBe(500);
      expect(headersOf(res)).toEqual({ charged: 20, balance: 80 });
      down = false;
      await app.credits.flush(); // the give-back, retried in the background
      expect(await app.credits.getBalance('unlucky')).toBe(100);
    } finally {
      down = false;
      await app.credits.flush();
      await app.close();
    }
  });
});

describe('creditsForUsage', () => {
  const price = { input: 1, output: 4, per: 1000 };

  it('reads each usage shape and rounds up once per request, never per side', () => {
    // 999 × 1 + 1 × 4 = 1003 per 1000: 1.003 → 2.
    expect(creditsForUsage({ promptTokens: 999, completionTokens: 1 }, price)).toBe(2);
    expect(creditsForUsage({ inputTokens: 500, outputTokens: 125 }, price)).toBe(1); // 500 + 500 = 1000 → exactly 1
    expect(creditsForUsage({ prompt_tokens: 500, completion_tokens: 126 }, price)).toBe(2); // 1004 → 2
    expect(creditsForUsage({ input_tokens: 0, output_tokens: 0 }, price)).toBe(0);
    // Rounding each side up would charge 2 here (0.5 → 1 and 0.5 → 1); once per request it is 1.
    expect(creditsForUsage({ input_tokens: 500, output_tokens: 125 }, price)).toBe(1);
  });

  it('is exact far beyond floating point: no rounding error on large counts', () => {
    // 2^53 - 1 tokens at 3 credits per 7 tokens: the product is above 2^53, computed in integers.
    expect(creditsForUsage({ input_tokens: Number.MAX_SAFE_INTEGER, output_tokens: 0 }, { input: 3, output: 0, per: 7 })).toBe(3860228252031854);
    expect(() => creditsForUsage({ input_tokens: Number.MAX_SAFE_INTEGER, output_tokens: 0 }, { input: 2, output: 0, per: 1 })).toThrow(/more credits than the ledger holds/);
  });

  it.each<[string, unknown]>([
    ['negative', { input_tokens: -1, output_tokens: 0 }],
    ['fractional', { input_tokens: 0.5, output_tokens: 0 }],
    ['NaN', { input_tokens: NaN, output_tokens: 0 }],
    ['Infinity', { input_tokens: Infinity, output_tokens: 0 }],
    ['null', null],
    ['an array', [1, 2]],
  ])('refuses %s usage with InvalidUsageError', (_what, usage) => {
    expect(() => creditsForUsage(usage as TokenUsage, price)).toThrow(InvalidUsageError);
  });

  it.each<[string, unknown, RegExp]>([
    ['a negative price', { input: -1, output: 4, per: 1000 }, /price\.input must be a whole number of credits, 0 or more/],
    ['a fractional price', { input: 0.5, output: 4, per: 1000 }, /price\.input must be a whole number/],
    ['a zero per', { input: 1, output: 4, per: 0 }, /price\.per must be a positive integer/],
    ['a free price', { input: 0, output: 0, per: 1000 }, /makes every call free/],
    ['a misspelt key', { input: 1, ouput: 4, per: 1000 }, /unknown key `ouput`\. Did you mean `output`\?/],
  ])('refuses %s with CreditsConfigError', (_what, bad, message) => {
    expect(() => creditsForUsage({ input_tokens: 1, output_tokens: 1 }, bad as never)).toThrow(CreditsConfigError);
    expect(() => creditsForUsage({ input_tokens: 1, output_tokens: 1 }, bad as never)).toThrow(message);
  });
});
