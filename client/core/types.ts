/**
 * What the kit's server routes answer: the wire types credit-kit/server's router is checked against
 * (server/http/wire.ts), imported as types only so nothing of the server reaches the bundle. The client's
 * own names for them, and the few shapes that exist only in the browser, are declared here.
 */
import type { EntryKind, InsufficientCreditsBody, Transaction } from '../../server/http/wire';

export type {
  Balance,
  BalanceHeaderNames,
  BalanceDetails,
  CreditGrant,
  CheckoutItem,
  CheckoutRequestBody,
  CheckoutSessionCreated,
  CheckoutSessionResult,
  CheckoutSessionStatus,
  CheckoutUi,
  CreditsErrorCode,
  EmbeddedCheckoutSession,
  EntryRef as TransactionRef,
  ErrorBody,
  HostedCheckoutSession,
  InsufficientCreditsBody,
  Pricing,
  PricingBundle,
  PricingCost,
  TransactionPage,
  Plan,
  PlanList,
  UserPlan,
  SubscriptionCheckoutCreated,
  BillingPortalSession,
} from '../../server/http/wire';

/** The kinds of ledger entry, as the server names them. */
export type TransactionKind = EntryKind;

/** One ledger entry of GET /credits/transactions. */
export type CreditTransaction = Transaction;

/** A guarded route answered 402: what it needed and what the balance was. */
export type InsufficientCredits = Pick<InsufficientCreditsBody['error'], 'required' | 'balance' | 'message'>;

export type { AutoRechargeSettings, AutoRechargeChange, AutoRechargeAction } from '../../server/stripe/recharge-options';
