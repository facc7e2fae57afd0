/**
 * The storage port. The credit logic talks only to this interface; the MongoDB store (mongo-store.ts) is
 * the real one. Each method is one atomic step on one document (or an idempotent batch), so the logic works
 * on a standalone server, a replica set, a sharded cluster keyed by user id, and the embedded server, with
 * no multi-document transactions.
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

/** A change as a claim records it, so that recovery can finish it without its first holder. */
export interface ClaimedChange {
  kind: EntryKind;
  amount: number;
  reason?: string;
  ref?: EntryRef;
}

/**
 * The claim on an idempotency key: created before the balance changes, so a key's change is applied at most
 * once. It names the one entry id its holder may apply; whoever decides a claim whose holder looks gone
 * first fences that entry id on the account, so the holder's late write can never land.
 */
export interface Claim {
  id: string;
  userId: string;
  key: string;
  entryId: string;
  state: 'pending' | 'applied';
  /** The holder's clock: only used to decide when to look at a claim, never whether a write may land. */
  createdAt: Date;
  /** The signed amount of the entry the claim names. */
  amount: number;
  /**
   * Present on claims recovery must complete rather than release (nobody will ask again): the change to
   * apply, under a fresh entry id if the first one was fenced.
   */
  change?: ClaimedChange;
  /** Apply `change` only if this entry is in the account (the undo of a spend whose outcome was unknown). */
  ifLanded?: string;
}

export type PurchaseStatus = 'open' | 'awaiting_payment' | 'paid' | 'failed' | 'expired';

/** A ledger change decided on a purchase and recorded with it, then applied under its key. */
export interface PurchaseAdjustment {
  /** Idempotency key of the ledger entry that carries it out. */
  key: string;
  kind: Extract<EntryKind, 'purchase' | 'clawback' | 'reversal'>;
  amount: number;
  ref: EntryRef;
}

/** One refund as Stripe last described it. */
export interface RefundFact {
  id: string;
  amount: number;
  status: string;
  /** When Stripe created the refund (seconds). */
  created: number;
  /** `event.created` of the newest event that described it (seconds). */
  asOf: number;
}

/** One dispute (or inquiry) as Stripe last described it. */
export interface DisputeFact {
  id: string;
  /** Disputed amount in the smallest currency unit. */
  amount: number;
  status: string;
  asOf: number;
}

/**
 * What Stripe has said about a payment, merged so that the order and number of deliveries do not matter
 * (server/stripe/facts.ts).
 */
export interface PaymentFacts {
  /** The charge's cumulative `amount_refunded` from the newest charge event. */
  charge: { amountRefunded: number; asOf: number } | null;
  refunds: RefundFact[];
  disputes: DisputeFact[];
}

export interface Purchase {
  /** The Checkout Session id. */
  id: string;
  userId: string;
  credits: number;
  /** What the session charges, in the smallest currency unit, as the kit asked Stripe for it. */
  amountTotal: number;
  currency: string;
  /** Live or test mode, as Stripe answered when the session was created. */
  livemode: boolean;
  status: PurchaseStatus;
  paymentIntentId: string | null;
  /** Set once the credits have been added. */
  creditedAt: Date | null;
  facts: PaymentFacts;
  /** Net credits this purchase puts in the ledger, once its pending adjustments are applied. */
  granted: number;
  /** How many adjustments have been decided; the next one's key uses this number. */
  steps: number;
  /** Ledger changes decided on this purchase but maybe not yet applied (a crash between the two). */
  pendingAdjustments: PurchaseAdjustment[];
  createdAt: Date;
  updatedAt: Date;
  /** Bumped by every write: the compare-and-set token. */
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
   * `minBalance` guard fails, the balance would leave the safe integer range, the entry id is fenced, or
   * (for an entry with a `key`) the journal already holds an entry with this id. Returns the account after
   * the change, or null when nothing was changed.
   */
  applyEntry(userId: string, entry: JournalEntry, options?: ApplyOptions): Promise<AccountSnapshot | null>;
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
  /** Removes exactly these entries (already in the ledger) from each account's journal, in one batch. */
  pullJournals(batch: Array<{ userId: string; entries: JournalEntry[] }>): Promise<void>;
  hasLedgerEntry(entryId: string): Promise<boolean>;
  /** Ledger entries of a user, newest first, with `seq` below `beforeSeq` when given. */
  listLedger(userId: string, options: { beforeSeq?: number; limit: number }): Promise<LedgerEntry[]>;

  /** Inserts the claim; returns null when inserted, or the claim that already holds the key. */
  insertClaim(claim: Claim): Promise<Claim | null>;
  getClaim(claimId: string): Promise<Claim | null>;
  markClaimApplied(claimId: string, entryId: string): Promise<void>;
  /** Deletes a pending claim, only if it still names this entry. */
  releaseClaim(claimId: string, entryId: string): Promise<void>;
  /** Points a pending claim at a fresh entry, only if it still names `fromEntryId`; true when it did. */
  rearmClaim(claimId: string, fromEntryId: string, to: { entryId: string; createdAt: Date }): Promise<boolean>;
  pendingClaimsBefore(time: Date, limit: number): Promise<Claim[]>;

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
}
