import type { Connection } from 'mongoose';
import type { Collection, Db, Document, Filter, UpdateFilter } from 'mongodb';
import type {
  AccountSnapshot,
  ApplyOptions,
  Claim,
  CreditStore,
  JournalEntry,
  LedgerEntry,
  Purchase,
  PurchaseChange,
  PurchaseCondition,
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
}
type LedgerDoc = Omit<LedgerEntry, 'id'> & { _id: string };
type ClaimDoc = Omit<Claim, 'id'> & { _id: string };
type PurchaseDoc = Omit<Purchase, 'id'> & { _id: string };

export interface MongoStoreOptions {
  connection: Connection;
  /** Prefix of the collection names (default `credit_`): accounts, ledger, claims, purchases. */
  collectionPrefix: string;
  /** Upper bound of one database operation; past it the kit fails closed with 503. */
  timeoutMs: number;
}

const DUPLICATE_KEY = 11000;

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

  private collection<T extends Document>(name: string): Collection<T> {
    if (!this.db) {
      // getClient() exists once the app has called connect/openUri; mongoose names the database.
      this.db = this.options.connection.getClient().db(this.options.connection.name);
    }
    return this.db.collection<T>(`${this.options.collectionPrefix}${name}`, { timeoutMS: this.options.timeoutMs });
  }

  private get accounts() {
    return this.collection<AccountDoc>('accounts');
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

  async init(): Promise<void> {
    await Promise.all([
      this.ledger.createIndex({ userId: 1, seq: -1 }),
      this.claims.createIndex({ state: 1, createdAt: 1 }),
      this.purchases.createIndex({ paymentIntentId: 1 }),
    ]);
  }

  async applyEntry(userId: string, entry: JournalEntry, options: ApplyOptions = {}): Promise<AccountSnapshot | null> {
    const filter: Filter<AccountDoc> = { _id: userId };
    // A keyed entry may be retried (by its holder or by recovery): the journal refuses its id twice. Other
    // entries have fresh random ids, so the hot path skips the check.
    if (entry.key !== undefined) filter['journal.id'] = { $ne: entry.id };
    if (options.minBalance !== undefined) filter.balance = { $gte: options.minBalance };
    const update: UpdateFilter<AccountDoc> = {
      $inc: { balance: entry.amount, count: 1 },
      $push: { journal: stripUndefined(entry) },
    };
    const run = (upsert: boolean) => this.accounts.findOneAndUpdate(filter, update, { returnDocument: 'after', upsert });
    let doc: AccountDoc | null;
    try {
      doc = await run(options.create === true);
    } catch (err) {
      // An upsert collides on _id when the account exists but the filter missed it (its journal already
      // holds this entry), or when another first change created the account at the same moment. Either way
      // the account exists now: the same update without upsert tells which (null: applied before).
      if (!options.create || !isDuplicateKeyError(err)) throw err;
      doc = await run(false);
    }
    return doc ? toSnapshot(doc) : null;
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
    if (entries.length === 0) return;
    try {
      await this.ledger.insertMany(
        entries.map(({ id, ...rest }) => ({ _id: id, ...stripUndefined(rest) })),
        { ordered: false },
      );
    } catch (err) {
      // Entries another mover wrote first are the same entries (same id, sequence and balance-after).
      const writeErrors = (err as { writeErrors?: Array<{ code?: number }> | { code?: number } }).writeErrors;
      const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : [];
      if (list.length === 0 || list.some((e) => e.code !== DUPLICATE_KEY)) throw err;
    }
  }

  async pullJournals(batch: Array<{ userId: string; entries: JournalEntry[] }>): Promise<void> {
    if (batch.length === 0) return;
    // $pullAll removes elements equal to the given ones: exactly the entries already in the ledger.
    await this.accounts.bulkWrite(
      batch.map(({ userId, entries }) => ({
        updateOne: { filter: { _id: userId }, update: { $pullAll: { journal: entries } } },
      })),
      { ordered: false },
    );
  }

  async hasLedgerEntry(entryId: string): Promise<boolean> {
    return (await this.ledger.countDocuments({ _id: entryId }, { limit: 1 })) > 0;
  }

  async listLedger(userId: string, options: { beforeSeq?: number; limit: number }): Promise<LedgerEntry[]> {
    const filter: Filter<LedgerDoc> = { userId };
    if (options.beforeSeq !== undefined) filter.seq = { $lt: options.beforeSeq };
    const docs = await this.ledger.find(filter).sort({ seq: -1 }).limit(options.limit).toArray();
    return docs.map(({ _id, ...rest }) => ({ ...rest, id: _id }) as LedgerEntry);
  }

  async insertClaim(claim: Claim): Promise<Claim | null> {
    const { id, ...rest } = claim;
    try {
      await this.claims.insertOne({ _id: id, ...rest });
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

  async markClaimApplied(claimId: string): Promise<void> {
    await this.claims.updateOne({ _id: claimId }, { $set: { state: 'applied' } });
  }

  async releaseClaim(claimId: string, entryId: string): Promise<void> {
    await this.claims.deleteOne({ _id: claimId, entryId, state: 'pending' });
  }

  async pendingClaimsBefore(time: Date, limit: number): Promise<Claim[]> {
    const docs = await this.claims.find({ state: 'pending', createdAt: { $lt: time } }, { limit }).toArray();
    return docs.map(({ _id, ...rest }) => ({ ...rest, id: _id }));
  }

  async getPurchase(id: string): Promise<Purchase | null> {
    return toPurchase(await this.purchases.findOne({ _id: id }));
  }

  async findPurchaseByPaymentIntent(paymentIntentId: string): Promise<Purchase | null> {
    return toPurchase(await this.purchases.findOne({ paymentIntentId }));
  }

  async ensurePurchase(init: Purchase): Promise<Purchase> {
    const { id, ...rest } = init;
    try {
      const doc = await this.purchases.findOneAndUpdate(
        { _id: id },
        { $setOnInsert: rest },
        { upsert: true, returnDocument: 'after' },
      );
      return toPurchase(doc) ?? init;
    } catch (err) {
      // Two first deliveries raced to insert; the other one won, read what it stored.
      if (!isDuplicateKeyError(err)) throw err;
      const existing = await this.getPurchase(id);
      if (!existing) throw err;
      return existing;
    }
  }

  async updatePurchase(id: string, where: PurchaseCondition, change: PurchaseChange): Promise<Purchase | null> {
    const filter: Filter<PurchaseDoc> = { _id: id };
    if (where.statusIn) filter.status = { $in: where.statusIn };
    if (where.notCredited) filter.creditedAt = null;
    if (where.refundClawbackBelow !== undefined || where.refundClawbackIs !== undefined) {
      filter.refundClawback = {
        ...(where.refundClawbackBelow !== undefined ? { $lt: where.refundClawbackBelow } : {}),
        ...(where.refundClawbackIs !== undefined ? { $eq: where.refundClawbackIs } : {}),
      };
    }
    if (where.amountRefundedBelow !== undefined) filter.amountRefunded = { $lt: where.amountRefundedBelow };
    if (where.withoutDispute !== undefined) filter['disputes.id'] = { $ne: where.withoutDispute };

    const update: UpdateFilter<PurchaseDoc> & Record<string, unknown> = {
      $set: { ...change.set, updatedAt: new Date() },
      $inc: { version: 1 },
    };
    const push: Record<string, unknown> = {};
    if (change.addDispute) push.disputes = change.addDispute;
    if (change.pushAdjustment) push.pendingAdjustments = change.pushAdjustment;
    if (Object.keys(push).length) update.$push = push;
    if (change.pullAdjustment) update.$pullAll = { pendingAdjustments: [change.pullAdjustment] };

    if (where.disputeInStatus || change.setDisputeStatus) {
      // Conditions on and rewrites of array elements are done on a read copy, then written back with a
      // compare-and-set on the version read: $elemMatch on fields and positional updates are not portable
      // to every server we support (FerretDB lacks them).
      const current = await this.getPurchase(id);
      if (!current) return null;
      const cond = where.disputeInStatus;
      if (cond && !current.disputes.some((d) => d.id === cond.id && d.status === cond.status)) return null;
      const target = change.setDisputeStatus;
      if (target) {
        (update.$set as Record<string, unknown>).disputes = current.disputes.map((d) =>
          d.id === target.id ? { ...d, status: target.status } : d,
        );
      }
      filter.version = current.version;
    }

    const before = await this.purchases.findOneAndUpdate(filter, update, { returnDocument: 'before' });
    return toPurchase(before);
  }

  async purchasesWithPendingAdjustments(limit: number): Promise<Purchase[]> {
    const docs = await this.purchases.find({ 'pendingAdjustments.0': { $exists: true } }, { limit }).toArray();
    return docs.map((d) => toPurchase(d)!);
  }
}

function toSnapshot(doc: AccountDoc): AccountSnapshot {
  return { userId: doc._id, balance: doc.balance, count: doc.count, journal: doc.journal ?? [] };
}

function toPurchase(doc: PurchaseDoc | null): Purchase | null {
  if (!doc) return null;
  const { _id, ...rest } = doc;
  // Empty arrays set on insert are not kept by every server (FerretDB drops them); absent means empty.
  return {
    ...rest,
    id: _id,
    disputes: rest.disputes ?? [],
    pendingAdjustments: rest.pendingAdjustments ?? [],
    version: rest.version ?? 0,
  };
}

/** BSON stores `undefined` as null; leaving such keys out keeps journal entries comparable for $pullAll. */
function stripUndefined<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    out[k] = v !== null && typeof v === 'object' && !(v instanceof Date) && !Array.isArray(v) ? stripUndefined(v) : v;
  }
  return out as T;
}
