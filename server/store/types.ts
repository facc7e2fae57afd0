/**
 * The storage port. The credit logic (server/ledger.ts) talks only to this interface; the MongoDB store
 * (mongo-store.ts) is the real one. Each method is one atomic step on one document (or an idempotent batch),
 * so the logic works on a standalone server, a replica set, a sharded cluster keyed by user id, and the
 * embedded server, with no multi-document transactions.
 */

export type EntryKind = 'purchase' | 'usage' | 'refund' | 'grant' | 'settle' | 'clawback' | 'reversal' | 'adjustment';

/** A link from a ledger entry to what caused it. */
export interface EntryRef {
  /** The usage entry a refund or settlement belongs to. */
  chargeId?: string;
  checkoutSessionId?: string;
  paymentIntentId?: string;
  chargeObjectId?: string;
  disputeId?: string;
  /** Free text: the route, the reason of a policy decision. */
  note?: string;
  /** For settlements: what the route reported and what was actually charged. */
  requested?: number;
}

/** A balance change as journalled inside the account document, in the same atomic update as the change. */
export interface JournalEntry {
  id: string;
  kind: EntryKind;
  /** Signed credits: negative spends, positive credits. */
  amount: number;
  at: Date;
  key?: string;
  reason?: string;
  ref?: EntryRef;
}

export interface AccountSnapshot {
  userId: string;
  balance: number;
  /** How many entries have ever been applied to the account; the last journal entry has this sequence number. */
  count: number;
  /** Entries applied but not yet moved to the ledger collection, oldest first. */
  journal: JournalEntry[];
}

export interface LedgerEntry extends JournalEntry {
  userId: string;
  /** 1 for the account's first entry, then one more for each. */
  seq: number;
  balanceAfter: number;
}

/** The claim on an idempotency key: created before the balance changes, so a key is applied at most once. */
export interface Claim {
  id: string;
  userId: string;
  key: string;
  entryId: string;
  state: 'pending' | 'applied';
  createdAt: Date;
}

export type PurchaseStatus = 'open' | 'awaiting_payment' | 'paid' | 'failed';

export interface PurchaseAdjustment {
  /** Idempotency key of the ledger entry that carries it out. */
  key: string;
  kind: Extract<EntryKind, 'clawback' | 'reversal'>;
  amount: number;
  ref: EntryRef;
}

export interface Purchase {
  /** The Checkout Session id. */
  id: string;
  userId: string;
  credits: number;
  amountTotal: number;
  currency: string;
  status: PurchaseStatus;
  paymentIntentId: string | null;
  /** Set once the credits have been added. */
  creditedAt: Date | null;
  /** Cumulative amount refunded, in the smallest currency unit, as last seen from Stripe. */
  amountRefunded: number;
  /** Credits taken back so far because of refunds. */
  refundClawback: number;
  /** Open or past disputes and what each took back. */
  disputes: Array<{ id: string; clawback: number; status: 'open' | 'won' | 'lost' }>;
  /** Ledger changes decided on this purchase but maybe not yet applied (a crash between the two). */
  pendingAdjustments: PurchaseAdjustment[];
  createdAt: Date;
  updatedAt: Date;
  /** Bumped by every update: the compare-and-set token of updates decided on a read copy. */
  version: number;
}

export interface ApplyOptions {
  /** Apply only when the balance is at least this much (the `$gte` guard of a deduction). */
  minBalance?: number;
  /** Create the account when it does not exist (credits may open an account, spending never does). */
  create?: boolean;
}

export interface CreditStore {
  /** Creates collections and indexes. Idempotent. */
  init(): Promise<void>;

  /**
   * One atomic update of one account: add `entry.amount` to the balance and journal the entry, unless the
   * `minBalance` guard fails or (for an entry with a `key`) the journal already holds an entry with this id. Returns the account after
   * the change, or null when nothing was changed.
   */
  applyEntry(userId: string, entry: JournalEntry, options?: ApplyOptions): Promise<AccountSnapshot | null>;
  getAccount(userId: string): Promise<AccountSnapshot | null>;
  /** Ids of accounts whose oldest journal entry is older than `before` (for recovery). */
  accountsWithJournal(before: Date, limit: number): Promise<string[]>;

  /** Writes entries to the ledger collection; an entry already there (same id) is left as it is. */
  insertLedgerEntries(entries: LedgerEntry[]): Promise<void>;
  /** Removes exactly these entries (already in the ledger) from each account's journal, in one batch. */
  pullJournals(batch: Array<{ userId: string; entries: JournalEntry[] }>): Promise<void>;
  hasLedgerEntry(entryId: string): Promise<boolean>;
  /** Ledger entries of a user, newest first, with `seq` below `beforeSeq` when given. */
  listLedger(userId: string, options: { beforeSeq?: number; limit: number }): Promise<LedgerEntry[]>;

  /** Inserts the claim; returns null when inserted, or the claim that already holds the key. */
  insertClaim(claim: Claim): Promise<Claim | null>;
  getClaim(claimId: string): Promise<Claim | null>;
  markClaimApplied(claimId: string): Promise<void>;
  /** Deletes a pending claim, only if it still names this entry. */
  releaseClaim(claimId: string, entryId: string): Promise<void>;
  pendingClaimsBefore(time: Date, limit: number): Promise<Claim[]>;

  getPurchase(id: string): Promise<Purchase | null>;
  findPurchaseByPaymentIntent(paymentIntentId: string): Promise<Purchase | null>;
  /** Creates the purchase record if missing (fields of `init` only on insert); returns it as stored. */
  ensurePurchase(init: Purchase): Promise<Purchase>;
  /**
   * Atomically updates a purchase when `where` still holds of it (a compare-and-set), returning the
   * purchase before the update, or null when the condition did not hold.
   */
  updatePurchase(id: string, where: PurchaseCondition, change: PurchaseChange): Promise<Purchase | null>;
  purchasesWithPendingAdjustments(limit: number): Promise<Purchase[]>;
}

export interface PurchaseCondition {
  statusIn?: PurchaseStatus[];
  notCredited?: boolean;
  refundClawbackBelow?: number;
  /** Compare-and-set on the clawback decided so far. */
  refundClawbackIs?: number;
  amountRefundedBelow?: number;
  /** No dispute with this id recorded yet. */
  withoutDispute?: string;
  /** A dispute with this id in this status. */
  disputeInStatus?: { id: string; status: 'open' | 'won' | 'lost' };
}

export interface PurchaseChange {
  set?: Partial<Pick<Purchase, 'status' | 'paymentIntentId' | 'creditedAt' | 'amountRefunded' | 'refundClawback'>>;
  addDispute?: Purchase['disputes'][number];
  setDisputeStatus?: { id: string; status: 'open' | 'won' | 'lost' };
  pushAdjustment?: PurchaseAdjustment;
  pullAdjustment?: PurchaseAdjustment;
}
