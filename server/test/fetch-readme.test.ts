/**
 * The README's Next.js layout (Next.js and other Fetch frameworks) as route files served the way the App
 * Router serves them: a file's own path wins, else the catch-all `app/api/[...credit]`. The session is
 * the test's header sign-in and Stripe is stripe-mock; the rest is the README's code.
 */
import { createFetchCredits, type FetchCredits } from 'credit-kit/fetch';
import { checkoutCompleted, signEvent } from 'credit-kit/testing';
import type { Connection } from 'mongoose';
import { connect, get, post, stripeMockClient, WEBHOOK_SECRET } from './helpers';
import { fetchHeaderUser, serveFetch } from './fetch-helpers';

type RouteFile = { GET?: (request: Request) => Promise<Response>; POST?: (request: Request) => Promise<Response> };

async function summarize(text: string): Promise<string> {
  return text.split(' ').slice(0, 3).join(' ');
}

let connection: Connection;
let credits: FetchCredits;
let url: string;
let close: () => Promise<void>;

beforeAll(async () => {
  connection = await connect();
  // lib/credits.ts
  credits = createFetchCredits({
    connection,
    getUserId: async (request: Request) => fetchHeaderUser(request),
    stripe: stripeMockClient(),
    webhookSecret: WEBHOOK_SECRET,
    publicUrl: 'https://app.example.com',
  });
  const files: Record<string, RouteFile> = {
    // app/api/summarize/route.ts
    '/api/summarize': {
      POST: credits.withCredits(5, async (request, { credits: c }) => {
        const { text } = await request.json();
        return Response.json({ summary: await summarize(text), creditsLeft: c.balance });
      }),
    },
    // app/(payments)/api/stripe/checkout/credits/route.ts
    '/api/stripe/checkout/credits': { POST: credits.handlers.checkout },
    // app/api/stripe/webhook/route.ts
    '/api/stripe/webhook': { POST: credits.handlers.webhook },
  };
  // app/api/[...credit]/route.ts
  const catchAll: RouteFile = credits.routes;
  const server = await serveFetch((request) => {
    const { pathname } = new URL(request.url);
    const file = files[pathname] ?? (pathname.startsWith('/api/') ? catchAll : undefined);
    const handler = file?.[request.method as 'GET' | 'POST'];
    return handler ? handler(request) : new Response('Not found', { status: 404 });
  });
  url = server.url;
  close = server.close;
}, 60_000);
afterAll(async () => {
  await credits.flush();
  await close();
  await connection.close();
});

it('buys credits, is credited by the signed webhook, spends them on the guarded route, and reads the ledger', async () => {
  const pricing = await get(`${url}/api/credits/pricing`, null);
  expect(await pricing.json()).toMatchObject({ creditPriceCents: 10, currency: 'usd' });
  expect(await (await get(`${url}/api/credits/balance`, 'reader')).json()).toEqual({ balance: 0, creditName: 'credits' });

  const noCredits = await post(`${url}/api/summarize`, 'reader', { text: 'one two three four' });
  expect(noCredits.status).toBe(402);

  const created = await post(`${url}/api/stripe/checkout/credits`, 'reader', { quantity: 100 });
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as { id: string };
  const paid = signEvent(await checkoutCompleted(credits, id), WEBHOOK_SECRET);
  const delivered = await fetch(`${url}/api/stripe/webhook`, { method: 'POST', headers: paid.headers, body: paid.body });
  expect(await delivered.json()).toMatchObject({ received: true, status: 'paid', creditsAdded: 100 });

  const answer = await post(`${url}/api/summarize`, 'reader', { text: 'one two three four' });
  expect(await answer.json()).toEqual({ summary: 'one two three', creditsLeft: 95 });
  const history = (await (await get(`${url}/api/credits/transactions`, 'reader')).json()) as { transactions: Array<{ kind: string; amount: number }>; balance: number };
  expect(history.transactions.map((t) => [t.kind, t.amount])).toEqual([
    ['usage', -5],
    ['purchase', 100],
  ]);
  expect(history.balance).toBe(95);
});
