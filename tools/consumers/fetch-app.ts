/**
 * A Fetch-side app (Next.js route handlers, as the README writes them): tools/package.test.ts copies this
 * file into a fresh app that installed the packed credit-kit with mongoose only (no express, no stripe, no
 * React), once as an ES module and once as CommonJS, and compiles it with tsc --strict, without skipLibCheck.
 * The reference to Node's types is what a Next.js app has through next-env.d.ts (TypeScript 7 loads no
 * @types package by itself; the Express apps get them through @types/express).
 */
/// <reference types="node" />
import mongoose from 'mongoose';
import { createFetchCredits, CreditsError, type CreditsContext, type FetchCredits, type FetchCreditsOptions, type Balance } from 'credit-kit/fetch';

const options: FetchCreditsOptions = {
  connection: mongoose.connection,
  getUserId: (request) => request.headers.get('x-user-id'), // your session's user id
  basePath: '/api',
};
export const credits: FetchCredits = createFetchCredits(options);

// app/api/summarize/route.ts
export const POST = credits.withCredits(5, async (request, { credits: c }) => {
  const { text } = (await request.json()) as { text: string };
  return Response.json({ summary: text.slice(0, 10), creditsLeft: c.balance });
});

// app/api/chat/[id]/route.ts: the framework's context comes through, with credits added
export const chat = credits.withCredits(
  (request) => (request.headers.get('x-long') ? 50 : 10),
  async (_request, context: { params: Promise<{ id: string }>; credits: CreditsContext }) => {
    const { id } = await context.params;
    const { balance } = await context.credits.settle(3);
    return Response.json({ id, balance });
  },
);
export const callChat = (request: Request) => chat(request, { params: Promise.resolve({ id: 'c1' }) });

// app/api/[...credit]/route.ts
export const { GET, POST: creditPost } = credits.routes;
export const checkout: (request: Request) => Promise<Response> = credits.handlers.checkout;

export async function balanceOf(request: Request): Promise<number> {
  const body = (await (await credits.handlers.balance(request)).json()) as Balance;
  return body.balance;
}

export async function spend(userId: string): Promise<boolean> {
  try {
    return await credits.deductCredits(userId, 1);
  } catch (err) {
    if (err instanceof CreditsError && err.code === 'store_unavailable') return false;
    throw err;
  }
}
