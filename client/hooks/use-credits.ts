import { useCallback } from 'react';
import useSWR from 'swr';
import type { CreditsRequestError } from '../core/errors';
import { balanceKey, grantsKey, pricingKey } from '../core/keys';
import type { Balance, BalanceDetails, Pricing } from '../core/types';
import { useCreditsContext } from '../provider/context';

export interface UseCreditsResult {
  /** Undefined until the first answer (and while signed out). */
  balance: number | undefined;
  /** The server's word for credits; `credits` until it has answered. */
  creditName: string;
  isLoading: boolean;
  error: CreditsRequestError | undefined;
  /** Asks the server again; resolves when it has answered. */
  refresh(): Promise<void>;
}

/** The signed-in user's balance, kept fresh on focus and after every purchase or spend the kit sees. */
export function useCredits(): UseCreditsResult {
  const { api, revalidate } = useCreditsContext('useCredits');
  const { data, error, isLoading } = useSWR<Balance, CreditsRequestError>(balanceKey(api.base), () =>
    api.get<Balance>('/credits/balance'),
  );
  // Refreshing the balance refreshes the history too: they change together.
  const refresh = useCallback(() => revalidate(), [revalidate]);
  return { balance: data?.balance, creditName: data?.creditName ?? 'credits', isLoading, error, refresh };
}

export interface UsePricingResult {
  pricing: Pricing | undefined;
  isLoading: boolean;
  error: CreditsRequestError | undefined;
}

/** The server's price per credit, purchase limits and bundles (public, changes rarely). */
export function usePricing(): UsePricingResult {
  const { api } = useCreditsContext('usePricing');
  const { data, error, isLoading } = useSWR<Pricing, CreditsRequestError>(
    pricingKey(api.base),
    () => api.get<Pricing>('/credits/pricing'),
    { revalidateOnFocus: false },
  );
  return { pricing: data, isLoading, error };
}

export interface UseBalanceDetailsResult {
  /** The balance by grant and source, and `nextExpiry`; undefined until the first answer. */
  details: BalanceDetails | undefined;
  isLoading: boolean;
  error: CreditsRequestError | undefined;
}

/** GET /credits/grants, refreshed with the balance. `enabled: false` asks nothing (for optional use). */
export function useBalanceDetails(enabled = true): UseBalanceDetailsResult {
  const { api } = useCreditsContext('useBalanceDetails');
  const { data, error, isLoading } = useSWR<BalanceDetails, CreditsRequestError>(enabled ? grantsKey(api.base) : null, () =>
    api.get<BalanceDetails>('/credits/grants'),
  );
  return { details: data, isLoading, error };
}
