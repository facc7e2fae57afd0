/**
 * Run by tools/package.test.ts inside a fresh Fetch-side app (mongoose only, no express installed): the
 * README's guarded route handler and the kit's routes on the installed package, called with Fetch
 * Requests as a route handler is, against the database the test suite runs (MONGODB_URI). Prints what it saw.
 */
import mongoose from 'mongoose';
import { createFetchCredits } from 'credit-kit/fetch';

const connection = mongoose.createConnection(process.env.MONGODB_URI, { dbName: process.env.DB_NAME, serverSelectionTimeoutMS: 5000 });
await connection.asPromise();
const credits = createFetchCredits({ connection, getUserId: (request) => request.headers.get('x-user-id') });
await credits.grantCredits('ada', 10, { idempotencyKey: 'welcome' });

const POST = credits.withCredits(3, async (_request, { credits: c }) => Response.json({ creditsLeft: c.balance }));
const call = async (handler, method, path, user) => {
  const res = await handler(new Request(`http://app.test${path}`, { method, headers: user ? { 'x-user-id': user } : {} }));
  return [res.status, await res.json()];
};
const seen = {
  summarize: await call(POST, 'POST', '/api/summarize', 'ada'),
  broke: await call(POST, 'POST', '/api/summarize', 'bob'),
  anonymous: await call(POST, 'POST', '/api/summarize', null),
  balance: await call(credits.routes.GET, 'GET', '/api/credits/balance', 'ada'),
};
await credits.flush();
await connection.dropDatabase();
await connection.close();
console.log(JSON.stringify(seen));
