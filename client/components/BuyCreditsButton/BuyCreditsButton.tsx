import { forwardRef, type ButtonHTMLAttributes, type ReactNode } from 'react';
import { useCheckout, type UseCheckoutOptions } from '../../hooks/use-checkout';
import { useCredits } from '../../hooks/use-credits';
import type { CheckoutItem } from '../../core/types';
import { cx, formatNumber } from '../cx';

export type BuyCreditsButtonProps = Omit<ButtonHTMLAttributes<HTMLButtonElement>, 'onError'> &
  UseCheckoutOptions &
  CheckoutItem & {
    /** The label; default `Buy 100 credits` (or `Buy credits` for a bundle). */
    children?: ReactNode;
  };

/**
 * A real <button> that creates a Checkout Session and sends the browser to Stripe. While the session is
 * being created it is disabled and aria-busy; a failure is shown beside it with role="alert".
 */
export const BuyCreditsButton = forwardRef<HTMLButtonElement, BuyCreditsButtonProps>(function BuyCreditsButton(
  { quantity, bundle, redirect, onError, onSession, children, className, disabled, onClick, type = 'button', ...props },
  ref,
) {
  const { creditName } = useCredits();
  const { checkout, isPending, error } = useCheckout({ redirect, onError, onSession });
  return (
    <>
      <button
        ref={ref}
        type={type}
        className={cx('ck-button', className)}
        disabled={disabled || isPending}
        aria-busy={isPending || undefined}
        onClick={(e) => {
          onClick?.(e);
          if (!e.defaultPrevented) void checkout(bundle !== undefined ? { bundle } : { quantity: quantity ?? 0 });
        }}
        {...props}
      >
        {children ?? (bundle !== undefined ? `Buy ${creditName}` : `Buy ${formatNumber(quantity ?? 0)} ${creditName}`)}
      </button>
      {error && (
        <span role="alert" className="ck-error">
          {error.message}
        </span>
      )}
    </>
  );
});
