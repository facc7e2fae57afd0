/**
 * The domain's records: ledger entries, accounts, claims and purchases, as the credit logic and every store
 * see them. Plain data: no storage or framework types.
 */

export type EntryKind = 'purchase' | 'usage' | 'refund' | 'grant' | 'settle' | 'clawback' | 'reversal' | 'adjustment' | 'expire' | 'revoke';

/**
 * Where a grant's credits came from: a Checkout purchase, a subscription period, a promotion, an admin or
 * system grant, or a name the app chooses (lower-case letters, digits, `-`, `_`, `.`). `base` is the kit's:
 * credits with no grant of their own (see ledger/grants.ts).
 */
export type GrantSource = 'purchase' | 'subscription' | 'promotion' | 'admin' | 'base' | (string & {});

/** The grant a credit entry adds to, as written with the entry. */
export interface GrantTerms {
  /** The grant's id within the account; default: the entry's key, or its id when it has none. */
  id?: string;
  source: GrantSource;
  /** 0-100, lower is spent first. */
  priority: number;
  /** Unspent credits leave the balance at this time (an `expire` entry); never when absent. */
  expiresAt?: Date;
  /** At expiry, up to `max` of the unspent rest is kept as grant `rollover:<id>` (ledger/grants.ts). */
  rollover?: RolloverTerms;
}

/**
 * What a grant keeps when it expires: up to `max` of its unspent rest becomes a new grant (id
 * `rollover:<grant id>`, source `rollover`, the same priority) expiring at `expiresAt` (never when absent).
 * A rollover grant has no rollover of its own: at most one period's rest is ever carried.
 */
export interface RolloverTerms {
  max: number;
  expiresAt?: Date;
}

/**
 * One grant's share of a ledger entry: credits taken from it (negative) or added to it (positive), with the
 * grant's terms, so that a give-back can reopen a grant that was used up.
 */
export interface GrantPart {
  grant: string;
  amount: number;
  source: GrantSource;
  priority: number;
  expiresAt?: Date;
  /** The grant's rollover terms, kept so that a grant reopened by a give-back keeps them. */
  rollover?: RolloverTerms;
  /** The sequence number of the entry that opened the grant (its place among equal grants: oldest first). */
  seq: number;
}

/** A grant with credits left (or opened and not yet used up), as the account's grant book holds it. */
export interface OpenGrant {
  id: string;
  source: GrantSource;
  priority: number;
  expiresAt?: Date;
  rollover?: RolloverTerms;
  seq: number;
  remaining: number;
}

/**
 * What each grant of an account holds after entry `seq`: a pure function of the account's entries in `seq`
 * order (ledger/grants.ts). `remaining` summed over `grants`, less `debt`, is the balance after `seq`.
 */
export interface GrantBook {
  seq: number;
  /** The latest entry time seen so far: the account's own clock, which never goes back. */
  clock: Date | null;
  /** Credits spent beyond every grant (a balance below zero, by the `debt` overage policy). */
  debt: number;
  grants: OpenGrant[];
  /**
   * Revoked grants (a `revoke` entry): never reopened or added to again; a give-back or credit to one goes to
   * `base`. Absent: none.
   */
  closed?: ClosedGrant[];
}

export interface ClosedGrant {
  id: string;
}

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
  /** The named cost (createCredits' `costs`) a guarded request's charge and settlement were for. */
  cost?: string;
  /** That cost's label, what the history shows ("Summarize"). */
  label?: string;
  /**
   * A metered guarded request's charge: its reservation is settled by the route before this, or given back
   * by reconcile() after it (`settleWithinMs`). Carried by the charge itself, so marking it costs no write.
   */
  settleBy?: Date;
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
  /** A credit: the grant it adds to. Without it a credit goes to the grants its charge drew from, or to `base`. */
  grant?: GrantTerms;
  /** A spend: the grant it takes from first (an expiry, the clawback of a purchase). */
  from?: string;
  /**
   * An `expire` entry of a grant with rollover terms: the credits of `from`'s rest kept, as grant `grant`
   * (`rollover:<from>`). The entry takes `-amount + rolledOver` from `from` and adds `rolledOver` to `grant`.
   */
  rolledOver?: number;
}

export interface AccountSnapshot {
  userId: string;
  balance: number;
  /** How many entries have ever been applied to the account; the last journal entry has this sequence number. */
  count: number;
  /** Entries applied but not yet moved to the ledger collection, oldest first. */
  journal: JournalEntry[];
  /**
   * Only on an account a kit from before the book had its own document (CreditStore.getBooks) last moved:
   * the grant book it kept on the account, as of the last entry it moved out of the journal. Read as the
   * stored book while no book document exists; the next move stores it as one and removes it from here.
   */
  book?: GrantBook;
  /**
   * The account's book is a document of its own (CreditStore.getBooks), stored before this was set: a fold
   * that finds none throws rather than start from the balance.
   */
  bookMoved?: true;
}

export interface LedgerEntry extends JournalEntry {
  userId: string;
  /** 1 for the account's first entry, then one more for each. */
  seq: number;
  balanceAfter: number;
  /** Which grants the entry took from or added to (absent on entries moved before grants existed). */
  grants?: GrantPart[];
  /** How much the entry added to the debt (a spend beyond every grant) or repaid (negative). */
  debt?: number;
}

/** A change as a claim records it, so that recovery can finish it without its first holder. */
export interface ClaimedChange {
  kind: EntryKind;
  amount: number;
  reason?: string;
  ref?: EntryRef;
  grant?: GrantTerms;
  from?: string;
  rolledOver?: number;
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
  /** A guarded request's key: what the request was, so that a retry can be told from another request. */
  request?: RequestFingerprint;
  /** A guarded request's key: the answer it gave, written once after the answer went out. */
  reply?: StoredReply;
  /**
   * A guarded request's key may be forgotten after this, with its answer (the holder's clock). Claims
   * without it (grants, deductions, purchases, give-backs, settlements) are kept for good.
   */
  expiresAt?: Date;
}

/**
 * A guarded request sent with an Idempotency-Key, as its claim remembers it: the route (method and path)
 * and a digest of the route, query and body. A retry has the same digest; another request under the same
 * key does not.
 */
export interface RequestFingerprint {
  route: string;
  digest: string;
}

/** The answer a keyed guarded request gave: kept whole (a JSON or empty body within the size bound), or not. */
export type StoredReply = KeptReply | { kept: false; status: number; reason: 'too_large' | 'not_json' };

export interface KeptReply {
  kept: true;
  status: number;
  /** The Content-Type it was sent with; absent for an empty body. */
  contentType?: string;
  /** The body as sent (UTF-8 text of JSON, or empty). */
  body: string;
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

/**
 * A user's balance fell below one of the levels the app set (`lowBalance.levels`): one alert per crossing.
 * A balance that stays below the level raises no more; once it has gone back up to the level or above, the
 * next fall below it is a new crossing.
 */
export interface LowBalanceAlert {
  /** The same for every delivery of one crossing, so that a repeated delivery can be told apart. */
  id: string;
  userId: string;
  level: number;
  /** The balance right after the change that took it below `level`. */
  balance: number;
  /** That change's ledger entry, and its sequence number on the account. */
  entryId: string;
  seq: number;
  /** When that change was applied (by its instance's clock). */
  at: Date;
}

/** An alert as the store keeps it until the app's hook has taken it. */
export interface AlertRecord extends LowBalanceAlert {
  state: 'pending' | 'delivered';
  /** When it was recorded (the recording instance's clock): only decides when reconcile() retries it. */
  createdAt: Date;
}
