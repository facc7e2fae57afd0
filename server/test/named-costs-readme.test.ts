/**
 * The README's example of costs by name (Guard a route › Costs by name, and metered model calls), run as
 * written: the Vercel AI SDK's generateText is a stand-in that answers the usage of AI SDK 5, and the
 * session is the README's `x-user-id` header.
 */
import express from 'express';
import type { Connection } from 'mongoose';
import { createCredits, creditsForUsage, type Credits } from 'credit-kit/server';
import { createFetchCredits } from 'credit-kit/fetch';
import { connect, listen } from './helpers';

/** Stands in for `generateText` from 'ai' and `openai` from '@ai-sdk/openai'. */
const openai = (model: string) => ({ model });
async function generateText({ prompt }: { model: { model: string }; prompt: string }) {
  return { text: `echo: ${prompt}`, usage: { inputTokens: prompt.length * 100, outputTokens: 500, totalTokens: prompt.length * 100 + 500 } };
}

let connection: Connection;
let credits: Credits;
let server: Awaited<ReturnType<typeof listen>>;

beforeAll(async () => {
  connection = await connect();
  const mongoose = { connection };
  const app = express();

  credits = createCredits({
    connection: mongoose.connection,
    getUserId: (req) => req.get('x-user-id') ?? null,
    costs: {
      summarize: { credits: 20, label: 'Summarize' },
      chat: {
        metered: true,
        reserve: 100, // charged up front; settleUsage gives back the rest, or charges the difference
        label: 'Chat',
        perModel: {
          'gpt-4o': { input: 1, output: 4, per: 1000 }, // 1 credit per 1000 input tokens, 4 per 1000 output tokens
          'claude-sonnet-4': { input: 3, output: 15, per: 1_000_000 },
        },
      },
    },
  });

  app.post('/api/summarize', credits.requireCredits('summarize'), (req, res) => {
    res.json({ summary: '…', creditsLeft: req.credits!.balance });
  });
  app.post('/api/chat', express.json(), credits.requireCredits('chat', async (req, res) => {
    const { text, usage } = await generateText({ model: openai('gpt-4o'), prompt: req.body.prompt }); // Vercel AI SDK
    await req.credits!.settleUsage(usage, 'gpt-4o');
    res.json({ text });
  }));

  app.use('/api', credits.router());
  await credits.init();
  server = await listen(app);
}, 60_000);
afterAll(async () => {
  await credits.flush();
  await server.close();
  await connection.close();
});

const as = (user: string, body?: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'x-user-id': user, ...(body ? { 'content-type': 'application/json' } : {}) },
  ...(body ? { body: JSON.stringify(body) } : {}),
});

it('charges by name, settles a model call by its tokens, and the history and headers say so', async () => {
  await credits.grantCredits('reader', 200, { idempotencyKey: 'readme-grant' });

  const summary = await fetch(`${server.url}/api/summarize`, as('reader'));
  expect(await summary.json()).toEqual({ summary: '…', creditsLeft: 180 });
  expect([summary.headers.get('credits-charged'), summary.headers.get('credits-balance')]).toEqual(['20', '180']);

  // "hello": 500 input and 500 output tokens: (500 × 1 + 500 × 4) / 1000 = 2.5 → 3 credits.
  const chat = await fetch(`${server.url}/api/chat`, as('reader', { prompt: 'hello' }));
  expect(await chat.json()).toEqual({ text: 'echo: hello' });
  expect([chat.headers.get('credits-charged'), chat.headers.get('credits-balance')]).toEqual(['3', '177']);

  const page = (await (await fetch(`${server.url}/api/credits/transactions`, { headers: { 'x-user-id': 'reader' } })).json()) as {
    transactions: Array<{ kind: string; amount: number; ref?: { label?: string } }>;
  };
  expect(page.transactions.map((t) => [t.kind, t.amount, t.ref?.label])).toEqual([
    ['settle', 97, 'Chat'],
    ['usage', -100, 'Chat'],
    ['usage', -20, 'Summarize'],
    ['grant', 200, undefined],
  ]);

  const pricing = (await (await fetch(`${server.url}/api/credits/pricing`)).json()) as { costs: Array<{ name: string }> };
  expect(pricing.costs.map((c) => c.name)).toEqual(['summarize', 'chat']);
});

it('quotes a call with creditsForUsage as the README says', () => {
  expect(creditsForUsage({ input_tokens: 1500, output_tokens: 500 }, { input: 1, output: 4, per: 1000 })).toBe(4);
});

it('runs the Fetch route of the README on the same list', async () => {
  const fetchCredits = createFetchCredits({ connection, getUserId: (request: Request) => request.headers.get('x-user-id'), costs: { chat: { metered: true, reserve: 100, label: 'Chat', perModel: { 'gpt-4o': { input: 1, output: 4, per: 1000 } } } } });
  // app/api/chat/route.ts
  const POST = fetchCredits.withCredits('chat', async (request, { credits: c }) => {
    const { prompt } = await request.json();
    const { text, usage } = await generateText({ model: openai('gpt-4o'), prompt });
    await c.settleUsage(usage, 'gpt-4o');
    return Response.json({ text });
  });
  await fetchCredits.grantCredits('next-reader', 100, { idempotencyKey: 'readme-next-grant' });
  const res = await POST(new Request('http://app.test/api/chat', { ...as('next-reader', { prompt: 'hi' }) }));
  expect(await res.json()).toEqual({ text: 'echo: hi' });
  // 200 input and 500 output tokens: (200 + 2000) / 1000 = 2.2 → 3.
  expect([res.headers.get('credits-charged'), res.headers.get('credits-balance')]).toEqual(['3', '97']);
  await fetchCredits.flush();
});

it('refuses an unknown name when the guard is created', () => {
  expect(() => credits.requireCredits('summarise')).toThrow("Did you mean 'summarize'? Known: summarize, chat.");
});
