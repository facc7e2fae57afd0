import { useCallback, useEffect, useRef, useState } from 'react';
import { CreditsRequestError, type CreditsRequestErrorCode } from '../core/errors';
import { intentKey } from '../core/request';
import type { CheckoutItem, CheckoutRequestBody, CheckoutSessionCreated, CheckoutUi, HostedCheckoutSession } from '../core/types';
import { useCreditsContext } from '../provider/context';
import { useLatest } from './use-latest';

export interface UseCheckoutOptions {
  /** Sends the browser to Stripe's page. Default `window.location.assign(url)`. */
  redirect?: (url: string) => void;
  onError?: (error: CreditsRequestError) => void;
  /** Called with the new session just before the redirect. */
  onSession?: (session: HostedCheckoutSession & { url: string }) => void;
}

export interface UseCheckoutResult {
  /** Creates a Checkout Session and redirects to it. Ignored while one is already being created. */
  checkout(item: CheckoutItem): Promise<void>;
  /** True from the click until the browser leaves (or the request fails). */
  isPending: boolean;
  error: CreditsRequestError | null;
  reset(): void;
}

/**
 * What the hosted and the embedded checkout share (useCheckout, EmbeddedCheckout): the session request, sent
 * under the Idempotency-Key of one intent so a retried request still creates one session, and the failure
 * state, also reported to `onError`.
 */
export function useCheckoutSession(caller: string, onError: ((error: CreditsRequestError) => void) | undefined) {
  const { api, revalidate } = useCreditsContext(caller);
  const latest = useLatest(onError);
  const [error, setError] = useState<CreditsRequestError | null>(null);
  const create = useCallback(
    <U extends CheckoutUi>(item: CheckoutItem, ui: U, key: string): Promise<CheckoutSessionCreated<U>> => {
      const body: CheckoutRequestBody = item.bundle !== undefined ? { bundle: item.bundle } : { quantity: item.quantity };
      return api.post('/stripe/checkout/credits', ui === 'hosted' ? body : { ...body, ui }, { 'Idempotency-Key': key });
    },
    [api],
  );
  /** Records and reports a failure; anything that is not a CreditsRequestError becomes one with `code`. */
  const fail = useCallback(
    (err: unknown, code: CreditsRequestErrorCode, fallback: string) => {
      const e = err instanceof CreditsRequestError ? err : new CreditsRequestError(0, code, err instanceof Error ? err.message : fallback, {}, err);
      setError(e);
      latest.current?.(e);
    },
    [latest],
  );
  return { create, error, setError, fail, revalidate };
}

const assign = (url: string) => window.location.assign(url);

/** Hosted Checkout: POST the item, then go to the session's URL. One session per click intent. */
export function useCheckout(options: UseCheckoutOptions = {}): UseCheckoutResult {
  const { create, error, setError, fail } = useCheckoutSession('useCheckout', options.onError);
  const latest = useLatest(options);
  const busy = useRef(false);
  const [isPending, setPending] = useState(false);

  const reset = useCallback(() => {
    busy.current = false;
    setPending(false);
    setError(null);
  }, [setError]);

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
        // One key per click intent.
        const session = await create(item, 'hosted', intentKey());
        const { url } = session;
        if (!url || !/^https?:\/\//i.test(url)) {
          throw new CreditsRequestError(200, 'bad_response', 'The server did not return a checkout URL.');
        }
        latest.current.onSession?.(session as HostedCheckoutSession & { url: string });
        (latest.current.redirect ?? assign)(url);
      } catch (err) {
        busy.current = false;
        setPending(false);
        fail(err, 'internal', String(err));
      }
    },
    [create, fail, setError, latest],
  );

  return { checkout, isPending, error, reset };
}
