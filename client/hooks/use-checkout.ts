import { useCallback, useEffect, useRef, useState } from 'react';
import { CreditsRequestError } from '../core/errors';
import { intentKey } from '../core/request';
import type { CheckoutItem, HostedCheckoutSession } from '../core/types';
import { useCreditsContext } from '../provider/context';
import { useLatest } from './use-latest';

export interface UseCheckoutOptions {
  /** Sends the browser to Stripe's page. Default `window.location.assign(url)`. */
  redirect?: (url: string) => void;
  onError?: (error: CreditsRequestError) => void;
  /** Called with the new session just before the redirect. */
  onSession?: (session: HostedCheckoutSession) => void;
}

export interface UseCheckoutResult {
  /** Creates a Checkout Session and redirects to it. Ignored while one is already being created. */
  checkout(item: CheckoutItem): Promise<void>;
  /** True from the click until the browser leaves (or the request fails). */
  isPending: boolean;
  error: CreditsRequestError | null;
  reset(): void;
}

const assign = (url: string) => window.location.assign(url);

/** Hosted Checkout: POST the item, then go to the session's URL. One session per click intent. */
export function useCheckout(options: UseCheckoutOptions = {}): UseCheckoutResult {
  const { api } = useCreditsContext('useCheckout');
  const latest = useLatest(options);
  const busy = useRef(false);
  const [isPending, setPending] = useState(false);
  const [error, setError] = useState<CreditsRequestError | null>(null);

  const reset = useCallback(() => {
    busy.current = false;
    setPending(false);
    setError(null);
  }, []);

  // Coming back with the Back button restores the page from the bfcache with the button still busy.
  useEffect(() => {
    const onShow = (e: PageTransitionEvent) => e.persisted && reset();
    window.addEventListener('pageshow', onShow);
    return () => window.removeEventListener('pageshow', onShow);
  }, [reset]);

  const checkout = useCallback(
    async (item: CheckoutItem) => {
      // A ref, not state: the second click of a double click arrives before React re-renders the button.
      if (busy.current) return;
      busy.current = true;
      setPending(true);
      setError(null);
      try {
        const session = await api.post<HostedCheckoutSession>(
          '/stripe/checkout/credits',
          item.bundle !== undefined ? { bundle: item.bundle } : { quantity: item.quantity },
          // One key per click intent: a retried request (proxy, flaky network) still creates one session.
          { 'Idempotency-Key': intentKey() },
        );
        if (!/^https?:\/\//i.test(session.url ?? '')) {
          throw new CreditsRequestError(200, 'bad_response', 'The server did not return a checkout URL.');
        }
        latest.current.onSession?.(session);
        (latest.current.redirect ?? assign)(session.url);
      } catch (err) {
        const e = err instanceof CreditsRequestError ? err : new CreditsRequestError(0, 'internal', err instanceof Error ? err.message : String(err), {}, err);
        busy.current = false;
        setPending(false);
        setError(e);
        latest.current.onError?.(e);
      }
    },
    [api, latest],
  );

  return { checkout, isPending, error, reset };
}
