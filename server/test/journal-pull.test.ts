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
import express from 'express';
import { createCredits, type Credits } from 'credit-kit/server';
import { connect, headerUser, listen, post } from './helpers';
import { MongoCreditStore } from '../store/mongo-store';
import { crashingMongoStore, type CrashPlan } from './crashing-store';
import { decorateStore } from '../store/decorate';
import { allocate } from '../ledger/grants';
import { ledgerEntriesOf } from '../ledger/history';
import type { AccountSnapshot, GrantBook } from '../domain/types';

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
    expect(await store.getAccount(u)).toMatchObject({ bookMoved: true });
    expect(await store.getAccount(u)).not.toHaveProperty('book');
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
    expect(await store.getAccount(quiet)).toMatchObject({ bookMoved: true });
    expect(await store.getAccount(quiet)).not.toHaveProperty('book');
    expect((await store.getBooks([quiet]))[0]?.book).toMatchObject({ seq: 2, grants: [{ id: 'grant:promo', remaining: 5 }, { id: 'grant:plain', remaining: 10 }] });
    // Once due, the sweep expires the grant from the book document.
    expect(await second.expireGrants({ userId: quiet, now: new Date(expiresAt.getTime() + 1) })).toMatchObject({ grantsExpired: 1, creditsExpired: 5 });
    expect(await second.getBalance(quiet)).toBe(10);
    await Promise.all([first.flush(), second.flush()]);
  });

  it('a read that finds no book, then an account whose first book another instance stored and pulled meanwhile, reads again', async () => {
    const u = user('first-book');
    const writer = createCredits({ connection, getUserId: headerUser });
    await writer.grantCredits(u, 10, { idempotencyKey: 'plain' });
    await writer.grantCredits(u, 5, { idempotencyKey: 'promo', source: 'promotion', expiresAt: new Date(Date.now() + 3_600_000) });
    expect(await store.getBooks([u])).toEqual([]);
    // Between this reader's read of the book (none yet) and its read of the account, the writer moves it.
    let interleave = true;
    const reader = createCredits({
      store: decorateStore(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), async (name, call) => {
        if (name === 'getAccount' && interleave) {
          interleave = false;
          await writer.flush();
          expect((await store.getAccount(u))?.journal).toEqual([]);
        }
        return call();
      }),
      getUserId: headerUser,
    });
    const details = await reader.getBalanceDetails(u);
    expect(interleave).toBe(false);
    expect(details.balance).toBe(15);
    expect(details.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 5], ['grant:plain', 10]]);
    await Promise.all([writer.flush(), reader.flush()]);
  });

  it('flush() returns only once an account whose book another instance stored first is moved again', async () => {
    const u = user('lost');
    const a = createCredits({ connection, getUserId: headerUser });
    const b = createCredits({ connection, getUserId: headerUser });
    await a.grantCredits(u, 10, { idempotencyKey: 'plain' });
    await a.flush(); // book at 1
    expect(await a.deductCredits(u, 1)).toBe(true);
    await sleep(300); // a's mover has put entry 2 in the ledger; its pull waits for quiet
    expect((await store.getBooks([u]))[0]?.book.seq).toBe(1);
    expect(await b.deductCredits(u, 1)).toBe(true);
    await b.flush(); // b stores the book at 3 and pulls
    expect(await b.deductCredits(u, 1)).toBe(true); // entry 4, journalled
    // a's pull of its book at 2 loses to b's at 3: a reads the account again and moves entry 4 before returning.
    await a.flush();
    expect((await store.getAccount(u))?.journal).toEqual([]);
    expect((await store.getBooks([u]))[0]?.book).toMatchObject({ seq: 4, grants: [{ id: 'grant:plain', remaining: 7 }] });
    expect(await a.getBalance(u)).toBe(7);
    await Promise.all([a.flush(), b.flush()]);
  });
});

/**
 * The ledger sums to the balance, the stored book is at the account's count with nothing journalled, and per
 * grant the parts of the ledger's entries sum to what the book holds: no grant's credits counted twice or lost.
 */
async function bookAudit(userId: string): Promise<Array<[string, number]>> {
  await credits.flush();
  const account = (await store.getAccount(userId))!;
  expect(account.journal).toEqual([]);
  const ledger = await store.listLedger(userId, { limit: 1000 });
  expect(ledger.reduce((s, e) => s + e.amount, 0)).toBe(account.balance);
  expect(ledger.map((e) => e.seq)).toEqual(Array.from({ length: account.count }, (_, i) => account.count - i));
  const book = (await store.getBooks([userId]))[0]!.book;
  expect(book.seq).toBe(account.count);
  const perGrant = new Map<string, number>();
  for (const e of ledger) for (const p of e.grants ?? []) perGrant.set(p.grant, (perGrant.get(p.grant) ?? 0) + p.amount);
  for (const [id, n] of perGrant) expect([id, book.grants.find((g) => g.id === id)?.remaining ?? 0]).toEqual([id, n]);
  expect(book.grants.reduce((s, g) => s + g.remaining, 0) - book.debt).toBe(account.balance);
  return book.grants.map((g) => [g.id, g.remaining]);
}

describe('give-backs whose charge has left the journal', () => {
  const inAnHour = () => new Date(Date.now() + 3_600_000);
  /** A guarded request of `cost` on `c` whose handler runs `meanwhile`, then fails: its charge is given back. */
  async function failing(c: Credits, u: string, cost: number, meanwhile: () => Promise<void>) {
    const app = express();
    app.post('/x', c.requireCredits(cost, async () => {
      await meanwhile();
      throw new Error('the request failed');
    }));
    const s = await listen(app);
    try {
      expect((await post(`${s.url}/x`, u)).status).toBe(500);
    } finally {
      await s.close();
    }
  }
  const parts = async (u: string) =>
    (await store.listLedger(u, { limit: 10 })).reverse().map((e) => [e.kind, (e.grants ?? []).map((p) => `${p.grant}${p.amount}`).join(' ')]);
  /** The promo of 6 and the top-up of 20, a charge of 10 from both (promo first) and its give-back in reverse. */
  async function expectChargeGivenBackToItsGrants(u: string): Promise<void> {
    expect(await parts(u)).toEqual([
      ['grant', 'grant:promo6'],
      ['grant', 'grant:topup20'],
      ['usage', 'grant:promo-6 grant:topup-4'],
      ['refund', 'grant:topup4 grant:promo6'],
    ]);
    expect(await bookAudit(u)).toEqual([['grant:promo', 6], ['grant:topup', 20]]);
  }

  it('returns to the grants the charge took from, read from the ledger once the charge is moved and pulled', async () => {
    const u = user('gb-pulled');
    await credits.grantCredits(u, 6, { idempotencyKey: 'promo', source: 'promotion', expiresAt: inAnHour(), priority: 10 });
    await credits.grantCredits(u, 20, { idempotencyKey: 'topup' });
    await failing(credits, u, 10, async () => {
      await credits.flush(); // the charge: in the ledger with its parts, in the book, out of the journal
      expect((await store.getAccount(u))?.journal).toEqual([]);
      expect((await store.getBooks([u]))[0]?.book.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:topup', 16]]);
    });
    await credits.flush();
    await expectChargeGivenBackToItsGrants(u);
  });

  it('returns to the right grants when the charge is still journalled but the stored book covers it (a move stopped after the book)', async () => {
    const u = user('gb-covered');
    const plan: CrashPlan = { point: 'after-book', mode: 'throw' };
    const flaky = createCredits({ store: crashingMongoStore(connection, () => plan), getUserId: headerUser, hooks: { onBackgroundError: () => undefined }, logger: () => undefined });
    await flaky.grantCredits(u, 6, { idempotencyKey: 'promo', source: 'promotion', expiresAt: inAnHour(), priority: 10 });
    await flaky.grantCredits(u, 20, { idempotencyKey: 'topup' });
    await failing(flaky, u, 10, async () => {
      await flaky.flush(); // the book at 3 is stored, the pull never happens
      expect(plan.fired).toBe(true);
      expect((await store.getAccount(u))?.journal).toHaveLength(3);
      expect((await store.getBooks([u]))[0]?.book.seq).toBe(3);
    });
    // The give-back is journalled after three entries the book covers: its fold skips them and reads the charge's parts.
    expect((await store.getAccount(u))?.journal).toHaveLength(4);
    expect((await credits.getBalanceDetails(u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 6], ['grant:topup', 20]]);
    await flaky.flush();
    await expectChargeGivenBackToItsGrants(u);
  });

  it('returns to the right grants when the charge is between the stored book and the journal (folded again from the ledger)', async () => {
    const u = user('gb-gap');
    const db = connection.getClient().db(connection.name);
    await credits.grantCredits(u, 6, { idempotencyKey: 'promo', source: 'promotion', expiresAt: inAnHour(), priority: 10 });
    await credits.grantCredits(u, 20, { idempotencyKey: 'topup' });
    await credits.flush();
    const before = (await store.getBooks([u]))[0]!.book; // at 2
    await failing(credits, u, 10, async () => {
      await credits.flush();
      // As a kit from before grants leaves it: the charge moved and pulled, its ledger row without parts, and
      // the stored book still at 2.
      await db.collection('credit_ledger').updateOne({ _id: (await store.listLedger(u, { limit: 1 }))[0]!.id as never }, { $unset: { grants: '' } });
      await db.collection('credit_books').replaceOne({ _id: u as never }, before);
      expect((await store.getAccount(u))?.journal).toEqual([]);
    });
    expect((await credits.getBalanceDetails(u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 6], ['grant:topup', 20]]);
    await credits.flush();
    const [refund] = await store.listLedger(u, { limit: 1 });
    expect(refund!.grants!.map((p) => [p.grant, p.amount])).toEqual([['grant:topup', 4], ['grant:promo', 6]]);
    const book = (await store.getBooks([u]))[0]!.book;
    expect(book.seq).toBe(4);
    expect(book.grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 6], ['grant:topup', 20]]);
    expect(await credits.getBalance(u)).toBe(26);
  });
});

describe('a move that stops elsewhere between its writes', () => {
  for (const point of ['before-book', 'after-pull'] as const) {
    it(`${point}: the entries are counted once, and the next move leaves the book as the ledger says`, async () => {
      const u = user(point);
      const plan: CrashPlan = { point, mode: 'die' };
      const dying = createCredits({ store: crashingMongoStore(connection, () => plan), getUserId: headerUser, hooks: { onBackgroundError: () => undefined }, logger: () => undefined });
      await dying.grantCredits(u, 10, { idempotencyKey: 'plain' });
      await dying.grantCredits(u, 5, { idempotencyKey: 'promo', source: 'promotion', expiresAt: new Date(Date.now() + 3_600_000) });
      expect(await dying.deductCredits(u, 3)).toBe(true);
      await dying.flush();
      expect(plan.dead).toBe(true);
      const account = (await store.getAccount(u))!;
      expect(account.journal).toHaveLength(point === 'before-book' ? 3 : 0);
      expect((await store.getBooks([u]))[0]?.book.seq).toBe(point === 'before-book' ? undefined : 3);
      expect(await credits.getBalance(u)).toBe(12);
      expect((await credits.listTransactions(u)).transactions.map((t) => t.amount)).toEqual([-3, 5, 10]);
      expect((await credits.getBalanceDetails(u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
      expect(await credits.deductCredits(u, 4)).toBe(true);
      await credits.reconcile({ olderThanMs: 0 });
      expect(await bookAudit(u)).toEqual([['grant:plain', 8]]);
      expect(await credits.getBalance(u)).toBe(8);
    });
  }
});

describe('a rolling upgrade: an instance of the kit from before credit_books on the same database', () => {
  const db = () => connection.getClient().db(connection.name);
  type RawAccount = { _id: string; balance: number; count: number; journal: AccountSnapshot['journal']; book?: GrantBook };
  /**
   * What that kit's mover does with an account (its journal-mover.ts and book.ts): it folds the journal over
   * the book on the account (or, with none, over the balance before the journal, as one `base` grant), writes
   * the entries, then pulls the journal and stores its book on the account with a compare-and-set on `book.seq`
   * (`book` absent when it read none). Returns the error its fold ran into, or what its compare-and-set matched.
   */
  async function oldKitMove(u: string): Promise<{ folded: false; error: string } | { folded: true; matched: number }> {
    const raw = (await db().collection<RawAccount>('credit_accounts').findOne({ _id: u }))!;
    const snapshot: AccountSnapshot = { userId: u, balance: raw.balance, count: raw.count, journal: raw.journal, ...(raw.book ? { book: raw.book } : {}) };
    const before = raw.balance - raw.journal.reduce((s, e) => s + e.amount, 0);
    const from: GrantBook = raw.book ?? { seq: raw.count - raw.journal.length, clock: null, debt: 0, grants: before > 0 ? [{ id: 'base', source: 'base', priority: 1000, seq: 0, remaining: before }] : [] };
    expect(raw.journal.length).toBeGreaterThan(0); // that kit moves only journals with entries
    let folded: ReturnType<typeof allocate>;
    try {
      // That kit's missingEntries: nothing when the journal starts at or before the book's next entry.
      if (raw.count - raw.journal.length > from.seq) throw new Error('a gap: folded from the ledger');
      folded = allocate(from, ledgerEntriesOf(snapshot), { entry: () => undefined, settlementOf: () => undefined });
    } catch (err) {
      return { folded: false, error: (err as Error).message };
    }
    const { entries, book } = folded;
    await store.insertLedgerEntries(entries);
    const r = await db().collection<RawAccount>('credit_accounts').updateOne(
      { _id: u, ...(raw.book ? { 'book.seq': raw.book.seq } : { book: { $exists: false } }) },
      { $pullAll: { journal: raw.journal }, $set: { book } },
    );
    return { folded: true, matched: r.matchedCount };
  }

  it('cannot move an account this kit moved: its fold fails and its compare-and-set matches nothing, so grants and expiry stay right', async () => {
    const u = user('roll');
    const expiresAt = new Date(Date.now() + 3_600_000);
    await credits.grantCredits(u, 10, { idempotencyKey: 'plain' });
    await credits.grantCredits(u, 5, { idempotencyKey: 'promo', source: 'promotion', expiresAt });
    await credits.flush();
    expect(await credits.deductCredits(u, 3)).toBe(true); // journalled: promo 2 left
    // Without a mark on the account, that kit took the whole balance for one never-expiring `base` grant.
    const move = await oldKitMove(u);
    expect(move.folded).toBe(false);
    // Its compare-and-set, whatever book it read, cannot match the account either.
    const accounts = db().collection<RawAccount>('credit_accounts');
    expect((await accounts.updateOne({ _id: u, book: { $exists: false } }, { $set: { book: { seq: 99, clock: null, debt: 0, grants: [] } } })).matchedCount).toBe(0);
    expect(await accounts.countDocuments({ _id: u, 'book.grants.expiresAt': { $exists: true } })).toBe(0); // that kit's sweep does not find it
    expect((await credits.getBalanceDetails(u)).grants.map((g) => [g.id, g.remaining])).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
    expect(await bookAudit(u)).toEqual([['grant:promo', 2], ['grant:plain', 10]]);
    expect(await credits.expireGrants({ userId: u, now: new Date(expiresAt.getTime() + 1) })).toMatchObject({ grantsExpired: 1, creditsExpired: 2 });
    expect(await bookAudit(u)).toEqual([['grant:plain', 10]]);
  });

  it('an account first changed by this kit is marked at its first move; one that kit moved first is migrated as before', async () => {
    const fresh = user('roll-new');
    await credits.grantCredits(fresh, 4, { idempotencyKey: 'first' });
    await credits.flush();
    expect(await credits.deductCredits(fresh, 1)).toBe(true);
    expect((await oldKitMove(fresh)).folded).toBe(false);
    expect(await bookAudit(fresh)).toEqual([['grant:first', 3]]);
    // That kit moves an account before this one does (a new account, right after its first change; this
    // kit's instance that made the change stops before its own move).
    const early = user('roll-early');
    const plan: CrashPlan = { point: 'before-move', mode: 'die' };
    const dying = createCredits({ store: crashingMongoStore(connection, () => plan), getUserId: headerUser, hooks: { onBackgroundError: () => undefined }, logger: () => undefined });
    await dying.grantCredits(early, 4, { idempotencyKey: 'first' });
    expect(await oldKitMove(early)).toEqual({ folded: true, matched: 1 });
    await dying.flush();
    expect(await credits.deductCredits(early, 1)).toBe(true);
    await credits.flush();
    expect(await bookAudit(early)).toEqual([['grant:first', 3]]);
    expect(await credits.deductCredits(early, 1)).toBe(true);
    expect((await oldKitMove(early)).folded).toBe(false);
    expect(await bookAudit(early)).toEqual([['grant:first', 2]]);
  });
});
