/**
 * Auto-recharge records: one per user, holding the user's settings, the card on file, and the one attempt
 * the kit may have in flight. Every change is a compare-and-set on `version` (server/stripe/recharge.ts), so
 * whatever the number of instances only one of them moves the record from one state to the next.
 *
 * States:
 * - `idle`: nothing in flight; the next crossing of the threshold may start an attempt, and an `owed` one
 *   is started by reconcile() when the cooldown allows;
 * - `pending`: an off-session PaymentIntent is being created or awaits Stripe's verdict;
 * - `requires_action`: Stripe asks the card holder to authenticate (3-D Secure); the app's page completes it;
 *   not completed within `actionTimeoutMs`, reconcile() cancels the PaymentIntent and the record is idle again;
 * - `retrying`: the card was declined; the next reconcile() pass at or after `dueAt` tries again;
 * - `paused`: declined `maxDeclines` times for one crossing; nothing starts until the user saves a card or
 *   turns auto-recharge on again.
 */

export type RechargeState = 'idle' | 'pending' | 'requires_action' | 'retrying' | 'paused';

/** The card saved for off-session payments: what the page shows, and the id the kit charges. */
export interface SavedCard {
  paymentMethodId: string;
  brand: string;
  last4: string;
  expMonth: number;
  expYear: number;
  savedAt: Date;
}

/** What one recharge tops up: a bundle of the pricing, or a number of credits at the credit price. */
export interface RechargeTopUp {
  /** The bundle's id, or null for a number of credits. */
  bundle: string | null;
  credits: number;
  /** What the payment charges, in the smallest currency unit: the bundle's price (fees may be folded in). */
  amount: number;
  currency: string;
}

export type RechargeOutcome = 'succeeded' | 'requires_action' | 'declined' | 'skipped';

/** The last thing auto-recharge did, as the settings page shows it. */
export interface RechargeResult {
  status: RechargeOutcome;
  at: Date;
  credits: number;
  amount: number;
  /** Why it was skipped or declined (Stripe's decline code when there is one). */
  reason?: string;
  paymentIntentId?: string;
}

/** One off-session payment the kit started. */
export interface RechargeAttempt {
  /** Unique per user: `${crossingSeq}.${n}`; the payment's purchase record and idempotency key derive from it. */
  id: string;
  /** The ledger entry (its `seq`) whose spend took the balance below the threshold. */
  crossingSeq: number;
  /** 1 for the first attempt of a crossing, then one more for each retry after a decline. */
  n: number;
  credits: number;
  amount: number;
  currency: string;
  paymentMethodId: string;
  /** Set once Stripe answered the creation (or an event named it). */
  paymentIntentId: string | null;
  startedAt: Date;
  /**
   * Set when the kit gave up on the attempt (declined, authentication not completed) while its PaymentIntent
   * could still be completed (a page holding its client secret may confirm it again): the kit cancels it at
   * Stripe before any other attempt of the user starts, and clears this once Stripe says it is canceled (or a
   * success event arrives instead). Never two PaymentIntents of one user that can both succeed.
   */
  open?: true;
}

export interface RechargeRecord {
  /** The user id. */
  id: string;
  enabled: boolean;
  threshold: number | null;
  topUp: RechargeTopUp | null;
  /** The Stripe customer the kit created for this user. */
  customerId: string | null;
  card: SavedCard | null;
  /** The setup-mode Checkout Sessions the kit created for this user (newest last, a few at most). */
  setupSessions: string[];
  state: RechargeState;
  attempt: RechargeAttempt | null;
  /** Declines of the current crossing so far. */
  declines: number;
  /** The highest ledger `seq` looked at as a crossing: an older one, seen again by a late mover, starts nothing. */
  crossingSeq: number;
  /**
   * A crossing (its ledger `seq`) that is still owed a recharge: one refused only for the cooldown or for a
   * previous payment still open at Stripe, or the crossing of a recharge whose credits left the balance still
   * below the threshold. reconcile() starts it once the cooldown is over and nothing is open, if the balance is
   * still below the threshold, auto-recharge still on and the month's cap allows it; else it is dropped.
   * Absent when nothing is owed; cleared by the attempt that pays it.
   */
  owed?: number;
  /** When the last attempt started: the cooldown runs from it. */
  lastAttemptAt: Date | null;
  /** Credits of the attempts started this calendar month (UTC), not counting declined ones. */
  month: { key: string; credits: number };
  lastResult: RechargeResult | null;
  /** When reconcile() should look at the record again (an attempt left unsent by a crash, a retry). */
  dueAt?: Date;
  updatedAt: Date;
  /** Bumped by every write: the compare-and-set token. */
  version: number;
}

/** The calendar month (UTC) a time falls in, as the cap counts it: `2026-12`. */
export function monthKey(at: Date): string {
  return at.toISOString().slice(0, 7);
}

export function newRechargeRecord(userId: string, now = new Date()): RechargeRecord {
  return {
    id: userId,
    enabled: false,
    threshold: null,
    topUp: null,
    customerId: null,
    card: null,
    setupSessions: [],
    state: 'idle',
    attempt: null,
    declines: 0,
    crossingSeq: 0,
    lastAttemptAt: null,
    month: { key: monthKey(now), credits: 0 },
    lastResult: null,
    updatedAt: now,
    version: 0,
  };
}
