import { useEffect, useRef, useState } from 'react';
import useSWR from 'swr';
import type { CreditsRequestError } from '../core/errors';
import { sessionKey, type SessionKey } from '../core/keys';
import type { CheckoutSessionResult } from '../core/types';
import { useCreditsContext } from '../provider/context';
import { useLatest } from './use-latest';

export interface UseCheckoutReturnOptions {
  /** The Checkout Session id; default: the `session_id` query parameter of the page's URL. */
  sessionId?: string | null;
  /** How often to ask again while the payment is still processing, in ms. Default 3000; 0 to stop. */
  pollInterval?: number;
  /** Called once when the session is paid and its credits are in the balance. */
  onPaid?: (result: CheckoutSessionResult) => void;
}

export interface UseCheckoutReturnResult {
  /** Null until known (always null during server rendering) and when the URL has none. */
  sessionId: string | null;
  result: CheckoutSessionResult | undefined;
  isLoading: boolean;
  error: CreditsRequestError | undefined;
}

/** The page Stripe returns to: confirms the purchase with the server (which credits it) and refreshes the balance. */
export function useCheckoutReturn(options: UseCheckoutReturnOptions = {}): UseCheckoutReturnResult {
  const { api, revalidate } = useCreditsContext('useCheckoutReturn');
  const latest = useLatest(options);
  const [fromUrl, setFromUrl] = useState<string | null>(null);
  // window is read in an effect, never while rendering, so server rendering works and hydration matches.
  useEffect(() => {
    if (options.sessionId === undefined) setFromUrl(new URLSearchParams(window.location.search).get('session_id'));
  }, [options.sessionId]);
  const sessionId = options.sessionId === undefined ? fromUrl : options.sessionId;

  const poll = options.pollInterval ?? 3000;
  const { data, error, isLoading } = useSWR<CheckoutSessionResult, CreditsRequestError>(
    sessionKey(api.base, sessionId),
    ([, , , id]: SessionKey) => api.get<CheckoutSessionResult>(`/stripe/checkout/session/${encodeURIComponent(id)}`),
    {
      revalidateOnFocus: false,
      shouldRetryOnError: (err) => err.status === 0 || err.status >= 500,
      refreshInterval: (latestData) => (latestData?.status === 'awaiting_payment' ? poll : 0),
    },
  );

  const paidFor = useRef<string | null>(null);
  useEffect(() => {
    if (data?.status !== 'paid' || paidFor.current === data.id) return;
    paidFor.current = data.id;
    void revalidate();
    latest.current.onPaid?.(data);
  }, [data, revalidate, latest]);

  return { sessionId, result: data, isLoading, error };
}
