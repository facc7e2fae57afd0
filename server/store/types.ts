/**
 * The storage port. The credit logic talks only to this interface; the MongoDB store (mongo-store.ts) is
 * the real one. Each method is one atomic step on one document (or an idempotent batch), so the logic works
 * on a standalone server, a replica set, a sharded cluster keyed by user id, and the embedded server, with
 * no multi-document transactions.
 */
import type { AccountSnapshot, AlertRecord, Claim, GrantBook, JournalEntry, LedgerEntry, Purchase, StoredReply } from '../domain/types';
import type { SubscriptionRecord } from '../domain/subscription-record';
export type { SubscriptionRecord, SubscriptionPeriod, SubscriptionStatus } from '../domain/subscription-record';
import type { RechargeRecord } from '../domain/recharge';

/** The domain's records, which the port speaks in (server/domain/types.ts). */
export type { EntryKind, EntryRef, GrantSource, GrantTerms, GrantPart, OpenGrant, GrantBook, JournalEntry, AccountSnapshot, LedgerEntry, ClaimedChange, Claim, RequestFingerprint, StoredReply, KeptReply, PurchaseStatus, PurchaseAdjustment, RefundFact, DisputeFact, PaymentFacts, Purchase, LowBalanceAlert, AlertRecord } from '../domain/types';
export type { RechargeRecord, RechargeState, RechargeAttempt, RechargeResult, RechargeTopUp, SavedCard } from '../domain/recharge';

export interface ApplyOptions {
  /** Apply only when the balance is at least this much (the `$gte` guard of a deduction). */
  minBalance?: number;
  /** Create the account when it does not exist (credits may open an account, spending never does). */
  create?: boolean;
  /** Apply only if the account's `count` is still this (a compare-and-set: an expiry computed at `count`). */
  ifCount?: number;
}

/** One account's grant book as the journal mover stored it (its own document, never on the account). */
export interface StoredBook {
  userId: string;
  book: GrantBook;
}

/** A grant book to store: only if the stored one is still at seq `from` (`null`: none stored yet). */
export interface BookWrite {
  userId: string;
  from: number | null;
  to: GrantBook;
}

/** One account's journal entries to remove: all in the ledger and all covered by its stored book. */
export interface JournalPull {
  userId: string;
  entries: JournalEntry[];
}

export interface CreditStore {
  /** Creates collections and indexes. Idempotent. */
  init(): Promise<void>;

  /**
   * One atomic update of one account: add `entry.amount` to the balance and journal the entry, unless the
   * `minBalance` guard fails, the balance would leave the safe integer range, the entry id is fenced, or
   * (for an entry with a `key`) the journal already holds an entry with this id. Returns the account after
   * the change, or null when nothing was changed.
   */
  applyEntry(userId: string, entry: JournalEntry, options?: ApplyOptions): Promise<AccountSnapshot | null>;
  /**
   * Optional: several unkeyed spends of one account in one atomic update, all or none: adds every entry's
   * amount to the balance and journals the entries in this order, unless the balance is below `minBalance`
   * (the caller makes it cover every entry's own guard, in order), or one of the ids is fenced. Returns the
   * account after the change, or null when nothing was changed. Without it, each spend is its own update.
   */
  applyEntries?(userId: string, entries: JournalEntry[], minBalance: number): Promise<AccountSnapshot | null>;
  /**
   * One atomic update that makes `applyEntry` refuse this entry id from now on, whenever its write arrives,
   * and says whether the journal held the entry at that moment. Creates the account if needed.
   */
  fenceEntry(userId: string, entryId: string): Promise<{ inJournal: boolean }>;
  isFenced(userId: string, entryId: string): Promise<boolean>;
  getAccount(userId: string): Promise<AccountSnapshot | null>;
  /** Ids of accounts whose oldest journal entry is older than `before` (for recovery). */
  accountsWithJournal(before: Date, limit: number): Promise<string[]>;

  /** Writes entries to the ledger collection; an entry already there (same id) is left as it is. */
  insertLedgerEntries(entries: LedgerEntry[]): Promise<void>;
  /**
   * The stored grant books of these accounts (those that have one). A book is its own document, written
   * only by writeBooks (the journal mover), so a change of balance never rewrites or returns it.
   */
  getBooks(userIds: string[]): Promise<StoredBook[]>;
  /**
   * Stores each account's book after entries now in the ledger, in one batch; each only if the stored book
   * is still at `from` (a compare-and-set on its seq). Returns the accounts whose stored book is not `to`
   * afterwards (another mover got there first with another book).
   */
  writeBooks(batch: BookWrite[]): Promise<string[]>;
  /**
   * Removes exactly these entries from each account's journal, in one batch, and marks each account's book
   * as stored in its own document (getAccount reports `bookMoved` from then on), in place of the grant book a
   * kit from before the book had its own document kept on the account (migrated: the caller stored it first).
   * The caller removes only entries its stored book covers (seq at or below the book's), so no
   * compare-and-set is needed: removing an entry already removed changes nothing.
   */
  pullJournals(batch: JournalPull[]): Promise<void>;
  hasLedgerEntry(entryId: string): Promise<boolean>;
  /** The ledger entries with these ids (those that exist). */
  getLedgerEntries(ids: string[]): Promise<LedgerEntry[]>;
  /**
   * Ids of accounts whose stored grant book holds a grant expiring at or before `before` (for the sweep),
   * in a book document or still on an account from before the book had its own document.
   */
  accountsWithGrantsDue(before: Date, limit: number): Promise<string[]>;
  /** The database server's clock, or null when the server does not say (one clock for every instance). */
  serverTime(): Promise<Date | null>;
  /** Ledger entries of a user, newest first, with `seq` below `beforeSeq` when given. */
  listLedger(userId: string, options: { beforeSeq?: number; limit: number }): Promise<LedgerEntry[]>;

  /**
   * Ledger entries (metered charges) whose `ref.settleBy` is before `time` and that no closeReservation()
   * has marked yet, at most `limit`. Entries still in a journal are not seen until they are moved.
   */
  openReservationsBefore(time: Date, limit: number): Promise<LedgerEntry[]>;
  /** Marks a ledger entry's reservation as decided, so openReservationsBefore() no longer returns it. Idempotent. */
  closeReservation(entryId: string): Promise<void>;

  /** Inserts the claim; returns null when inserted, or the claim that already holds the key. */
  insertClaim(claim: Claim): Promise<Claim | null>;
  getClaim(claimId: string): Promise<Claim | null>;
  markClaimApplied(claimId: string, entryId: string): Promise<void>;
  /** Deletes a pending claim, only if it still names this entry. */
  releaseClaim(claimId: string, entryId: string): Promise<void>;
  /** Points a pending claim at a fresh entry, only if it still names `fromEntryId`; true when it did. */
  rearmClaim(claimId: string, fromEntryId: string, to: { entryId: string; createdAt: Date }): Promise<boolean>;
  pendingClaimsBefore(time: Date, limit: number): Promise<Claim[]>;
  /**
   * Keeps the answer of the request that holds this claim, durably and once: only while the claim names
   * `entryId` and holds no answer yet (a first answer is never overwritten). True when it was stored.
   */
  saveReply(claimId: string, entryId: string, reply: StoredReply): Promise<boolean>;
  /**
   * Deletes up to `limit` applied claims whose `expiresAt` is before `before` (a store whose database
   * expires them by itself may have done so already); returns how many it deleted. Claims without
   * `expiresAt` are kept for good, and a pending claim is never deleted: recovery decides it first.
   */
  deleteExpiredClaims(before: Date, limit: number): Promise<number>;

  /**
   * Records low-balance alerts; an alert whose id is recorded already is left as it is (delivered or not).
   * Returns the ids it recorded now, so that only the instance that recorded an alert delivers it.
   */
  insertAlerts(alerts: AlertRecord[]): Promise<string[]>;
  markAlertDelivered(alertId: string): Promise<void>;
  /** Alerts not yet delivered that were recorded before `time`, oldest first. */
  pendingAlertsBefore(time: Date, limit: number): Promise<AlertRecord[]>;

  getPurchase(id: string): Promise<Purchase | null>;
  findPurchaseByPaymentIntent(paymentIntentId: string): Promise<Purchase | null>;
  /** Records a purchase when its Checkout Session is created; false when a record with this id exists. */
  insertPurchase(purchase: Purchase): Promise<boolean>;
  /** Writes the purchase if its stored version is still `purchase.version - 1` (a compare-and-set). */
  replacePurchase(purchase: Purchase): Promise<boolean>;
  purchasesWithPendingAdjustments(limit: number): Promise<Purchase[]>;

  /** Keeps Stripe facts about a payment intent no purchase is linked to yet (each fact once). */
  addPaymentFacts(paymentIntentId: string, facts: string[]): Promise<void>;
  paymentFacts(paymentIntentId: string): Promise<string[]>;

  /** Records a subscription when its Checkout Session is created; false when a record with this id exists. */
  insertSubscription(subscription: SubscriptionRecord): Promise<boolean>;
  getSubscription(id: string): Promise<SubscriptionRecord | null>;
  /** Writes the subscription if its stored version is still `subscription.version - 1` (a compare-and-set). */
  replaceSubscription(subscription: SubscriptionRecord): Promise<boolean>;
  /**
   * Subscriptions of a user, of a Stripe subscription id, or with a period paid by a payment intent; newest
   * first, at most `limit`.
   */
  findSubscriptions(query: { userId: string } | { stripeSubscriptionId: string } | { paymentIntentId: string }, limit: number): Promise<SubscriptionRecord[]>;
  /** A user's auto-recharge record (settings, card, the attempt in flight), or null. */
  getRecharge(userId: string): Promise<RechargeRecord | null>;
  /** Inserts a user's first record; false when the user has one already. */
  insertRecharge(record: RechargeRecord): Promise<boolean>;
  /** Writes the record if its stored version is still `record.version - 1` (a compare-and-set). */
  replaceRecharge(record: RechargeRecord): Promise<boolean>;
  /** The records of these users that have auto-recharge enabled (the journal mover's question, one read per move). */
  enabledRecharges(userIds: string[]): Promise<RechargeRecord[]>;
  /** Records whose `dueAt` is at or before `time` (for reconcile), at most `limit`. */
  rechargesDue(time: Date, limit: number): Promise<RechargeRecord[]>;
}

/** Every method of the port, for createCredits to check a store it is given. */
export const CREDIT_STORE_METHODS = [
  'init',
  'applyEntry',
  'fenceEntry',
  'isFenced',
  'getAccount',
  'accountsWithJournal',
  'insertLedgerEntries',
  'getBooks',
  'writeBooks',
  'pullJournals',
  'hasLedgerEntry',
  'getLedgerEntries',
  'accountsWithGrantsDue',
  'serverTime',
  'listLedger',
  'openReservationsBefore',
  'closeReservation',
  'insertClaim',
  'getClaim',
  'markClaimApplied',
  'releaseClaim',
  'rearmClaim',
  'pendingClaimsBefore',
  'saveReply',
  'deleteExpiredClaims',
  'insertAlerts',
  'markAlertDelivered',
  'pendingAlertsBefore',
  'getPurchase',
  'findPurchaseByPaymentIntent',
  'insertPurchase',
  'replacePurchase',
  'purchasesWithPendingAdjustments',
  'addPaymentFacts',
  'paymentFacts',
  'insertSubscription',
  'getSubscription',
  'replaceSubscription',
  'findSubscriptions',
  'getRecharge',
  'insertRecharge',
  'replaceRecharge',
  'enabledRecharges',
  'rechargesDue',
] as const satisfies ReadonlyArray<keyof CreditStore>;

/** Methods a store may leave out: the kit then does without what they speed up. */
export const OPTIONAL_STORE_METHODS = ['applyEntries'] as const satisfies ReadonlyArray<keyof CreditStore>;

// The lists name every method: a method added to the port and to neither list fails to compile here.
const everyMethodListed: Record<
  Exclude<keyof CreditStore, (typeof CREDIT_STORE_METHODS)[number] | (typeof OPTIONAL_STORE_METHODS)[number]>,
  never
> = {};
void everyMethodListed;
