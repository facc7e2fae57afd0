/**
 * Run by tools/package.test.ts inside a fresh server-only app: the README's guarded route, on the installed
 * package, express and mongoose, against the database the test suite runs (MONGODB_URI). Prints what it saw.
 */
import express from 'express';
import mongoose from 'mongoose';
import { createCredits } from 'credit-kit/server';

const connection = mongoose.createConnection(process.env.MONGODB_URI, { dbName: process.env.DB_NAME, serverSelectionTimeoutMS: 5000 });
await connection.asPromise();
const credits = createCredits({ connection, getUserId: (req) => req.get('x-user-id') ?? null });
await credits.grantCredits('ada', 10, { idempotencyKey: 'welcome' });

const app = express();
app.use('/api', credits.router());
app.post('/api/summarize', credits.requireCredits(3), (req, res) => {
  res.json({ creditsLeft: req.credits.balance });
});
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const url = `http://127.0.0.1:${server.address().port}`;
const call = async (method, path, user) => {
  const res = await fetch(url + path, { method, headers: user ? { 'x-user-id': user } : {} });
  return [res.status, await res.json()];
};
const seen = {
  summarize: await call('POST', '/api/summarize', 'ada'),
  broke: await call('POST', '/api/summarize', 'bob'),
  anonymous: await call('POST', '/api/summarize', null),
  balance: await call('GET', '/api/credits/balance', 'ada'),
};
server.closeAllConnections();
server.close();
await credits.flush();
await connection.dropDatabase();
await connection.close();
console.log(JSON.stringify(seen));
