import { forwardRef, type HTMLAttributes } from 'react';
import { useCredits } from '../../hooks/use-credits';
import { cx, formatNumber } from '../cx';

export interface BalanceBadgeProps extends HTMLAttributes<HTMLSpanElement> {
  /** At or below this balance the badge says so and gets `data-state="low"` / `ck-badge--low`. */
  lowBalanceThreshold?: number;
}

/** The balance with the credit name, announced politely to screen readers when it changes. */
export const BalanceBadge = forwardRef<HTMLSpanElement, BalanceBadgeProps>(function BalanceBadge(
  { lowBalanceThreshold, className, ...props },
  ref,
) {
  const { balance, creditName, isLoading, error } = useCredits();
  let state: 'loading' | 'error' | 'low' | 'ok';
  let text: string;
  // A failed revalidation keeps showing the last known balance, except when the user is signed out.
  if (error && (balance === undefined || error.status === 401)) {
    state = 'error';
    text = error.status === 401 ? `Sign in to see your ${creditName}` : `Could not load your ${creditName}`;
  } else if (balance !== undefined) {
    const low = lowBalanceThreshold !== undefined && balance <= lowBalanceThreshold;
    state = low ? 'low' : 'ok';
    text = `${formatNumber(balance)} ${creditName}${low ? ' (low balance)' : ''}`;
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
