import { forwardRef, type HTMLAttributes } from 'react';
import { useBalanceDetails, useCredits } from '../../hooks/use-credits';
import { useAutoRechargeThreshold } from '../../hooks/use-auto-recharge';
import { cx, formatNumber } from '../cx';

export interface BalanceBadgeProps extends HTMLAttributes<HTMLSpanElement> {
  /**
   * At or below this balance the badge says so and gets `data-state="low"` / `ck-badge--low`. `'auto-recharge'`:
   * below the user's own auto-recharge threshold, while it is on (one more request, GET /credits/auto-recharge).
   */
  lowBalanceThreshold?: number | 'auto-recharge';
  /** Also say what expires next: "120 credits, 40 expire on Dec 1" (one more request, GET /credits/grants). */
  showExpiry?: boolean;
}

const day = (iso: string) => new Date(iso).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });

/**
 * The balance with the credit name, announced politely to screen readers when it changes; with
 * `showExpiry`, also how many credits expire next and on which day.
 */
export const BalanceBadge = forwardRef<HTMLSpanElement, BalanceBadgeProps>(function BalanceBadge(
  { lowBalanceThreshold, showExpiry = false, className, ...props },
  ref,
) {
  const { balance, creditName, isLoading, error } = useCredits();
  const next = useBalanceDetails(showExpiry).details?.nextExpiry;
  const fromSettings = useAutoRechargeThreshold(lowBalanceThreshold === 'auto-recharge');
  const lowAt = lowBalanceThreshold === 'auto-recharge' ? fromSettings : lowBalanceThreshold;
  let state: 'loading' | 'error' | 'low' | 'ok';
  let text: string;
  // A failed revalidation keeps showing the last known balance, except when the user is signed out.
  if (error && (balance === undefined || error.status === 401)) {
    state = 'error';
    text = error.status === 401 ? `Sign in to see your ${creditName}` : `Could not load your ${creditName}`;
  } else if (balance !== undefined) {
    const low = lowAt !== undefined && balance <= lowAt;
    state = low ? 'low' : 'ok';
    const expiring = next ? `, ${formatNumber(next.amount)} expire on ${day(next.expiresAt)}` : '';
    text = `${formatNumber(balance)} ${creditName}${expiring}${low ? ' (low balance)' : ''}`;
  } else {
    state = 'loading';
    text = `Loading ${creditName}…`;
  }
  return (
    <span
      ref={ref}
      aria-live="polite"
      aria-busy={isLoading || undefined}
      data-state={state}
      className={cx('ck-badge', `ck-badge--${state}`, className)}
      {...props}
    >
      {text}
    </span>
  );
});
