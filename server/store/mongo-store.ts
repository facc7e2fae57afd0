import type { Connection } from 'mongoose';
import type { Collection, Db, Document, Filter, UpdateFilter } from 'mongodb';
import type {
  AccountSnapshot,
  AlertRecord,
  ApplyOptions,
  Claim,
  CreditStore,
  GrantBook,
  JournalEntry,
  BookWrite,
  JournalPull,
  LedgerEntry,
  StoredBook,
  Purchase,
  RechargeRecord,
  StoredReply,
  SubscriptionRecord,
} from './types';

/**
 * An account is kept as small as it can be: every hot-path update rewrites it, and some servers (the
 * embedded one) read whole documents to find one. When it changed is in its entries.
 */
interface AccountDoc {
  _id: string;
  balance: number;
  count: number;
  journal: JournalEntry[];
  /** Entry ids that may never be applied (see CreditStore.fenceEntry). Absent on most accounts. */
  fenced?: string[];
  /**
   * The grant book as a kit from before credit_books kept it (AccountSnapshot.book), until the first pull
   * after the book is stored in its own document replaces it with MOVED_BOOK.
   */
  book?: GrantBook | typeof MOVED_BOOK;
}
/**
 * What a pull leaves in an account's `book` once its book is a document of its own (AccountSnapshot.bookMoved).
 * For a rolling upgrade: an instance of a kit from before credit_books folds an account's journal over the
 * `book` on it, or (none) over its whole balance as one never-expiring grant, and stores the result with a
 * compare-and-set that is `book: { $exists: false }` or `'book.seq': <the seq it read>`. This mark fails the
 * first (it exists), and that kit's fold over it fails before the second is tried (no `grants`, and a seq no
 * journal follows), so that kit never writes a book or grant parts for an account this kit moved.
 */
const MOVED_BOOK = { seq: Number.MAX_SAFE_INTEGER, moved: true } as const;
/**
 * An account's grant book, in its own document (`_id`: the user id) so that a spend's update neither
 * rewrites nor returns it: written only by the journal mover (writeBooks), with a compare-and-set on `seq`.
 */
type BookDoc = GrantBook & { _id: string };
/**
 * `reservationDue`: an open metered charge's `ref.settleBy`, copied to the top when the entry is written and
 * removed by closeReservation(), so the index reconcile() reads holds only the reservations still open.
 */
type LedgerDoc = Omit<LedgerEntry, 'id'> & { _id: string; reservationDue?: Date };
type ClaimDoc = Omit<Claim, 'id'> & { _id: string };
type PurchaseDoc = Omit<Purchase, 'id'> & { _id: string };
type AlertDoc = Omit<AlertRecord, 'id'> & { _id: string };
type RechargeDoc = Omit<RechargeRecord, 'id'> & { _id: string };
type SubscriptionDoc = Omit<SubscriptionRecord, 'id'> & { _id: string };
interface PaymentFactsDoc {
  _id: string;
  facts: string[];
  createdAt: Date;
}

export interface MongoStoreOptions {
  connection: Connection;
  /** Prefix of the collection names (default `credit_`): accounts, ledger, claims, purchases. */
  collectionPrefix: string;
}

const DUPLICATE_KEY = 11000;
/** The server's answer to an option it does not have (FerretDB v1 for TTL indexes). */
const NOT_IMPLEMENTED = 238;

export function isDuplicateKeyError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === DUPLICATE_KEY;
}

/**
 * The MongoDB store, on the app's own mongoose connection. It uses the connection's native driver
 * collections: the hot path is one `findOneAndUpdate` with no schema casting in the way.
 */
export class MongoCreditStore implements CreditStore {
  private readonly options: MongoStoreOptions;
  private db: Db | undefined;

  constructor(options: MongoStoreOptions) {
    this.options = options;
  }

  private database(): Db {
    // getClient() exists once the app has called connect/openUri; mongoose names the database.
    this.db ??= this.options.connection.getClient().db(this.options.connection.name);
    return this.db;
  }

  private collection<T extends Document>(name: string): Collection<T> {
    // No timeoutMS here: the driver (7.x) ignores it. Calls are bounded by the fail-closed decorator.
    return this.database().collection<T>(`${this.options.collectionPrefix}${name}`);
  }

  private get accounts() {
    return this.collection<AccountDoc>('accounts');
  }
  private get books() {
    return this.collection<BookDoc>('books');
  }
  private get ledger() {
    return this.collection<LedgerDoc>('ledger');
  }
  private get claims() {
    return this.collection<ClaimDoc>('claims');
  }
  private get purchases() {
    return this.collection<PurchaseDoc>('purchases');
  }
  private get alerts() {
    return this.collection<AlertDoc>('alerts');
  }
  private get subscriptions() {
    return this.collection<SubscriptionDoc>('subscriptions');
  }
  private get recharges() {
    return this.collection<RechargeDoc>('recharges');
  }
  private get paymentFactsCollection() {
    return this.collection<PaymentFactsDoc>('payment_facts');
  }

  async init(): Promise<void> {
    await Promise.all([
      this.ledger.createIndex({ userId: 1, seq: -1 }),
      this.ledger.createIndex({ reservationDue: 1 }),
      this.claims.createIndex({ state: 1, createdAt: 1 }),
      this.purchases.createIndex({ paymentIntentId: 1 }),
      this.alerts.createIndex({ state: 1, createdAt: 1 }),
      // Auto-recharge: reconcile()'s question. `dueAt` is only on records with work owed (absent otherwise).
      this.recharges.createIndex({ dueAt: 1 }),
      this.subscriptions.createIndex({ userId: 1, createdAt: -1 }),
      this.subscriptions.createIndex({ stripeSubscriptionId: 1 }),
      this.subscriptions.createIndex({ 'periods.paymentIntentIds': 1 }),
      // The expiry sweep's question. Written only by the journal mover, never by a spend.
      this.books.createIndex({ 'grants.expiresAt': 1 }),
      // The same question of accounts whose book a kit from before credit_books kept on the account (until
      // their next move). No spend writes `book`, so a spend never changes this index's entry.
      this.accounts.createIndex({ 'book.grants.expiresAt': 1 }),
      this.expiryIndex(),
    ]);
  }

  /**
   * Request keys expire: MongoDB's TTL monitor deletes an applied claim once its `expiresAt` has passed (it
   * runs about once a minute); a pending one is left to reconcile() to decide first, as deleteExpiredClaims
   * does. A server without TTL indexes (FerretDB v1 answers NotImplemented, 238) gets a plain index on the
   * field instead, and deleteExpiredClaims, which reconcile() calls, does all the deleting.
   */
  private async expiryIndex(): Promise<void> {
    try {
      await this.claims.createIndex(
        { expiresAt: 1 },
        { name: 'expiresAt_ttl', expireAfterSeconds: 0, partialFilterExpression: { state: 'applied' } },
      );
    } catch (err) {
      if ((err as { code?: unknown }).code !== NOT_IMPLEMENTED) throw err;
      await this.claims.createIndex({ expiresAt: 1 }, { name: 'expiresAt_sweep' });
    }
  }

  async applyEntry(userId: string, entry: JournalEntry, options: ApplyOptions = {}): Promise<AccountSnapshot | null> {
    const filter: Filter<AccountDoc> = { _id: userId, fenced: { $ne: entry.id } };
    // A keyed entry may be retried (by its holder or by recovery): the journal refuses its id twice. Other
    // entries have fresh random ids, so the hot path skips the check.
    if (entry.key !== undefined) filter['journal.id'] = { $ne: entry.id };
    if (options.ifCount !== undefined) filter.count = options.ifCount;
    const guard = balanceGuard(entry.amount, options.minBalance);
    if (guard) filter.balance = guard;
    const update: UpdateFilter<AccountDoc> = {
      $inc: { balance: entry.amount, count: 1 },
      $push: { journal: stripUndefined(entry) },
    };
    const run = (upsert: boolean) => this.accounts.findOneAndUpdate(filter, update, { returnDocument: 'after', upsert });
    let doc: AccountDoc | null;
    try {
      doc = await run(options.create === true);
    } catch (err) {
      // An upsert collides on _id when the account exists but the filter missed it (a guard, a fence, or its
      // journal already holds this entry), or when another first change created the account at the same
      // moment. Either way the account exists now: the same update without upsert tells which.
      if (!options.create || !isDuplicateKeyError(err)) throw err;
      doc = await run(false);
    }
    return doc ? toSnapshot(doc) : null;
  }

  async applyEntries(userId: string, entries: JournalEntry[], minBalance: number): Promise<AccountSnapshot | null> {
    const doc = await this.accounts.findOneAndUpdate(
      { _id: userId, fenced: { $nin: entries.map((e) => e.id) }, balance: { $gte: minBalance } },
      {
        $inc: { balance: entries.reduce((sum, e) => sum + e.amount, 0), count: entries.length },
        $push: { journal: { $each: entries.map((e) => stripUndefined(e)) } },
      },
      { returnDocument: 'after' },
    );
    return doc ? toSnapshot(doc) : null;
  }

  async fenceEntry(userId: string, entryId: string): Promise<{ inJournal: boolean }> {
    const run = (upsert: boolean) =>
      this.accounts.findOneAndUpdate(
        { _id: userId },
        { $addToSet: { fenced: entryId }, ...(upsert ? { $setOnInsert: { balance: 0, count: 0 } } : {}) },
        { returnDocument: 'after', upsert },
      );
    let doc: AccountDoc | null;
    try {
      doc = await run(true);
    } catch (err) {
      if (!isDuplicateKeyError(err)) throw err;
      doc = await run(false); // created by another change at the same moment
    }
    return { inJournal: (doc?.journal ?? []).some((e) => e.id === entryId) };
  }

  async isFenced(userId: string, entryId: string): Promise<boolean> {
    return (await this.accounts.findOne({ _id: userId, fenced: entryId }, { projection: { _id: 1 } })) !== null;
  }

  async getAccount(userId: string): Promise<AccountSnapshot | null> {
    const doc = await this.accounts.findOne({ _id: userId });
    return doc ? toSnapshot(doc) : null;
  }

  async accountsWithJournal(before: Date, limit: number): Promise<string[]> {
    const docs = await this.accounts.find({ 'journal.0.at': { $lt: before } }, { limit, projection: { _id: 1 } }).toArray();
    return docs.map((d) => d._id);
  }

  async insertLedgerEntries(entries: LedgerEntry[]): Promise<void> {
    // Entries another mover wrote first are the same entries (same id, sequence and balance-after).
    await insertNew(
      this.ledger,
      entries.map(({ id, ...rest }) => ({ _id: id, ...stripUndefined(rest), ...(rest.ref?.settleBy ? { reservationDue: rest.ref.settleBy } : {}) })),
    );
  }

  async getBooks(userIds: string[]): Promise<StoredBook[]> {
    if (userIds.length === 0) return [];
    const docs = await this.books.find({ _id: { $in: userIds } }).toArray();
    return docs.map(({ _id, ...book }) => ({ userId: _id, book: book as GrantBook }));
  }

  async writeBooks(batch: BookWrite[]): Promise<string[]> {
    if (batch.length === 0) return [];
    // A first book is an insert (a second mover's collides on _id); a later one replaces the book it was
    // folded from, only if the stored seq is still that one.
    let complete = false;
    try {
      const r = await this.books.bulkWrite(
        batch.map(({ userId, from, to }) =>
          from === null
            ? { insertOne: { document: { _id: userId, ...stripUndefined(to) } } }
            : { replaceOne: { filter: { _id: userId, seq: from }, replacement: stripUndefined(to) as GrantBook } },
        ),
        { ordered: false },
      );
      complete = r.insertedCount + r.matchedCount === batch.length;
    } catch (err) {
      if (!onlyDuplicateKeys(err)) throw err;
    }
    if (complete) return [];
    // Which ones lost: only read when some did (two movers of one account). A mover that stored the same
    // book (the fold is a pure function of the entries) did this call's work.
    const docs = await this.books.find({ _id: { $in: batch.map((b) => b.userId) } }, { projection: { _id: 1, seq: 1 } }).toArray();
    const seqOf = new Map(docs.map((d) => [d._id, d.seq]));
    return batch.filter((b) => seqOf.get(b.userId) !== b.to.seq).map((b) => b.userId);
  }

  async pullJournals(batch: JournalPull[]): Promise<void> {
    if (batch.length === 0) return;
    // $pullAll removes elements equal to the given ones: exactly the entries already in the ledger.
    await this.accounts.bulkWrite(
      batch.map(({ userId, entries }) => ({
        updateOne: { filter: { _id: userId }, update: { $pullAll: { journal: entries.map(stripUndefined) }, $set: { book: MOVED_BOOK } } },
      })),
      { ordered: false },
    );
  }

  async hasLedgerEntry(entryId: string): Promise<boolean> {
    // findOne rather than countDocuments: an aggregation, which the embedded server runs as a scan.
    return (await this.ledger.findOne({ _id: entryId }, { projection: { _id: 1 } })) !== null;
  }

  async getLedgerEntries(ids: string[]): Promise<LedgerEntry[]> {
    if (ids.length === 0) return [];
    const docs = await this.ledger.find({ _id: { $in: ids } }).toArray();
    return docs.map(({ _id, ...rest }) => ({ ...rest, id: _id }) as LedgerEntry);
  }

  async accountsWithGrantsDue(before: Date, limit: number): Promise<string[]> {
    const due = { $lte: before };
    const stored = await this.books.find({ 'grants.expiresAt': due }, { limit, projection: { _id: 1 } }).toArray();
    const ids = new Set(stored.map((d) => d._id));
    if (ids.size < limit) {
      // Books still on their account (a kit from before credit_books); a book document, once stored, wins.
      const old = await this.accounts.find({ 'book.grants.expiresAt': due }, { limit: limit - ids.size, projection: { _id: 1 } }).toArray();
      for (const d of old) ids.add(d._id);
    }
    return [...ids];
  }

  async serverTime(): Promise<Date | null> {
    const { localTime } = await this.database().command({ hello: 1 });
    return localTime instanceof Date && !Number.isNaN(localTime.getTime()) ? localTime : null;
  }

  async listLedger(userId: string, options: { beforeSeq?: number; limit: number }): Promise<LedgerEntry[]> {
    const filter: Filter<LedgerDoc> = { userId };
    if (options.beforeSeq !== undefined) filter.seq = { $lt: options.beforeSeq };
    const docs = await this.ledger.find(filter).sort({ seq: -1 }).limit(options.limit).toArray();
    return docs.map(toLedgerEntry);
  }

  async openReservationsBefore(time: Date, limit: number): Promise<LedgerEntry[]> {
    const docs = await this.ledger.find({ reservationDue: { $lt: time } }, { limit }).toArray();
    return docs.map(toLedgerEntry);
  }

  async closeReservation(entryId: string): Promise<void> {
    await this.ledger.updateOne({ _id: entryId }, { $unset: { reservationDue: '' } });
  }

  async insertClaim(claim: Claim): Promise<Claim | null> {
    const { id, ...rest } = claim;
    try {
      await this.claims.insertOne({ _id: id, ...stripUndefined(rest) });
      return null;
    } catch (err) {
      if (!isDuplicateKeyError(err)) throw err;
      const existing = await this.getClaim(id);
      // Released between our insert and this read: report it as still held; the caller may retry.
      return existing ?? claim;
    }
  }

  async getClaim(claimId: string): Promise<Claim | null> {
    const doc = await this.claims.findOne({ _id: claimId });
    if (!doc) return null;
    const { _id, ...rest } = doc;
    return { ...rest, id: _id };
  }

  async markClaimApplied(claimId: string, entryId: string): Promise<void> {
    await this.claims.updateOne({ _id: claimId, entryId }, { $set: { state: 'applied' } });
  }

  async releaseClaim(claimId: string, entryId: string): Promise<void> {
    await this.claims.deleteOne({ _id: claimId, entryId, state: 'pending' });
  }

  async rearmClaim(claimId: string, fromEntryId: string, to: { entryId: string; createdAt: Date }): Promise<boolean> {
    const r = await this.claims.updateOne({ _id: claimId, entryId: fromEntryId, state: 'pending' }, { $set: to });
    return r.modifiedCount === 1;
  }

  async pendingClaimsBefore(time: Date, limit: number): Promise<Claim[]> {
    const docs = await this.claims.find({ state: 'pending', createdAt: { $lt: time } }, { limit }).toArray();
    return docs.map(({ _id, ...rest }) => ({ ...rest, id: _id }));
  }

  async saveReply(claimId: string, entryId: string, reply: StoredReply): Promise<boolean> {
    const r = await this.claims.updateOne({ _id: claimId, entryId, reply: { $exists: false } }, { $set: { reply: stripUndefined(reply) } });
    return r.modifiedCount === 1;
  }

  async deleteExpiredClaims(before: Date, limit: number): Promise<number> {
    const expired = { state: 'applied' as const, expiresAt: { $lt: before } };
    const docs = await this.claims.find(expired, { limit, projection: { _id: 1 } }).toArray();
    if (docs.length === 0) return 0;
    const r = await this.claims.deleteMany({ _id: { $in: docs.map((d) => d._id) }, ...expired });
    return r.deletedCount;
  }

  async insertAlerts(alerts: AlertRecord[]): Promise<string[]> {
    const docs = alerts.map(({ id, ...rest }) => ({ _id: id, ...rest }));
    const skipped = await insertNew(this.alerts, docs);
    return docs.filter((_, i) => !skipped.has(i)).map((d) => d._id);
  }

  async markAlertDelivered(alertId: string): Promise<void> {
    await this.alerts.updateOne({ _id: alertId }, { $set: { state: 'delivered' } });
  }

  async pendingAlertsBefore(time: Date, limit: number): Promise<AlertRecord[]> {
    const docs = await this.alerts.find({ state: 'pending', createdAt: { $lt: time } }).sort({ createdAt: 1 }).limit(limit).toArray();
    return docs.map(({ _id, ...rest }) => ({ ...rest, id: _id }));
  }

  async getPurchase(id: string): Promise<Purchase | null> {
    return toPurchase(await this.purchases.findOne({ _id: id }));
  }

  async findPurchaseByPaymentIntent(paymentIntentId: string): Promise<Purchase | null> {
    return toPurchase(await this.purchases.findOne({ paymentIntentId }));
  }

  async insertPurchase(purchase: Purchase): Promise<boolean> {
    const { id, ...rest } = purchase;
    try {
      await this.purchases.insertOne({ _id: id, ...rest });
      return true;
    } catch (err) {
      if (isDuplicateKeyError(err)) return false;
      throw err;
    }
  }

  async replacePurchase(purchase: Purchase): Promise<boolean> {
    const { id, ...rest } = purchase;
    const r = await this.purchases.replaceOne({ _id: id, version: purchase.version - 1 }, rest);
    return r.matchedCount === 1;
  }

  async purchasesWithPendingAdjustments(limit: number): Promise<Purchase[]> {
    const docs = await this.purchases.find({ 'pendingAdjustments.0': { $exists: true } }, { limit }).toArray();
    return docs.map((d) => toPurchase(d)!);
  }

  async addPaymentFacts(paymentIntentId: string, facts: string[]): Promise<void> {
    const run = (upsert: boolean) =>
      this.paymentFactsCollection.updateOne(
        { _id: paymentIntentId },
        { $addToSet: { facts: { $each: facts } }, ...(upsert ? { $setOnInsert: { createdAt: new Date() } } : {}) },
        { upsert },
      );
    try {
      await run(true);
    } catch (err) {
      if (!isDuplicateKeyError(err)) throw err;
      await run(false);
    }
  }

  async paymentFacts(paymentIntentId: string): Promise<string[]> {
    return (await this.paymentFactsCollection.findOne({ _id: paymentIntentId }))?.facts ?? [];
  }

  async insertSubscription(subscription: SubscriptionRecord): Promise<boolean> {
    const { id, ...rest } = subscription;
    try {
      await this.subscriptions.insertOne({ _id: id, ...rest });
      return true;
    } catch (err) {
      if (isDuplicateKeyError(err)) return false;
      throw err;
    }
  }

  async getSubscription(id: string): Promise<SubscriptionRecord | null> {
    return toSubscription(await this.subscriptions.findOne({ _id: id }));
  }

  async replaceSubscription(subscription: SubscriptionRecord): Promise<boolean> {
    const { id, ...rest } = subscription;
    const r = await this.subscriptions.replaceOne({ _id: id, version: subscription.version - 1 }, rest);
    return r.matchedCount === 1;
  }

  async findSubscriptions(
    query: { userId: string } | { stripeSubscriptionId: string } | { paymentIntentId: string },
    limit: number,
  ): Promise<SubscriptionRecord[]> {
    const filter: Filter<SubscriptionDoc> =
      'userId' in query
        ? { userId: query.userId }
        : 'stripeSubscriptionId' in query
          ? { stripeSubscriptionId: query.stripeSubscriptionId }
          : { 'periods.paymentIntentIds': query.paymentIntentId };
    const docs = await this.subscriptions.find(filter).sort({ createdAt: -1 }).limit(limit).toArray();
    return docs.map((d) => toSubscription(d)!);
  }

  async getRecharge(userId: string): Promise<RechargeRecord | null> {
    return toRecharge(await this.recharges.findOne({ _id: userId }));
  }

  async insertRecharge(record: RechargeRecord): Promise<boolean> {
    const { id, ...rest } = record;
    try {
      await this.recharges.insertOne({ _id: id, ...stripUndefined(rest) });
      return true;
    } catch (err) {
      if (isDuplicateKeyError(err)) return false;
      throw err;
    }
  }

  async replaceRecharge(record: RechargeRecord): Promise<boolean> {
    const { id, ...rest } = record;
    // A replacement, not $set: a field the new record leaves out (`dueAt` once nothing is owed) is gone.
    const r = await this.recharges.replaceOne({ _id: id, version: record.version - 1 }, stripUndefined(rest));
    return r.matchedCount === 1;
  }

  async enabledRecharges(userIds: string[]): Promise<RechargeRecord[]> {
    if (userIds.length === 0) return [];
    const docs = await this.recharges.find({ _id: { $in: userIds }, enabled: true }).toArray();
    return docs.map((d) => toRecharge(d)!);
  }

  async rechargesDue(time: Date, limit: number): Promise<RechargeRecord[]> {
    const docs = await this.recharges.find({ dueAt: { $lte: time } }, { limit }).toArray();
    return docs.map((d) => toRecharge(d)!);
  }
}

function toRecharge(doc: RechargeDoc | null): RechargeRecord | null {
  if (!doc) return null;
  const { _id, ...rest } = doc;
  return { ...rest, id: _id, setupSessions: rest.setupSessions ?? [] };
}


function toSubscription(doc: SubscriptionDoc | null): SubscriptionRecord | null {
  if (!doc) return null;
  const { _id, ...rest } = doc;
  return { ...rest, id: _id };
}

/**
 * The balance condition of an update: the caller's guard, and the bounds that keep the balance a safe
 * integer (a change that would leave the range is refused, never rounded).
 */
function balanceGuard(amount: number, minBalance: number | undefined): { $gte?: number; $lte?: number } | undefined {
  const guard: { $gte?: number; $lte?: number } = {};
  const lowest = amount < 0 ? -Number.MAX_SAFE_INTEGER - amount : undefined;
  if (minBalance !== undefined || lowest !== undefined) guard.$gte = Math.max(minBalance ?? -Infinity, lowest ?? -Infinity);
  if (amount > 0) guard.$lte = Number.MAX_SAFE_INTEGER - amount;
  return guard.$gte === undefined && guard.$lte === undefined ? undefined : guard;
}

function toSnapshot(doc: AccountDoc): AccountSnapshot {
  // A field never written reads as its empty value: an account created by a fence has no journal yet.
  const snapshot: AccountSnapshot = { userId: doc._id, balance: doc.balance ?? 0, count: doc.count ?? 0, journal: doc.journal ?? [] };
  if (doc.book && 'moved' in doc.book) snapshot.bookMoved = true;
  else if (doc.book) snapshot.book = doc.book;
  return snapshot;
}

function toPurchase(doc: PurchaseDoc | null): Purchase | null {
  if (!doc) return null;
  const { _id, ...rest } = doc;
  // A field never written (a record from before the field existed) reads as its empty or null value. The
  // embedded server keeps empty arrays and nulls as MongoDB does (tools/fidelity.test.ts pins it).
  return {
    ...rest,
    id: _id,
    paymentIntentId: rest.paymentIntentId ?? null,
    creditedAt: rest.creditedAt ?? null,
    facts: { charge: rest.facts?.charge ?? null, refunds: rest.facts?.refunds ?? [], disputes: rest.facts?.disputes ?? [] },
    pendingAdjustments: rest.pendingAdjustments ?? [],
    granted: rest.granted ?? 0,
    steps: rest.steps ?? 0,
    version: rest.version ?? 0,
  };
}

/**
 * Inserts the documents whose _id is not taken (one unordered insertMany) and returns the indexes of those
 * it skipped because it was; any other write error fails the call.
 */
async function insertNew<T extends { _id: string }>(collection: Collection<T>, docs: T[]): Promise<Set<number>> {
  if (docs.length === 0) return new Set();
  try {
    await collection.insertMany(docs as never, { ordered: false });
    return new Set();
  } catch (err) {
    if (!onlyDuplicateKeys(err)) throw err;
    return new Set(writeErrorsOf(err).map((e) => e.index!));
  }
}

function writeErrorsOf(err: unknown): Array<{ code?: number; index?: number }> {
  const writeErrors = (err as { writeErrors?: Array<{ code?: number; index?: number }> | { code?: number; index?: number } }).writeErrors;
  return Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : [];
}

/** Whether a batch write failed only on ids already taken (each error names its statement). */
function onlyDuplicateKeys(err: unknown): boolean {
  const list = writeErrorsOf(err);
  return list.length > 0 && list.every((e) => e.code === DUPLICATE_KEY && typeof e.index === 'number');
}

/** BSON stores `undefined` as null; leaving such keys out keeps journal entries comparable for $pullAll. */
function stripUndefined<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v)
      ? v.map((x: unknown) => (x !== null && typeof x === 'object' && !(x instanceof Date) ? stripUndefined(x) : x))
      : v !== null && typeof v === 'object' && !(v instanceof Date)
        ? stripUndefined(v)
        : v;
  }
  return out as T;
}

function toLedgerEntry({ _id, reservationDue: _due, ...rest }: LedgerDoc): LedgerEntry {
  return { ...rest, id: _id } as LedgerEntry;
}
