/**
 * When the journal mover empties a journal whose entries are all in the ledger (server/ledger/journal-mover.ts):
 * an account that gained an expiring grant is pulled within about 2 s of its last change, so the expiry
 * sweep, which reads stored books, finds the grant (README, "Grace"); an account of plain spends is left
 * journalled for longer (a pull is a document write as costly as the spend), and is counted right meanwhile.
 * The book is its own document (credit_books): a move that stops between storing it and pulling the journal
 * is finished by the next move, and an account whose book a kit from before credit_books kept on the account
 * is read as it was and migrated by its next move.
 */
import type { Connection } from 'mongoose';
import { createCredits, type Credits } from 'credit-kit/server';
import { connect, headerUser } from './helpers';
import { MongoCreditStore } from '../store/mongo-store';
import { crashingMongoStore, type CrashPlan } from './crashing-store';

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
    expect((await store.getBooks([u]))[0]?.book.grants.map((g) => g.id).sort()).toEqual(['grant:plain', 'grant:promo']);
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

  it('a move that stops between storing the book and pulling the journal leaves the account right, and the next move finishes it', async () => {
    const u = user('crash');
    const expiresAt = new Date(Date.now() + 60 * 60_000);
    const plan: CrashPlan = { point: 'after-book', mode: 'die' };
    const dying = createCredits({ store: crashingMongoStore(connection, () => plan), getUserId: headerUser, hooks: { onBackgroundError: () => undefined }, logger: () => undefined });
    await dying.grantCredits(u, 10, { idempotencyKey: 'plain' });
    await dying.grantCredits(u, 5, { idempotencyKey: 'promo', source: 'promotion', expiresAt });
    expect(await dying.deductCredits(u, 3)).toBe(true);
    await dying.flush();
    expect(plan.dead).toBe(true);
    // The book covers all three entries; the journal still holds them.
    const stored = (await store.getBooks([u]))[0]?.book;
    expect(stored).toMatchObject({ seq: 3, debt: 0 });
    expect(stored?.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
    expect((await store.getAccount(u))?.journal).toHaveLength(3);
    // Meanwhile every read counts each entry once.
    expect(await credits.getBalance(u)).toBe(12);
    expect((await credits.listTransactions(u)).transactions.map((t) => t.amount)).toEqual([-3, 5, 10]);
    const details = await credits.getBalanceDetails(u);
    expect(details.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
    // A change on another instance before the repair: its fold skips what the book covers.
    expect(await credits.deductCredits(u, 4)).toBe(true);
    await credits.flush();
    expect((await store.getAccount(u))?.journal).toEqual([]);
    const book = (await store.getBooks([u]))[0]?.book;
    expect(book?.seq).toBe(4);
    expect(book?.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:plain', 8]]);
    const ledger = await store.listLedger(u, { limit: 10 });
    expect(ledger.map((e) => [e.seq, e.amount, e.grants?.map((p) => [p.grant, p.amount])])).toEqual([
      [4, -4, [['grant:promo', -2], ['grant:plain', -2]]],
      [3, -3, [['grant:promo', -3]]],
      [2, 5, [['grant:promo', 5]]],
      [1, 10, [['grant:plain', 10]]],
    ]);
    expect(await credits.getBalance(u)).toBe(8);
  });

  it('reconcile() finishes a move that stopped after storing the book, pulling only what the book covers', async () => {
    const u = user('crash-reconcile');
    const plan: CrashPlan = { point: 'after-book', mode: 'die' };
    const dying = createCredits({ store: crashingMongoStore(connection, () => plan), getUserId: headerUser, hooks: { onBackgroundError: () => undefined }, logger: () => undefined });
    await dying.grantCredits(u, 10, { idempotencyKey: 'plain' });
    expect(await dying.deductCredits(u, 1)).toBe(true);
    await dying.flush();
    expect(plan.dead).toBe(true);
    expect((await store.getAccount(u))?.journal).toHaveLength(2);
    await credits.reconcile({ olderThanMs: 0 });
    expect((await store.getAccount(u))?.journal).toEqual([]);
    expect((await store.getBooks([u]))[0]?.book).toMatchObject({ seq: 2, grants: [{ id: 'grant:plain', remaining: 9 }] });
    expect((await store.listLedger(u, { limit: 10 })).map((e) => [e.seq, e.amount])).toEqual([[2, -1], [1, 10]]);
    expect(await credits.getBalance(u)).toBe(9);
  });

  it('read a book a kit from before credit_books kept on the account, and store it as its own document at the next move', async () => {
    const db = connection.getClient().db(connection.name);
    const accounts = db.collection<{ _id: string; book?: unknown }>('credit_accounts');
    const books = db.collection<{ _id: string }>('credit_books');
    const expiresAt = new Date(Date.now() + 60 * 60_000);
    const oldFormat = async (u: string) => {
      await credits.grantCredits(u, 10, { idempotencyKey: 'plain' });
      await credits.grantCredits(u, 5, { idempotencyKey: 'promo', source: 'promotion', expiresAt });
      await credits.flush();
      // As that kit left the account: the book on it, as of its last move, and no book document.
      const book = (await store.getBooks([u]))[0]!.book;
      await accounts.updateOne({ _id: u }, { $set: { book } });
      await books.deleteOne({ _id: u });
      expect(await store.getBooks([u])).toEqual([]);
    };
    // An instance of this kit started after that one: it knows nothing of either account's book.
    const upgraded = () => createCredits({ connection, getUserId: headerUser });

    // Its next change: read over the old book, then stored in its own document and removed from the account.
    const u = user('legacy');
    await oldFormat(u);
    const first = upgraded();
    expect((await first.getBalanceDetails(u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 5], ['grant:plain', 10]]);
    expect(await store.accountsWithGrantsDue(new Date(expiresAt.getTime() + 1), 10_000)).toContain(u); // the sweep finds it
    expect(await first.deductCredits(u, 3)).toBe(true);
    expect((await first.getBalanceDetails(u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
    await first.flush();
    expect(await accounts.findOne({ _id: u })).not.toHaveProperty('book');
    const stored = (await store.getBooks([u]))[0]?.book;
    expect(stored?.seq).toBe(3);
    expect(stored?.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
    expect(await store.accountsWithGrantsDue(new Date(expiresAt.getTime() + 1), 10_000)).toContain(u);
    expect(await first.getBalance(u)).toBe(12);

    // No change at all: the expiry sweep, which finds the account by its old book, migrates it.
    const quiet = user('legacy-quiet');
    await oldFormat(quiet);
    const second = upgraded();
    expect(await second.expireGrants({ userId: quiet })).toMatchObject({ grantsExpired: 0 });
    expect(await accounts.findOne({ _id: quiet })).not.toHaveProperty('book');
    expect((await store.getBooks([quiet]))[0]?.book).toMatchObject({ seq: 2, grants: [{ id: 'grant:promo', remaining: 5 }, { id: 'grant:plain', remaining: 10 }] });
    // Once due, the sweep expires the grant from the book document.
    expect(await second.expireGrants({ userId: quiet, now: new Date(expiresAt.getTime() + 1) })).toMatchObject({ grantsExpired: 1, creditsExpired: 5 });
    expect(await second.getBalance(quiet)).toBe(10);
    await Promise.all([first.flush(), second.flush()]);
  });
});
