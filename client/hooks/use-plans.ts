import { useCallback, useEffect, useRef, useState } from 'react';
import useSWR from 'swr';
import { CreditsRequestError } from '../core/errors';
import { PLAN } from '../core/keys';
import { intentKey } from '../core/request';
import type { BillingPortalSession, PlanList, SubscriptionCheckoutCreated, UserPlan } from '../core/types';
import { useCreditsContext } from '../provider/context';
import { useLatest } from './use-latest';

export interface UsePlansResult {
  /** The app's plans (GET /credits/plans); undefined until the first answer. */
  plans: PlanList['plans'] | undefined;
  isLoading: boolean;
  error: CreditsRequestError | undefined;
}

/** The app's subscription plans (public, changes rarely). */
export function usePlans(): UsePlansResult {
  const { api } = useCreditsContext('usePlans');
  const { data, error, isLoading } = useSWR<PlanList, CreditsRequestError>(['credit-kit', api.base, 'plans'], () => api.get<PlanList>('/credits/plans'), {
    revalidateOnFocus: false,
  });
  return { plans: data?.plans, isLoading, error };
}

export interface UsePlanResult {
  /** The user's subscription (GET /credits/plan): `{ plan: null }` when none; undefined until the first answer. */
  subscription: UserPlan | undefined;
  isLoading: boolean;
  error: CreditsRequestError | undefined;
}

/** The signed-in user's plan, status and current period; asked again on focus and with the balance. */
export function usePlan(): UsePlanResult {
  const { api } = useCreditsContext('usePlan');
  const { data, error, isLoading } = useSWR<UserPlan, CreditsRequestError>(['credit-kit', api.base, PLAN], () => api.get<UserPlan>('/credits/plan'));
  return { subscription: data, isLoading, error };
}

export interface RedirectOptions {
  /** Sends the browser to Stripe's page. Default `window.location.assign(url)`. */
  redirect?: (url: string) => void;
  onError?: (error: CreditsRequestError) => void;
}

export interface UseRedirectResult<A extends unknown[]> {
  /** Asks the server for Stripe's page and goes there. Ignored while one is being asked for. */
  start(...args: A): Promise<void>;
  /** True from the click until the browser leaves (or the request fails). */
  isPending: boolean;
  error: CreditsRequestError | null;
}

/** POST a route that answers `{ url }`, then go there: one request per click, busy until the page leaves. */
function useRedirect<A extends unknown[]>(caller: string, path: string, body: (...args: A) => unknown, options: RedirectOptions): UseRedirectResult<A> {
  const { api } = useCreditsContext(caller);
  const latest = useLatest(options);
  const busy = useRef(false);
  const [isPending, setPending] = useState(false);
  const [error, setError] = useState<CreditsRequestError | null>(null);
  useEffect(() => {
    // Back from Stripe through the bfcache: the button is usable again.
    const onShow = (e: PageTransitionEvent) => e.persisted && setPending((busy.current = false));
    window.addEventListener('pageshow', onShow);
    return () => window.removeEventListener('pageshow', onShow);
  }, []);
  const start = useCallback(
    async (...args: A) => {
      if (busy.current) return;
      busy.current = true;
      setPending(true);
      setError(null);
      try {
        const { url } = await api.post<{ url: string | null }>(path, body(...args), { 'Idempotency-Key': intentKey() });
        if (!url || !/^https?:\/\//i.test(url)) throw new CreditsRequestError(200, 'bad_response', 'The server did not return a checkout URL.');
        (latest.current.redirect ?? ((u: string) => window.location.assign(u)))(url);
      } catch (err) {
        busy.current = false;
        setPending(false);
        const e = err instanceof CreditsRequestError ? err : new CreditsRequestError(0, 'internal', String(err));
        setError(e);
        latest.current.onError?.(e);
      }
    },
    [api, path, body, latest],
  );
  return { start, isPending, error };
}

const planBody = (plan: string) => ({ plan });
const noBody = () => ({});

/** Subscribes to a plan: a Checkout Session in subscription mode, then Stripe's page. */
export function useSubscribe(options: RedirectOptions = {}): UseRedirectResult<[plan: string]> {
  return useRedirect<[string]>('useSubscribe', '/credits/subscribe', planBody, options);
}

/** Opens the Stripe customer portal (change plan, payment method, cancel). */
export function useBillingPortal(options: RedirectOptions = {}): UseRedirectResult<[]> {
  return useRedirect<[]>('useBillingPortal', '/credits/portal', noBody, options);
}

export type { BillingPortalSession, SubscriptionCheckoutCreated };
