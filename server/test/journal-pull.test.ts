/**
 * When the journal mover empties a journal whose entries are all in the ledger (server/ledger/journal-mover.ts):
 * an account that gained an expiring grant is pulled within about 2 s of its last change, so the expiry
 * sweep, which reads stored books, finds the grant (README, "Grace"); an account of plain spends is left
 * journalled for longer (a pull is a document write as costly as the spend), and is counted right meanwhile.
 */
import type { Connection } from 'mongoose';
import { createCredits, type Credits } from 'credit-kit/server';
import { connect, headerUser } from './helpers';
import { MongoCreditStore } from '../store/mongo-store';

let connection: Connection;
let credits: Credits;
let store: MongoCreditStore;

beforeAll(async () => {
  connection = await connect();
  credits = createCredits({ connection, getUserId: headerUser });
  await credits.init();
  store = new MongoCreditStore({ connection, collectionPrefix: 'credit_' });
});
afterAll(async () => {
  await credits.flush();
  await connection.close();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const user = (name: string) => `pull-${name}-${Math.random().toString(36).slice(2, 8)}`;

describe('journal pulls', () => {
  it('store an expiring grant in the book within about 2 s of the last change, where the expiry sweep finds it', async () => {
    const u = user('expiring');
    const expiresAt = new Date(Date.now() + 60 * 60_000);
    await credits.grantCredits(u, 10, { idempotencyKey: 'plain' });
    await credits.flush(); // the book holds the never-expiring grant
    await credits.grantCredits(u, 5, { idempotencyKey: 'promo', source: 'promotion', expiresAt });
    expect(await credits.deductCredits(u, 1)).toBe(true);
    await sleep(3_000); // no flush: the mover's own timers
    const account = await store.getAccount(u);
    expect(account?.journal).toEqual([]);
    expect(account?.book?.grants.map((g) => g.id).sort()).toEqual(['grant:plain', 'grant:promo']);
    expect(await store.accountsWithGrantsDue(new Date(expiresAt.getTime() + 1), 10_000)).toContain(u);
    expect(await credits.getBalance(u)).toBe(14);
  });

  it('leave a journal of plain spends, already in the ledger, for longer, and count each entry once meanwhile', async () => {
    const u = user('plain');
    await credits.grantCredits(u, 10, { idempotencyKey: 'plain' });
    await credits.flush();
    expect(await credits.deductCredits(u, 3)).toBe(true);
    await sleep(3_000);
    const account = await store.getAccount(u);
    expect(account?.journal.map((e) => e.amount)).toEqual([-3]); // still journalled...
    const page = await credits.listTransactions(u);
    expect(page.transactions.map((t) => t.amount)).toEqual([-3, 10]); // ...and already in the ledger, once
    expect(await credits.getBalance(u)).toBe(7);
    await credits.flush();
    expect((await store.getAccount(u))?.journal).toEqual([]);
    expect((await credits.listTransactions(u)).transactions.map((t) => t.amount)).toEqual([-3, 10]);
  });
});
