import { forwardRef, type HTMLAttributes } from 'react';
import { useCheckoutReturn, type UseCheckoutReturnOptions } from '../../hooks/use-checkout-return';
import type { CheckoutSessionStatus } from '../../core/types';
import { cx, formatNumber } from '../cx';

export type CheckoutReturnProps = HTMLAttributes<HTMLDivElement> & UseCheckoutReturnOptions;

const MESSAGES: Record<Exclude<CheckoutSessionStatus, 'paid'>, string> = {
  awaiting_payment: 'Your payment is processing; the credits are added as soon as it clears.',
  open: 'This checkout was not completed.',
  expired: 'This checkout expired before it was paid.',
  failed: 'The payment did not go through.',
  ignored: 'This checkout is not a credits purchase.',
};

/**
 * For the page Stripe returns to (`?session_id=cs_…`): confirms the purchase, says how many credits were
 * added and refreshes the balance. Renders nothing when the URL has no session id.
 */
export const CheckoutReturn = forwardRef<HTMLDivElement, CheckoutReturnProps>(function CheckoutReturn(
  { sessionId, pollInterval, onPaid, className, ...props },
  ref,
) {
  const { sessionId: id, result, error } = useCheckoutReturn({ sessionId, pollInterval, onPaid });
  if (!id) return null;
  const state = error ? 'error' : result ? result.status : 'loading';
  return (
    <div ref={ref} className={cx('ck-return', `ck-return--${state}`, className)} data-state={state} {...props}>
      {error ? (
        <p role="alert" className="ck-error">
          {error.status === 404 ? 'We could not find this purchase for your account.' : error.message}
        </p>
      ) : (
        <p role="status" className="ck-status">
          {!result
            ? 'Confirming your purchase…'
            : result.status === 'paid'
              ? `${formatNumber(result.credits)} ${result.creditName} added. Your balance is ${formatNumber(result.balance)}.`
              : MESSAGES[result.status]}
        </p>
      )}
    </div>
  );
});
