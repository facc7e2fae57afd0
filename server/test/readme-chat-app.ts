/**
 * The README's metered example (Guard a route) as an app of its own, for server/test/async-handlers.test.ts:
 * an unhandled rejection ends a Node process, which a test can only watch from outside it.
 *
 *   node -r tsx/cjs server/test/readme-chat-app.ts EXPRESS_MODULE MONGOOSE_MODULE MONGODB_URI DB_NAME
 *
 * EXPRESS_MODULE and MONGOOSE_MODULE are the files the test run resolves `express` and `mongoose` to (Express
 * 4 and mongoose 8 in `npm run test:express4-mongoose8`), so the app runs on the same ones as the suite.
 * The kit's router is not mounted (it would be built on the repository's own Express); requireCredits
 * uses nothing of Express but what the app hands it. Prints "ready PORT" once listening.
 *
 *   POST /api/chat              requireCredits(50, async handler): the README's form
 *   POST /api/chat-middleware   requireCredits(50) followed by the async handler
 * The model fails when the request has `x-model: down`; otherwise it used 1234 tokens (13 credits).
 */
import type { Express, RequestHandler } from 'express';
import type { Mongoose } from 'mongoose';
import { createCredits } from '../index';

async function callModel(down: boolean): Promise<{ text: string; tokensUsed: number }> {
  await new Promise((r) => setTimeout(r, 5));
  if (down) throw new Error('model down');
  return { text: 'hello', tokensUsed: 1234 };
}

async function main(): Promise<void> {
  const [expressModule, mongooseModule, uri, dbName] = process.argv.slice(2) as [string, string, string, string];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const express = require(expressModule) as () => Express;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mongoose = require(mongooseModule) as Mongoose;
  await mongoose.connect(uri, { dbName });
  const credits = createCredits({ connection: mongoose.connection, getUserId: (req) => req.get('x-user-id') ?? null });
  await credits.init();

  const chat: RequestHandler = async (req, res) => {
    const { text, tokensUsed } = await callModel(req.get('x-model') === 'down');
    await req.credits!.settle(Math.ceil(tokensUsed / 100)); // refunds the rest, or charges the difference
    res.json({ text });
  };
  const app = express();
  app.post('/api/chat', credits.requireCredits(50, chat));
  app.post('/api/chat-middleware', credits.requireCredits(50), chat);
  const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(`ready ${(server.address() as { port: number }).port}\n`);
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(2);
});
