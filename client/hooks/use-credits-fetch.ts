import { useCallback, useMemo, useState } from 'react';
import type { FetchLike } from '../core/request';
import type { InsufficientCredits, InsufficientCreditsBody } from '../core/types';
import { useCreditsContext } from '../provider/context';

export interface UseCreditsFetchResult {
  /**
   * `fetch` for the app's guarded routes (those behind requireCredits), through the provider's fetch.
   * It resolves like fetch (a 402 is a Response, not an exception); the kit revalidates the balance after
   * every answer and records a 402 in `insufficient`.
   */
  fetch: FetchLike;
  /** Set by a 402 `insufficient_credits` answer; cleared by the next success or by `dismiss`. */
  insufficient: InsufficientCredits | null;
  dismiss(): void;
}

export function useCreditsFetch(): UseCreditsFetchResult {
  const { api, revalidate } = useCreditsContext('useCreditsFetch');
  const [insufficient, setInsufficient] = useState<InsufficientCredits | null>(null);

  const fetch = useCallback<FetchLike>(
    async (input, init) => {
      const res = await api.fetch(input, init);
      if (res.status === 402) {
        // Checked before use: a 402 may come from something other than requireCredits.
        const body = (await res.clone().json().catch(() => null)) as { error?: Partial<InsufficientCreditsBody['error']> } | null;
        const e = body?.error;
        if (e?.code === 'insufficient_credits' && typeof e.required === 'number' && typeof e.balance === 'number') {
          setInsufficient({ required: e.required, balance: e.balance, message: String(e.message ?? '') });
        }
      } else if (res.ok) {
        setInsufficient(null);
      }
      // Whatever the answer, the balance may have moved (a charge, a refund after a failure, someone else's spend).
      void revalidate();
      return res;
    },
    [api, revalidate],
  );
  const dismiss = useCallback(() => setInsufficient(null), []);
  return useMemo(() => ({ fetch, insufficient, dismiss }), [fetch, insufficient, dismiss]);
}
