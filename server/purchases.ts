/**
 * Purchases: crediting a paid Checkout Session exactly once, and taking credits back for refunds and
 * disputes. Every decision about a purchase is a compare-and-set on its record that also records the ledger
 * change it implies (a pending adjustment); the change is then applied with the ledger's idempotency key and
 * the adjustment cleared, so a crash in between is finished by reconcile() and nothing is applied twice.
 */
import type Stripe from 'stripe';
import { CreditsError, NotFoundError, PaymentProviderError } from './errors';
import type { CreditsCore } from './core';
import { METADATA } from './checkout';
import type { Purchase, PurchaseAdjustment } from './store/types';

export type FulfillmentStatus = 'paid' | 'awaiting_payment' | 'failed' | 'open' | 'expired' | 'ignored';

export interface FulfillmentResult {
  status: FulfillmentStatus;
  sessionId: string;
  userId: string | null;
  /** Credits the purchase is for. */
  credits: number;
  /** Credits added by this call: 0 when they had been added before (or the session is not paid). */
  creditsAdded: number;
}

interface SessionFacts {
  id: string;
  userId: string;
  credits: number;
  amountTotal: number;
  currency: string;
  paymentIntentId: string | null;
  paid: boolean;
  complete: boolean;
  expired: boolean;
}

/** Reads what the kit wrote on the session when it created it. null: not a credit-kit session. */
export function sessionFacts(session: Stripe.Checkout.Session): SessionFacts | null {
  const userId = session.metadata?.[METADATA.userId] ?? null;
  const creditsText = session.metadata?.[METADATA.credits];
  const credits = creditsText !== undefined && /^\d{1,15}$/.test(creditsText) ? Number(creditsText) : NaN;
  if (!userId || !Number.isSafeInteger(credits) || credits <= 0) return null;
  const pi = session.payment_intent;
  return {
    id: session.id,
    userId,
    credits,
    amountTotal: session.amount_total ?? 0,
    currency: session.currency ?? 'usd',
    paymentIntentId: typeof pi === 'string' ? pi : (pi?.id ?? null),
    paid: session.payment_status === 'paid' || session.payment_status === 'no_payment_required',
    complete: session.status === 'complete',
    expired: session.status === 'expired',
  };
}

export class Purchases {
  constructor(private readonly core: CreditsCore) {}

  private get stripe(): Stripe {
    const { stripe } = this.core.options;
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

  /**
   * The one fulfilment function. Given a session verified by a webhook signature, or an id that it looks up
   * at Stripe, it credits a paid session exactly once (keyed by the session id) and records unpaid, failed
   * and expired ones. Safe to call any number of times, concurrently, in any order.
   */
  async fulfill(sessionOrId: string | Stripe.Checkout.Session): Promise<FulfillmentResult> {
    const session = typeof sessionOrId === 'string' ? await this.retrieveSession(sessionOrId) : sessionOrId;
    const facts = sessionFacts(session);
    if (!facts) return { status: 'ignored', sessionId: session.id, userId: null, credits: 0, creditsAdded: 0 };
    const purchase = await this.ensure(facts);
    const base = { sessionId: facts.id, userId: facts.userId, credits: purchase.credits };

    if (facts.paid) return { ...base, status: 'paid', creditsAdded: await this.credit(purchase, facts.paymentIntentId) };
    if (facts.expired) return { ...base, status: 'expired', creditsAdded: 0 };
    if (facts.complete) {
      await this.core.ledger.db(() =>
        this.core.store.updatePurchase(purchase.id, { statusIn: ['open'] }, { set: { status: 'awaiting_payment' } }),
      );
      return { ...base, status: 'awaiting_payment', creditsAdded: 0 };
    }
    return { ...base, status: 'open', creditsAdded: 0 };
  }

  /** A delayed payment failed: record it; nothing is credited. */
  async paymentFailed(session: Stripe.Checkout.Session): Promise<FulfillmentResult> {
    const facts = sessionFacts(session);
    if (!facts) return { status: 'ignored', sessionId: session.id, userId: null, credits: 0, creditsAdded: 0 };
    const purchase = await this.ensure(facts);
    await this.core.ledger.db(() =>
      this.core.store.updatePurchase(purchase.id, { statusIn: ['open', 'awaiting_payment'], notCredited: true }, { set: { status: 'failed' } }),
    );
    return { status: 'failed', sessionId: facts.id, userId: facts.userId, credits: purchase.credits, creditsAdded: 0 };
  }

  private ensure(facts: SessionFacts): Promise<Purchase> {
    const now = new Date();
    return this.core.ledger.db(() =>
      this.core.store.ensurePurchase({
        id: facts.id,
        userId: facts.userId,
        credits: facts.credits,
        amountTotal: facts.amountTotal,
        currency: facts.currency,
        status: 'open',
        paymentIntentId: facts.paymentIntentId,
        creditedAt: null,
        amountRefunded: 0,
        refundClawback: 0,
        disputes: [],
        pendingAdjustments: [],
        createdAt: now,
        updatedAt: now,
        version: 0,
      }),
    );
  }

  /** Adds the purchased credits once; returns how many this call added. */
  private async credit(purchase: Purchase, paymentIntentId: string | null): Promise<number> {
    const { ledger, store } = this.core;
    const ref = { checkoutSessionId: purchase.id, ...(paymentIntentId ? { paymentIntentId } : {}) };
    // A concurrent delivery may hold the key: this answers only once the change is durable, whoever made it.
    const outcome = await ledger.applyOnceSettled(
      purchase.userId,
      `checkout:${purchase.id}`,
      { kind: 'purchase', amount: purchase.credits, ref, reason: `Bought ${purchase.credits} ${this.core.options.creditName}` },
      { create: true },
    );
    const added = outcome.status === 'applied' ? purchase.credits : 0;
    await ledger.fault('after-purchase-update');
    await ledger.db(() =>
      store.updatePurchase(
        purchase.id,
        { notCredited: true },
        { set: { status: 'paid', creditedAt: new Date(), ...(paymentIntentId ? { paymentIntentId } : {}) } },
      ),
    );
    return added;
  }

  /** `charge.refunded`: takes back credits in proportion to the refunded share (amount_refunded is cumulative). */
  async chargeRefunded(charge: Stripe.Charge): Promise<{ clawedBack: number }> {
    const purchase = await this.byPaymentIntent(charge.payment_intent);
    if (!purchase || purchase.creditedAt === null || purchase.amountTotal <= 0) return { clawedBack: 0 };
    const refunded = Math.min(charge.amount_refunded, purchase.amountTotal);
    const target = proportion(purchase.credits, refunded, purchase.amountTotal);

    for (let current = purchase; ; ) {
      if (current.refundClawback >= target) return { clawedBack: 0 };
      const delta = target - current.refundClawback;
      const adjustment: PurchaseAdjustment = {
        key: `refund:${current.id}:${target}`,
        kind: 'clawback',
        amount: -delta,
        ref: { checkoutSessionId: current.id, chargeObjectId: charge.id, note: `refunded ${refunded} of ${current.amountTotal}` },
      };
      const before = await this.core.ledger.db(() =>
        this.core.store.updatePurchase(
          current.id,
          { refundClawbackBelow: target, refundClawbackIs: current.refundClawback },
          { set: { refundClawback: target, amountRefunded: refunded }, pushAdjustment: adjustment },
        ),
      );
      if (before) {
        await this.applyAdjustment(current, adjustment);
        return { clawedBack: delta };
      }
      const fresh = await this.core.ledger.db(() => this.core.store.getPurchase(current.id));
      if (!fresh) return { clawedBack: 0 };
      current = fresh; // another delivery moved it first; decide again on what it left
    }
  }

  /** `charge.dispute.created`: takes back what is left of the purchase. */
  async disputeCreated(dispute: Stripe.Dispute): Promise<{ clawedBack: number }> {
    const purchase = await this.byPaymentIntent(dispute.payment_intent);
    if (!purchase || purchase.creditedAt === null) return { clawedBack: 0 };
    const held = purchase.disputes.filter((d) => d.status !== 'won').reduce((s, d) => s + d.clawback, 0);
    const amount = Math.max(0, purchase.credits - purchase.refundClawback - held);
    const adjustment: PurchaseAdjustment = {
      key: `dispute:${dispute.id}`,
      kind: 'clawback',
      amount: -amount,
      ref: { checkoutSessionId: purchase.id, disputeId: dispute.id, note: 'payment disputed' },
    };
    const before = await this.core.ledger.db(() =>
      this.core.store.updatePurchase(
        purchase.id,
        { withoutDispute: dispute.id },
        { addDispute: { id: dispute.id, clawback: amount, status: 'open' }, pushAdjustment: adjustment },
      ),
    );
    if (!before) return { clawedBack: 0 };
    await this.applyAdjustment(purchase, adjustment);
    return { clawedBack: amount };
  }

  /** `charge.dispute.closed`: a dispute won gives back what it took; a lost one is recorded. */
  async disputeClosed(dispute: Stripe.Dispute): Promise<{ restored: number }> {
    const purchase = await this.byPaymentIntent(dispute.payment_intent);
    const record = purchase?.disputes.find((d) => d.id === dispute.id);
    if (!purchase || !record || record.status !== 'open') return { restored: 0 };
    const won = dispute.status === 'won';
    const adjustment: PurchaseAdjustment = {
      key: `dispute-won:${dispute.id}`,
      kind: 'reversal',
      amount: record.clawback,
      ref: { checkoutSessionId: purchase.id, disputeId: dispute.id, note: 'dispute won' },
    };
    const before = await this.core.ledger.db(() =>
      this.core.store.updatePurchase(
        purchase.id,
        { disputeInStatus: { id: dispute.id, status: 'open' } },
        { setDisputeStatus: { id: dispute.id, status: won ? 'won' : 'lost' }, ...(won ? { pushAdjustment: adjustment } : {}) },
      ),
    );
    if (!before || !won) return { restored: 0 };
    await this.applyAdjustment(purchase, adjustment);
    return { restored: record.clawback };
  }

  /** Applies a recorded adjustment to the ledger (once, by its key) and clears it from the purchase. */
  async applyAdjustment(purchase: Pick<Purchase, 'id' | 'userId'>, adjustment: PurchaseAdjustment): Promise<void> {
    const { ledger, store } = this.core;
    await ledger.fault('after-purchase-update');
    if (adjustment.amount !== 0) {
      await ledger.applyOnceSettled(
        purchase.userId,
        adjustment.key,
        { kind: adjustment.kind, amount: adjustment.amount, ref: adjustment.ref },
        { create: true },
      );
    }
    await ledger.db(() => store.updatePurchase(purchase.id, {}, { pullAdjustment: adjustment }));
  }

  /** Finishes adjustments a crash left recorded but not applied. */
  async reconcile(batch: number): Promise<number> {
    const purchases = await this.core.ledger.db(() => this.core.store.purchasesWithPendingAdjustments(batch));
    let n = 0;
    for (const p of purchases) {
      for (const adjustment of p.pendingAdjustments) {
        await this.applyAdjustment(p, adjustment);
        n++;
      }
    }
    return n;
  }

  private async byPaymentIntent(pi: string | Stripe.PaymentIntent | null): Promise<Purchase | null> {
    const id = typeof pi === 'string' ? pi : pi?.id;
    if (!id) return null;
    return this.core.ledger.db(() => this.core.store.findPurchaseByPaymentIntent(id));
  }
}

/** round(credits × part / whole) in exact integer arithmetic; part = whole gives exactly `credits`. */
export function proportion(credits: number, part: number, whole: number): number {
  const n = BigInt(credits) * BigInt(part) * 2n + BigInt(whole);
  return Number(n / (BigInt(whole) * 2n));
}
