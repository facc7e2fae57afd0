import { useCallback, useMemo, useRef, useState } from 'react';
import type { FetchLike } from '../core/request';
import type { BalanceHeaderNames, InsufficientCredits, InsufficientCreditsBody } from '../core/types';
import { useCreditsContext } from '../provider/context';

export interface UseCreditsFetchResult {
  /**
   * `fetch` for the app's guarded routes (those behind requireCredits or withCredits), through the
   * provider's fetch. It resolves like fetch (a 402 is a Response, not an exception). The balance shown is
   * updated from the answer itself: its `Credits-Balance` header, or a 402's body; only an answer with
   * neither (a route that is not guarded, or a cross-origin API that does not expose the header) makes the
   * kit ask the server again. A 402 is recorded in `insufficient`.
   */
  fetch: FetchLike;
  /** Set by a 402 `insufficient_credits` answer; cleared by the next success or by `dismiss`. */
  insufficient: InsufficientCredits | null;
  dismiss(): void;
}

const BALANCE_HEADER: BalanceHeaderNames['balance'] = 'Credits-Balance';

export function useCreditsFetch(): UseCreditsFetchResult {
  const { api, revalidate } = useCreditsContext('useCreditsFetch');
  const [insufficient, setInsufficient] = useState<InsufficientCredits | null>(null);
  // Answers of calls that overlap may arrive out of order, each with the balance as of its own charge.
  const flight = useRef({ open: 0, overlapped: false });

  const fetch = useCallback<FetchLike>(
    async (input, init) => {
      const calls = flight.current;
      calls.overlapped ||= calls.open++ > 0;
      const res = await api.fetch(input, init).finally(() => calls.open--);
      // The last of overlapping calls asks the server once, so an older answer's balance does not stay shown.
      const reread = !calls.open && calls.overlapped;
      if (reread) calls.overlapped = false;
      // A whole number (negative with the `debt` overage policy); NaN when absent or not one.
      const header = res.headers.get(BALANCE_HEADER);
      let told = header ? Number(header) : NaN;
      if (res.status === 402) {
        // Checked before use: a 402 may come from something other than the kit's guard.
        const body = (await res.clone().json().catch(() => null)) as { error?: Partial<InsufficientCreditsBody['error']> } | null;
        const e = body?.error;
        if (e?.code === 'insufficient_credits' && typeof e.required === 'number' && typeof e.balance === 'number') {
          setInsufficient({ required: e.required, balance: e.balance, message: String(e.message ?? '') });
          if (Number.isNaN(told)) told = e.balance;
        }
      } else if (res.ok) {
        setInsufficient(null);
      }
      // Whatever the answer, the balance may have moved (a charge, a refund after a failure, someone else's spend).
      void revalidate(Number.isSafeInteger(told) && !reread ? told : undefined);
      return res;
    },
    [api, revalidate],
  );
  const dismiss = useCallback(() => setInsufficient(null), []);
  return useMemo(() => ({ fetch, insufficient, dismiss }), [fetch, insufficient, dismiss]);
}
