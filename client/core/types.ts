/** What the kit's server routes answer (credit-kit/server's router). */

export interface Balance {
  balance: number;
  creditName: string;
}

export interface PricingBundle {
  id: string;
  credits: number;
  /** Total price in the smallest currency unit (cents). */
  price: number;
  name: string | null;
}

export interface Pricing {
  creditName: string;
  /** ISO code, lower case (`usd`). */
  currency: string;
  creditPriceCents: number;
  minQuantity: number;
  maxQuantity: number;
  bundles: PricingBundle[];
}

export type TransactionKind = 'purchase' | 'usage' | 'refund' | 'grant' | 'settle' | 'clawback' | 'reversal' | 'adjustment';

export interface CreditTransaction {
  id: string;
  kind: TransactionKind;
  /** Signed: negative spends, positive credits. */
  amount: number;
  balanceAfter: number;
  seq: number;
  /** ISO date. */
  createdAt: string;
  reason?: string;
  ref?: Record<string, string | undefined>;
}

export interface TransactionPage {
  transactions: CreditTransaction[];
  nextCursor: string | null;
  balance: number;
}

/** What to buy: a number of credits, or one of the server's bundles. */
export type CheckoutItem = { quantity: number; bundle?: undefined } | { bundle: string; quantity?: undefined };

export interface HostedCheckoutSession {
  id: string;
  url: string;
  credits: number;
  amount: number;
}

export interface EmbeddedCheckoutSession {
  id: string;
  clientSecret: string;
  credits: number;
  amount: number;
}

export type CheckoutSessionStatus = 'paid' | 'awaiting_payment' | 'failed' | 'open' | 'expired' | 'ignored';

export interface CheckoutSessionResult {
  id: string;
  status: CheckoutSessionStatus;
  paymentStatus: string;
  credits: number;
  creditsAdded: number;
  balance: number;
  creditName: string;
}

/** A guarded route answered 402: what it needed and what the balance was. */
export interface InsufficientCredits {
  required: number;
  balance: number;
  message: string;
}
