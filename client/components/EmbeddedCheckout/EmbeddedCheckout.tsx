import { forwardRef, useEffect, useRef, useState, type HTMLAttributes } from 'react';
import { CreditsRequestError } from '../../core/errors';
import { intentKey } from '../../core/request';
import type { CheckoutItem } from '../../core/types';
import { useCheckoutSession } from '../../hooks/use-checkout';
import { useLatest } from '../../hooks/use-latest';
import { cx } from '../cx';

/**
 * What the component needs of Stripe.js: a `Stripe` instance from `loadStripe` (@stripe/stripe-js) fits.
 * Declared here, not taken from @stripe/stripe-js, so that the kit's types compile in an app without it.
 */
export interface EmbeddedCheckoutStripe {
  createEmbeddedCheckoutPage(options: {
    fetchClientSecret?: () => Promise<string>;
    onComplete?: () => void;
  }): Promise<EmbeddedCheckoutInstance>;
}

/** The Embedded Checkout that `createEmbeddedCheckoutPage` resolves to, as the component uses it. */
export interface EmbeddedCheckoutInstance {
  mount(location: string | HTMLElement): void;
  destroy(): void;
}

export type EmbeddedCheckoutProps = Omit<HTMLAttributes<HTMLDivElement>, 'onError'> &
  CheckoutItem & {
    /** A Stripe.js instance, or the promise `loadStripe(publishableKey)` returns. */
    stripe: EmbeddedCheckoutStripe | null | Promise<EmbeddedCheckoutStripe | null>;
    /** The payment went through (only when the session does not redirect on completion). */
    onComplete?: () => void;
    onError?: (error: CreditsRequestError) => void;
  };

/**
 * Stripe's Embedded Checkout inside the page: creates a session with `ui: "embedded"` and mounts
 * `stripe.createEmbeddedCheckoutPage({ fetchClientSecret })` in a <div> React does not otherwise touch.
 */
export const EmbeddedCheckout = forwardRef<HTMLDivElement, EmbeddedCheckoutProps>(function EmbeddedCheckout(
  { stripe, quantity, bundle, onComplete, onError, className, ...props },
  ref,
) {
  const { create, error, setError, fail, revalidate } = useCheckoutSession('EmbeddedCheckout', onError);
  const mountRef = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<'loading' | 'ready' | 'error'>('loading');
  const latest = useLatest({ onComplete, revalidate });
  const item = JSON.stringify(bundle !== undefined ? { bundle } : { quantity });
  // One key per item: React's development double effects reuse the same session instead of creating two.
  const intent = useRef({ item, key: intentKey() });
  if (intent.current.item !== item) intent.current = { item, key: intentKey() };

  // Stripe.js allows one Embedded Checkout at a time: a run starts once the previous one's is destroyed.
  const previous = useRef<Promise<void>>(Promise.resolve());

  useEffect(() => {
    let cancelled = false;
    let checkout: EmbeddedCheckoutInstance | undefined;
    let release = () => {};
    const prior = previous.current;
    previous.current = new Promise<void>((resolve) => (release = resolve));
    const { key } = intent.current;
    setState('loading');
    setError(null);
    (async () => {
      await prior;
      const instance = await stripe;
      if (cancelled) return;
      if (!instance) throw new CreditsRequestError(0, 'stripe_unavailable', 'Stripe.js could not be loaded.');
      const created = await instance.createEmbeddedCheckoutPage({
        fetchClientSecret: async () => {
          const session = await create(JSON.parse(item) as CheckoutItem, 'embedded', key);
          if (!session.clientSecret) throw new CreditsRequestError(201, 'bad_response', 'The server did not return a client secret.');
          return session.clientSecret;
        },
        onComplete: () => {
          void latest.current.revalidate();
          latest.current.onComplete?.();
        },
      });
      if (cancelled || !mountRef.current) return created.destroy();
      checkout = created;
      created.mount(mountRef.current);
      setState('ready');
    })()
      .catch((err: unknown) => {
        if (cancelled) return;
        fail(err, 'stripe_error', 'Checkout could not be shown.');
        setState('error');
      })
      .finally(() => checkout || release());
    return () => {
      cancelled = true;
      if (checkout) {
        checkout.destroy();
        release();
      }
    };
  }, [stripe, create, fail, setError, item, latest]);

  return (
    <div ref={ref} className={cx('ck-embedded', className)} data-state={state} aria-busy={state === 'loading' || undefined} {...props}>
      {state === 'loading' && <p className="ck-status">Loading checkout…</p>}
      {error && (
        <p role="alert" className="ck-error">
          {error.message}
        </p>
      )}
      <div ref={mountRef} className="ck-embedded-mount" />
    </div>
  );
});
