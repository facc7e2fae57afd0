/**
 * What Stripe says about a payment, merged so that the order and the number of deliveries do not matter,
 * and the credits a purchase is owed, computed from those facts alone. Pure functions: no I/O.
 *
 * Merge rules, per object id:
 * - a refund's status only moves forward: requires_action/pending < succeeded < failed/canceled (a refund
 *   that succeeded can still fail later; a failed one never succeeds again);
 * - a dispute's status only moves forward: open (inquiries and disputes in progress) < closed (won, lost,
 *   warning_closed);
 * - the charge's cumulative `amount_refunded` is taken from the newest charge event (`event.created`).
 * Within a rank the newer event wins. Applying a fact twice, or two facts in either order, gives the same
 * result, so a purchase converges whatever Stripe retries or reorders.
 */
import type { DisputeFact, PaymentFacts, Purchase, RefundFact } from '../domain/types';

export type StripeFact =
  | { type: 'charge'; amountRefunded: number; asOf: number }
  | ({ type: 'refund' } & RefundFact)
  | ({ type: 'dispute' } & DisputeFact);

const REFUND_RANK: Record<string, number> = { requires_action: 0, pending: 1, succeeded: 2, failed: 3, canceled: 3 };
/** Refunds in these states return no money to the customer. */
const REFUND_VOID = new Set(['failed', 'canceled']);
/** Disputes in these states no longer hold the customer's money: the merchant kept it. */
const DISPUTE_RELEASED = new Set(['won', 'warning_closed']);
const DISPUTE_CLOSED = new Set(['won', 'lost', 'warning_closed']);

function newer<T extends { asOf: number }>(current: T | undefined, next: T, rank: (x: T) => number): boolean {
  if (!current) return true;
  const a = rank(current);
  const b = rank(next);
  return b > a || (b === a && next.asOf > current.asOf);
}

/** The facts with one more merged in; the same object when it changes nothing. */
export function mergeFact(facts: PaymentFacts, fact: StripeFact): PaymentFacts {
  switch (fact.type) {
    case 'charge': {
      const c = facts.charge;
      const next = { amountRefunded: fact.amountRefunded, asOf: fact.asOf };
      if (c && (c.asOf > next.asOf || (c.asOf === next.asOf && c.amountRefunded >= next.amountRefunded))) return facts;
      return { ...facts, charge: next };
    }
    case 'refund': {
      const { type: _t, ...refund } = fact;
      const current = facts.refunds.find((r) => r.id === refund.id);
      if (!newer(current, refund, (r) => REFUND_RANK[r.status] ?? 1)) return facts;
      return { ...facts, refunds: [...facts.refunds.filter((r) => r.id !== refund.id), refund] };
    }
    case 'dispute': {
      const { type: _t, ...dispute } = fact;
      const current = facts.disputes.find((d) => d.id === dispute.id);
      if (!newer(current, dispute, (d) => (DISPUTE_CLOSED.has(d.status) ? 2 : 1))) return facts;
      return { ...facts, disputes: [...facts.disputes.filter((d) => d.id !== dispute.id), dispute] };
    }
  }
}

/**
 * Money returned to the customer so far, in the smallest currency unit: the charge's own total as of its
 * newest event, less refunds that failed after it, or the refunds known one by one, whichever says more.
 */
export function refundedAmount(facts: PaymentFacts, amountTotal: number): number {
  const live = facts.refunds.filter((r) => !REFUND_VOID.has(r.status)).reduce((s, r) => s + r.amount, 0);
  let fromCharge = 0;
  if (facts.charge) {
    const { amountRefunded, asOf } = facts.charge;
    // A refund counted in that total (created by then) whose failure was reported at or after it.
    const failedSince = facts.refunds
      .filter((r) => REFUND_VOID.has(r.status) && r.created <= asOf && r.asOf >= asOf)
      .reduce((s, r) => s + r.amount, 0);
    fromCharge = amountRefunded - failedSince;
  }
  return clamp(Math.max(live, fromCharge), 0, amountTotal);
}

/** Money held by disputes that are open or lost (won and warning_closed give it back). */
export function disputedAmount(facts: PaymentFacts, amountTotal: number): number {
  const held = facts.disputes.filter((d) => !DISPUTE_RELEASED.has(d.status)).reduce((s, d) => s + Math.min(d.amount, amountTotal), 0);
  return clamp(held, 0, amountTotal);
}

/**
 * The credits a purchase is owed now: all of them once paid, less the share of the money that refunds and
 * disputes together took back (never more than the purchase), rounded to the nearest credit.
 */
export function creditsOwed(purchase: Pick<Purchase, 'status' | 'credits' | 'amountTotal' | 'facts'>): number {
  if (purchase.status !== 'paid') return 0;
  const { credits, amountTotal, facts } = purchase;
  if (amountTotal <= 0) return credits;
  const taken = Math.min(amountTotal, refundedAmount(facts, amountTotal) + disputedAmount(facts, amountTotal));
  return credits - proportion(credits, taken, amountTotal);
}

/** round(credits × part / whole) in exact integer arithmetic; part = whole gives exactly `credits`. */
export function proportion(credits: number, part: number, whole: number): number {
  const n = BigInt(credits) * BigInt(part) * 2n + BigInt(whole);
  return Number(n / (BigInt(whole) * 2n));
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
