import { forwardRef, useId, useState, type FormHTMLAttributes } from 'react';
import { useCheckout, type UseCheckoutOptions } from '../../hooks/use-checkout';
import { usePricing } from '../../hooks/use-credits';
import { cx, formatNumber, formatPrice } from '../cx';

export type BuyCreditsFormProps = Omit<FormHTMLAttributes<HTMLFormElement>, 'onError' | 'onSubmit'> &
  UseCheckoutOptions & {
    /** Quantity shown first; default 100, kept within the server's limits. */
    defaultQuantity?: number;
  };

/** A quantity field, the total at the server's price, and a submit button that goes to Checkout. */
export const BuyCreditsForm = forwardRef<HTMLFormElement, BuyCreditsFormProps>(function BuyCreditsForm(
  { defaultQuantity = 100, redirect, onError, onSession, className, ...props },
  ref,
) {
  const id = useId();
  const { pricing, error: pricingError } = usePricing();
  const { checkout, isPending, error } = useCheckout({ redirect, onError, onSession });
  const [input, setInput] = useState<string | null>(null);

  const min = pricing?.minQuantity ?? 1;
  const max = pricing?.maxQuantity ?? 1;
  const text = input ?? String(Math.min(max, Math.max(min, defaultQuantity)));
  const quantity = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  const valid = Boolean(pricing) && Number.isSafeInteger(quantity) && quantity >= min && quantity <= max;
  const state = pricing ? 'ready' : pricingError ? 'error' : 'loading';

  return (
    <form
      ref={ref}
      className={cx('ck-form', className)}
      data-state={state}
      aria-busy={state === 'loading' || isPending || undefined}
      {...props}
      onSubmit={(e) => {
        e.preventDefault();
        if (valid) void checkout({ quantity });
      }}
    >
      {!pricing ? (
        pricingError ? (
          <p role="alert" className="ck-error">
            Prices could not be loaded: {pricingError.message}
          </p>
        ) : (
          <p className="ck-status">Loading prices…</p>
        )
      ) : (
        <>
          <label htmlFor={`${id}q`} className="ck-label">
            Number of {pricing.creditName}
          </label>
          <input
            id={`${id}q`}
            className="ck-input"
            type="number"
            inputMode="numeric"
            min={min}
            max={max}
            step={1}
            value={text}
            onChange={(e) => setInput(e.target.value)}
            aria-invalid={!valid || undefined}
            aria-describedby={`${id}t`}
          />
          <output id={`${id}t`} htmlFor={`${id}q`} className="ck-total" aria-live="polite">
            {valid
              ? `Total: ${formatPrice(quantity * pricing.creditPriceCents, pricing.currency)}`
              : `Enter a whole number from ${formatNumber(min)} to ${formatNumber(max)}.`}
          </output>
          <button type="submit" className="ck-button" disabled={!valid || isPending} aria-busy={isPending || undefined}>
            {valid ? `Buy ${formatNumber(quantity)} ${pricing.creditName}` : `Buy ${pricing.creditName}`}
          </button>
          {error && (
            <p role="alert" className="ck-error">
              {error.message}
            </p>
          )}
        </>
      )}
    </form>
  );
});
