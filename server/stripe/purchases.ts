/**
 * Purchases: crediting a paid Checkout Session exactly once, and taking credits back for refunds and
 * disputes, whatever the order and number of Stripe's deliveries.
 *
 * Each session is recorded when the kit creates it; an event is only acted on when it matches that record
 * (user, credits, amount, currency, mode, live or test). What Stripe says is merged into the record as facts
 * (stripe/facts.ts), from which the credits the purchase is owed follow. Every change of what it is owed is
 * decided by a compare-and-set on the record that also records the ledger change (a pending adjustment with
 * its own key); the change is then applied under that key and cleared. A crash in between is finished by the
 * next delivery or by reconcile(); nothing is applied twice. A delivery is answered 200 only once nothing it
 * caused is left pending.
 *
 * Facts about a payment that no purchase is linked to yet (a refund delivered before the session's
 * completion) are kept by payment intent and merged when the completion links it.
 */
import type Stripe from 'stripe';
import type { StripeCheckoutSessionLike } from './types';
import { CreditsError, NotFoundError, PaymentProviderError } from '../errors';
import { METADATA } from './checkout';
import { purchaseGrantId, purchaseKey } from '../domain/keys';
import { DEFAULT_PRIORITY } from '../ledger/grants';
import { newPurchase, type CheckoutRecord } from '../domain/purchase-record';
import type { Ledger } from '../ledger';
import type { NeutralOptions } from '../options';
import { creditsOwed, mergeFact, type StripeFact } from './facts';
import type { CreditStore } from '../store/types';
import type { Purchase, PurchaseAdjustment, PurchaseStatus } from '../domain/types';

export type FulfillmentStatus = 'paid' | 'awaiting_payment' | 'failed' | 'open' | 'expired' | 'ignored';

export interface FulfillmentResult {
  status: FulfillmentStatus;
  sessionId: string;
  userId: string | null;
  /** Credits the purchase is for. */
  credits: number;
  /** Credits added by this call: 0 when they had been added before (or the session is not paid). */
  creditsAdded: number;
  /** Why an event was ignored. */
  reason?: string;
}

/** What an event about a payment did to the purchase's credits. */
export interface PaymentEventResult {
  /** Credits taken back by this delivery. */
  clawedBack: number;
  /** Credits given back by this delivery (a dispute won, a refund that failed). */
  restored: number;
  /** The purchase the event is about, when one is linked. */
  sessionId: string | null;
  /** Set when the event was kept for later (no purchase linked yet) or ignored. */
  reason?: string;
}

const STATUS_RANK: Record<PurchaseStatus, number> = { open: 0, awaiting_payment: 1, expired: 2, failed: 2, paid: 3 };

interface Deps {
  store: CreditStore;
  ledger: Ledger;
  options: NeutralOptions;
}

export type { CheckoutRecord };

export class Purchases {
  constructor(private readonly deps: Deps) {}

  private get stripe(): Stripe {
    const { stripe } = this.deps.options;
    if (!stripe) throw new CreditsError('not_configured', 'Stripe is not configured: pass `stripe` and `webhookSecret` to createCredits.');
    return stripe;
  }

  async retrieveSession(id: string): Promise<Stripe.Checkout.Session> {
    try {
      return await this.stripe.checkout.sessions.retrieve(id);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) throw new NotFoundError('No such checkout session.');
      throw new PaymentProviderError(err);
    }
  }

  /** Records a session the kit has just created; a repeat of the same creation finds its record. */
  async record(r: CheckoutRecord): Promise<void> {
    const purchase = newPurchase(r);
    if (await this.deps.store.insertPurchase(purchase)) return;
    const existing = await this.deps.store.getPurchase(r.sessionId);
    if (!existing || existing.userId !== r.userId || existing.credits !== r.credits || existing.amountTotal !== r.amountTotal) {
      throw new CreditsError('internal', `A different purchase is already recorded for session ${r.sessionId}.`);
    }
  }

  /**
   * The one fulfilment function. Given a session verified by a webhook signature, or an id that it looks up
   * at Stripe, it credits a paid session exactly once and records unpaid, failed and expired ones. Safe to
   * call any number of times, concurrently, in any order.
   */
  async fulfill(sessionOrId: string | StripeCheckoutSessionLike): Promise<FulfillmentResult> {
    const session = typeof sessionOrId === 'string' ? await this.retrieveSession(sessionOrId) : sessionOrId;
    const checked = await this.matchRecord(session);
    if ('reason' in checked) return ignored(session, checked.reason);
    const { purchase } = checked;
    const base = { sessionId: purchase.id, userId: purchase.userId, credits: purchase.credits };

    const paid = session.payment_status === 'paid' || session.payment_status === 'no_payment_required';
    const status: PurchaseStatus = paid
      ? 'paid'
      : session.status === 'expired'
        ? 'expired'
        : session.status === 'complete'
          ? 'awaiting_payment'
          : 'open';
    const paymentIntentId = idOf(session.payment_intent);
    const result = await this.update(purchase, (p) => ({ ...p, status: higher(p.status, status), paymentIntentId: p.paymentIntentId ?? paymentIntentId }));
    if (paymentIntentId) await this.mergeKeptFacts(purchase.id, paymentIntentId, result);
    return { ...base, status: result.status, creditsAdded: result.added };
  }

  /** A delayed payment failed: record it; nothing is credited. */
  async paymentFailed(session: StripeCheckoutSessionLike): Promise<FulfillmentResult> {
    const checked = await this.matchRecord(session);
    if ('reason' in checked) return ignored(session, checked.reason);
    const { purchase } = checked;
    const result = await this.update(purchase, (p) => ({ ...p, status: higher(p.status, 'failed') }));
    return { status: result.status, sessionId: purchase.id, userId: purchase.userId, credits: purchase.credits, creditsAdded: 0 };
  }

  /**
   * An off-session payment the kit started (auto-recharge, stripe/recharge.ts), recorded as a purchase whose
   * id is `recharge:…`: linked to its PaymentIntent, and paid once Stripe's verified event says so. Refunds and
   * disputes of it then claw back exactly as for a Checkout purchase (found by payment intent). Idempotent.
   */
  async offSession(purchaseId: string, paymentIntentId: string, livemode: boolean, paid: boolean): Promise<{ creditsAdded: number }> {
    const result = await this.update(purchaseId, (p) => ({
      ...p,
      status: paid ? higher(p.status, 'paid') : p.status,
      paymentIntentId: p.paymentIntentId ?? paymentIntentId,
      livemode: p.paymentIntentId ? p.livemode : livemode,
    }));
    await this.mergeKeptFacts(purchaseId, paymentIntentId, result);
    return { creditsAdded: result.added };
  }

  /** A refund, dispute or charge event: merges what it says into the purchase it is about, or keeps it. */
  async paymentFact(paymentIntent: string | { id: string } | null | undefined, fact: StripeFact): Promise<PaymentEventResult> {
    const pi = idOf(paymentIntent);
    if (!pi) return { clawedBack: 0, restored: 0, sessionId: null, reason: 'the event names no payment intent' };
    let purchase = await this.deps.store.findPurchaseByPaymentIntent(pi);
    if (!purchase) {
      // Kept, then looked up again: a completion that links the payment meanwhile reads what was kept.
      await this.deps.store.addPaymentFacts(pi, [JSON.stringify(fact)]);
      purchase = await this.deps.store.findPurchaseByPaymentIntent(pi);
      if (!purchase) {
        return {
          clawedBack: 0,
          restored: 0,
          sessionId: null,
          reason: 'no purchase of this app is linked to this payment yet; the event is kept and applied when one is',
        };
      }
    }
    const result = await this.update(purchase, (p) => ({ ...p, facts: mergeFact(p.facts, fact) }));
    return { clawedBack: result.clawedBack, restored: result.restored, sessionId: purchase.id };
  }

  /** Finishes adjustments a crash left recorded but not applied; one that fails does not stop the rest. */
  async reconcile(batch: number, onError: (err: unknown) => void): Promise<number> {
    const purchases = await this.deps.store.purchasesWithPendingAdjustments(batch);
    let n = 0;
    for (const p of purchases) {
      try {
        n += (await this.update(p, (x) => x)).applied;
      } catch (err) {
        onError(err);
      }
    }
    return n;
  }

  private async matchRecord(session: StripeCheckoutSessionLike): Promise<{ purchase: Purchase } | { reason: string }> {
    const purchase = await this.deps.store.getPurchase(session.id);
    if (!purchase) return { reason: 'no checkout session with this id was created by this app' };
    const meta = session.metadata ?? {};
    const problems: string[] = [];
    if (session.mode !== 'payment') problems.push(`mode is ${String(session.mode)}, not payment`);
    if (meta[METADATA.userId] !== undefined && meta[METADATA.userId] !== purchase.userId) problems.push('the user differs');
    if (meta[METADATA.credits] !== undefined && meta[METADATA.credits] !== String(purchase.credits)) problems.push('the credits differ');
    if (session.amount_total !== purchase.amountTotal) problems.push(`amount_total is ${String(session.amount_total)}, recorded ${purchase.amountTotal}`);
    if (session.currency !== purchase.currency) problems.push(`currency is ${String(session.currency)}, recorded ${purchase.currency}`);
    if (session.livemode !== purchase.livemode) problems.push(`livemode is ${String(session.livemode)}, recorded ${String(purchase.livemode)}`);
    if (problems.length) return { reason: `the session does not match what this app created: ${problems.join('; ')}` };
    return { purchase };
  }

  private async mergeKeptFacts(id: string, paymentIntentId: string, into: UpdateResult): Promise<void> {
    const kept = await this.deps.store.paymentFacts(paymentIntentId);
    if (kept.length === 0) return;
    const facts = kept.map((f) => JSON.parse(f) as StripeFact);
    const more = await this.update(id, (p) => ({ ...p, facts: facts.reduce(mergeFact, p.facts) }));
    into.added += more.added;
    into.clawedBack += more.clawedBack;
    into.restored += more.restored;
    into.applied += more.applied;
    into.status = more.status;
  }

  /**
   * Changes a purchase's facts (a compare-and-set, retried on a concurrent change), decides the ledger
   * change that makes its credits what it is owed, and applies every pending change before returning.
   */
  private async update(from: Purchase | string, change: (p: Purchase) => Purchase): Promise<UpdateResult> {
    const result: UpdateResult = { added: 0, clawedBack: 0, restored: 0, applied: 0, status: 'open' };
    const { store } = this.deps;
    const id = typeof from === 'string' ? from : from.id;
    // The caller's copy serves the first round; a lost compare-and-set reads again.
    for (let read: Purchase | null = typeof from === 'string' ? null : from; ; read = null) {
      const current = read ?? (await store.getPurchase(id));
      if (!current) throw new NotFoundError(`No purchase ${id}.`);
      let next = change(current);
      const owed = creditsOwed(next);
      if (owed !== next.granted) {
        next = { ...next, pendingAdjustments: [...next.pendingAdjustments, this.adjustment(next, owed)], granted: owed, steps: next.steps + 1 };
      }
      if (JSON.stringify(next) !== JSON.stringify(current)) {
        next = { ...next, version: current.version + 1, updatedAt: new Date() };
        if (owed > 0 && !next.creditedAt) next.creditedAt = new Date();
        if (!(await store.replacePurchase(next))) continue; // another delivery changed it first: decide again
      }
      for (const adjustment of next.pendingAdjustments) {
        const applied = await this.applyAdjustment(next, adjustment);
        if (applied) {
          result.applied++;
          if (adjustment.kind === 'purchase') result.added += adjustment.amount;
          else if (adjustment.amount < 0) result.clawedBack -= adjustment.amount;
          else result.restored += adjustment.amount;
        }
      }
      result.status = next.status; // clearing the adjustments changes nothing else
      return result;
    }
  }

  private adjustment(p: Purchase, owed: number): PurchaseAdjustment {
    const amount = owed - p.granted;
    const first = p.steps === 0 && amount > 0;
    const kind = first ? 'purchase' : amount < 0 ? 'clawback' : 'reversal';
    const ref = {
      ...(isRecharge(p.id) ? { note: 'auto-recharge' } : { checkoutSessionId: p.id }),
      ...(p.paymentIntentId ? { paymentIntentId: p.paymentIntentId } : {}),
    };
    const note =
      kind === 'purchase' ? undefined : kind === 'clawback' ? 'refunded or disputed' : 'a refund failed or a dispute was won';
    return { key: purchaseKey(p.id, p.steps), kind, amount, ref: note ? { ...ref, note: isRecharge(p.id) ? `auto-recharge ${note}` : note } : ref };
  }

  /** Applies a recorded adjustment (once, by its key) and clears it; true when this call applied it. */
  private async applyAdjustment(purchase: Purchase, adjustment: PurchaseAdjustment): Promise<boolean> {
    const { ledger, store } = this.deps;
    const reason =
      adjustment.kind !== 'purchase'
        ? undefined
        : isRecharge(purchase.id)
          ? `Auto-recharge: ${purchase.credits} ${this.deps.options.creditName}`
          : `Bought ${purchase.credits} ${this.deps.options.creditName}`;
    // Purchased credits are one grant per session, never expiring: a clawback takes from it first, a
    // reversal adds back to it (reopening it if it was spent).
    const grantId = purchaseGrantId(purchase.id);
    const link = adjustment.amount > 0 ? { grant: { id: grantId, source: 'purchase', priority: DEFAULT_PRIORITY } } : { from: grantId };
    const outcome = await ledger.applyOnceSettled(
      purchase.userId,
      adjustment.key,
      { kind: adjustment.kind, amount: adjustment.amount, ref: adjustment.ref, ...link, ...(reason ? { reason } : {}) },
      { create: true },
    );
    for (;;) {
      const p = await store.getPurchase(purchase.id);
      if (!p || !p.pendingAdjustments.some((a) => a.key === adjustment.key)) break;
      const cleared = { ...p, pendingAdjustments: p.pendingAdjustments.filter((a) => a.key !== adjustment.key), version: p.version + 1, updatedAt: new Date() };
      if (await store.replacePurchase(cleared)) break;
    }
    return outcome.status === 'applied';
  }
}

interface UpdateResult {
  added: number;
  clawedBack: number;
  restored: number;
  applied: number;
  status: PurchaseStatus;
}

/** Purchases recorded by auto-recharge (stripe/recharge.ts) rather than by a Checkout Session. */
function isRecharge(id: string): boolean {
  return id.startsWith('recharge:');
}

function higher(a: PurchaseStatus, b: PurchaseStatus): PurchaseStatus {
  return STATUS_RANK[b] > STATUS_RANK[a] ? b : a;
}

function ignored(session: StripeCheckoutSessionLike, reason: string): FulfillmentResult {
  return { status: 'ignored', sessionId: session.id, userId: null, credits: 0, creditsAdded: 0, reason };
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === 'string' ? value : (value?.id ?? null);
}
