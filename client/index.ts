'use client';
/**
 * credit-kit/client: React hooks and headless components that show and sell credits.
 *
 *   <CreditsProvider apiBase="/api">
 *     <BalanceBadge lowBalanceThreshold={10} />
 *     <BuyCreditsButton quantity={100} />
 *   </CreditsProvider>
 *
 * Optional styles: import 'credit-kit/client/styles.css' (ck- classes, --ck- variables).
 */
export { CreditsProvider, type CreditsProviderProps } from './provider/CreditsProvider';
export { useCredits, usePricing, useBalanceDetails, type UseCreditsResult, type UsePricingResult, type UseBalanceDetailsResult } from './hooks/use-credits';
export { useCreditsFetch, type UseCreditsFetchResult } from './hooks/use-credits-fetch';
export { useCheckout, type UseCheckoutOptions, type UseCheckoutResult } from './hooks/use-checkout';
export {
  useCheckoutReturn,
  type UseCheckoutReturnOptions,
  type UseCheckoutReturnResult,
} from './hooks/use-checkout-return';
export { useCreditHistory, type UseCreditHistoryResult } from './hooks/use-credit-history';
export {
  usePlans,
  usePlan,
  useSubscribe,
  useBillingPortal,
  type UsePlansResult,
  type UsePlanResult,
  type RedirectOptions,
  type UseRedirectResult,
} from './hooks/use-plans';
export {
  PlanPicker,
  SubscribeButton,
  ManageBillingButton,
  type PlanPickerProps,
  type SubscribeButtonProps,
  type ManageBillingButtonProps,
} from './components/PlanPicker/PlanPicker';
export { useAutoRecharge, type UseAutoRechargeResult } from './hooks/use-auto-recharge';
export { AutoRechargeSettings, type AutoRechargeSettingsProps } from './components/AutoRechargeSettings/AutoRechargeSettings';
export { AutoRechargeAction, type AutoRechargeActionProps, type AutoRechargeStripe } from './components/AutoRechargeAction/AutoRechargeAction';
export { BalanceBadge, type BalanceBadgeProps } from './components/BalanceBadge/BalanceBadge';
export { BuyCreditsButton, type BuyCreditsButtonProps } from './components/BuyCreditsButton/BuyCreditsButton';
export { BuyCreditsForm, type BuyCreditsFormProps } from './components/BuyCreditsForm/BuyCreditsForm';
export { CreditHistory, type CreditHistoryProps } from './components/CreditHistory/CreditHistory';
export { CheckoutReturn, type CheckoutReturnProps } from './components/CheckoutReturn/CheckoutReturn';
export {
  EmbeddedCheckout,
  type EmbeddedCheckoutProps,
  type EmbeddedCheckoutStripe,
  type EmbeddedCheckoutInstance,
} from './components/EmbeddedCheckout/EmbeddedCheckout';
export { InsufficientCredits, type InsufficientCreditsProps } from './components/InsufficientCredits/InsufficientCredits';
export { CreditsRequestError, type CreditsRequestErrorCode } from './core/errors';
export type { FetchLike } from './core/request';
export type {
  Balance,
  BalanceDetails,
  CreditGrant,
  Pricing,
  PricingBundle,
  PricingCost,
  CreditTransaction,
  TransactionKind,
  TransactionPage,
  CheckoutItem,
  HostedCheckoutSession,
  EmbeddedCheckoutSession,
  CheckoutSessionStatus,
  CheckoutSessionResult,
  Plan,
  PlanList,
  UserPlan,
  CreditsErrorCode,
  TransactionRef,
  InsufficientCredits as InsufficientCreditsState,
  AutoRechargeSettings as AutoRechargeState,
  AutoRechargeChange,
  AutoRechargeAction as AutoRechargeActionInfo,
} from './core/types';
