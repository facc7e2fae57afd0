import { forwardRef, type HTMLAttributes, type ReactNode } from 'react';
import { usePricing } from '../../hooks/use-credits';
import type { InsufficientCredits as Shortfall } from '../../core/types';
import type { UseCheckoutOptions } from '../../hooks/use-checkout';
import { BuyCreditsButton } from '../BuyCreditsButton/BuyCreditsButton';
import { cx, formatNumber } from '../cx';

export type InsufficientCreditsProps = Omit<HTMLAttributes<HTMLDivElement>, 'onError'> &
  UseCheckoutOptions & {
    /** The state from useCreditsFetch(); nothing is rendered while it is null. */
    insufficient: Shortfall | null;
    /** Shows a "Dismiss" button that calls this. */
    onDismiss?: () => void;
    /** What the buy button buys. Default: the shortfall, at least the server's minimum quantity. */
    quantity?: number;
    bundle?: string;
    /** The buy button's label. */
    buyLabel?: ReactNode;
  };

/** Says that an action needs more credits than the balance holds, and offers to buy them. */
export const InsufficientCredits = forwardRef<HTMLDivElement, InsufficientCreditsProps>(function InsufficientCredits(
  { insufficient, onDismiss, quantity, bundle, buyLabel, redirect, onError, onSession, className, ...props },
  ref,
) {
  const { pricing } = usePricing();
  if (!insufficient) return null;
  const { required, balance } = insufficient;
  const name = pricing?.creditName ?? 'credits';
  const buy =
    bundle !== undefined
      ? { bundle }
      : { quantity: quantity ?? Math.min(pricing?.maxQuantity ?? Infinity, Math.max(required - balance, pricing?.minQuantity ?? 1)) };
  return (
    <div ref={ref} role="alert" className={cx('ck-insufficient', className)} {...props}>
      <p>
        This needs {formatNumber(required)} {name}; your balance is {formatNumber(balance)}.
      </p>
      <BuyCreditsButton {...buy} redirect={redirect} onError={onError} onSession={onSession}>
        {buyLabel}
      </BuyCreditsButton>
      {onDismiss && (
        <button type="button" className="ck-button ck-dismiss" onClick={onDismiss}>
          Dismiss
        </button>
      )}
    </div>
  );
});
