import type { Purchase } from '../domain/types';

/** What the kit records when it creates a Checkout Session. */
export interface CheckoutRecord {
  sessionId: string;
  userId: string;
  credits: number;
  amountTotal: number;
  currency: string;
  livemode: boolean;
}

/** A purchase as first recorded, at checkout: open, nothing known from Stripe yet, nothing credited. */
export function newPurchase(r: CheckoutRecord, now = new Date()): Purchase {
  return {
    id: r.sessionId,
    userId: r.userId,
    credits: r.credits,
    amountTotal: r.amountTotal,
    currency: r.currency,
    livemode: r.livemode,
    status: 'open',
    paymentIntentId: null,
    creditedAt: null,
    facts: { charge: null, refunds: [], disputes: [] },
    granted: 0,
    steps: 0,
    pendingAdjustments: [],
    createdAt: now,
    updatedAt: now,
    version: 0,
  };
}
