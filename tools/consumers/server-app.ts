/**
 * A server-only app, as the README writes one: tools/package.test.ts copies this file into fresh apps that
 * installed the packed credit-kit with express and mongoose only (no stripe, no React), once as an ES module
 * and once as CommonJS, and compiles it with tsc --strict, without skipLibCheck.
 */
import express from 'express';
import mongoose from 'mongoose';
import { createCredits, CreditsError, type CreateCreditsOptions, type Credits, type WebhookReport } from 'credit-kit/server';

const reports: WebhookReport[] = [];
const options: CreateCreditsOptions = {
  connection: mongoose.connection,
  getUserId: (req) => req.get('x-user-id') ?? null, // your session's user id
  rateLimit: { windowMs: 60_000, guarded: 30 },
  onWebhook: (report) => void reports.push(report),
};
export const credits: Credits = createCredits(options);

export const app = express();
app.use(express.json({ verify: credits.keepRawBody }));
app.use('/api', credits.router());
app.post('/api/summarize', credits.requireCredits(5), (req, res) => {
  res.json({ summary: '…', creditsLeft: req.credits!.balance });
});
app.post('/api/chat', credits.requireCredits((req) => ((req.body as { long?: boolean }).long ? 50 : 10)), async (req, res) => {
  const { balance } = await req.credits!.settle(3);
  res.json({ balance, lastWebhook: reports[reports.length - 1]?.event?.type ?? null });
});

export async function welcome(userId: string): Promise<number> {
  try {
    const { balance } = await credits.grantCredits(userId, 100, { idempotencyKey: `welcome:${userId}`, reason: 'welcome' });
    return balance;
  } catch (err) {
    if (err instanceof CreditsError && err.code === 'invalid_amount') return credits.getBalance(userId);
    throw err;
  }
}
