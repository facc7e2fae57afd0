/**
 * What both entries, credit-kit/server (Express) and credit-kit/fetch, export alike: the errors, and the
 * types of the options, the ledger, purchases, the store port and the routes' JSON bodies.
 */
export {
  CreditsError,
  CreditsConfigError,
  InvalidRequestError,
  InvalidAmountError,
  UnauthenticatedError,
  InsufficientCreditsError,
  NotFoundError,
  ConflictError,
  StoreUnavailableError,
  SignatureError,
  PaymentProviderError,
  InvalidUsageError,
  ERROR_CODES,
} from './errors';
export { creditsForUsage } from './domain/prices';
export type { TokenUsage } from './domain/prices';
export { BALANCE_HEADERS, BALANCE_HEADER, CHARGED_HEADER } from './http/balance-headers';
export type { CreditsErrorCode, CreditsErrorBody } from './errors';
export type { PricingOptions, CreditBundle, RefundRule, OveragePolicy, WebhookReport, LowBalanceOptions, NamedCost, NamedCosts, FixedCost, MeteredCost, TokenPrice } from './options';
export type { CreditsLogger, CreditsLogFunction, LogLevel, LogRecord } from './log';
export type { CreditsBase, ReconcileOptions, ExpireGrantsOptions } from './assemble';
export type { CreditsContext, GuardOptions } from './http/guard';
export type { DeductOptions, GrantOptions, GrantResult, RevokeOptions } from './domain/core';
export type { Transaction, TransactionGrant, TransactionPage, ReconcileReport, ExpiryReport, RevokeResult, LedgerHooks } from './ledger';
export type { FulfillmentResult, FulfillmentStatus, PaymentEventResult } from './stripe/purchases';
export type { StripeClientLike, StripeEventLike, StripeCheckoutSessionLike } from './stripe/types';
export type { CreditStore, EntryKind, EntryRef, AccountSnapshot, LedgerEntry, Purchase, LowBalanceAlert, AlertRecord, GrantSource, GrantTerms, GrantPart, GrantBook, OpenGrant, JournalPull } from './store/types';
/** The JSON bodies of the kit's routes, the same types credit-kit/client uses. */
export type {
  Balance,
  BalanceDetails,
  CreditGrant,
  Pricing,
  PricingBundle,
  PricingCost,
  PricingTokenPrice,
  CheckoutUi,
  CheckoutItem,
  CheckoutRequestBody,
  HostedCheckoutSession,
  EmbeddedCheckoutSession,
  CheckoutSessionCreated,
  CheckoutSessionStatus,
  CheckoutSessionResult,
  InsufficientCreditsBody,
  BalanceHeaderNames,
  Plan,
  PlanList,
  SubscribeRequestBody,
  SubscriptionCheckoutCreated,
  BillingPortalSession,
  UserPlan,
} from './http/wire';
export type { PlanOption, PlanOptions } from './stripe/plans';
export type { SubscriptionEventResult } from './stripe/subscriptions';
export type { SubscriptionRecord, SubscriptionPeriod, SubscriptionStatus } from './store/types';
export type { AutoRechargeOptions, AutoRechargeEvent, AutoRechargeSettings } from './stripe/recharge-options';
export type { RechargeEventResult } from './stripe/recharge';
export type { RechargeRecord, RechargeState, RechargeAttempt, RechargeResult, RechargeTopUp, SavedCard } from './domain/recharge';
