import { useCallback } from 'react';
import useSWRInfinite from 'swr/infinite';
import type { CreditsRequestError } from '../core/errors';
import { historyPageKey, type HistoryPageKey } from '../core/keys';
import type { CreditTransaction, TransactionPage } from '../core/types';
import { useCreditsContext } from '../provider/context';

export interface UseCreditHistoryResult {
  transactions: CreditTransaction[];
  /** True when the server has older entries. */
  hasMore: boolean;
  loadMore(): void;
  isLoading: boolean;
  isLoadingMore: boolean;
  error: CreditsRequestError | undefined;
}

/**
 * The ledger, newest first, `pageSize` entries a page (useSWRInfinite). Each page starts at the cursor the
 * page before it handed out, so a revalidation after a spend refetches the newest page and follows the
 * cursors from there, without gaps or duplicates (the entries before a cursor never change).
 */
export function useCreditHistory(pageSize = 20): UseCreditHistoryResult {
  const { api } = useCreditsContext('useCreditHistory');
  const { data, error, isLoading, isValidating, size, setSize } = useSWRInfinite<TransactionPage, CreditsRequestError>(
    historyPageKey(api.base, pageSize),
    ([, , , limit, cursor]: HistoryPageKey) =>
      api.get<TransactionPage>(`/credits/transactions?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`),
    { keepPreviousData: true },
  );
  const hasMore = Boolean(data?.[data.length - 1]?.nextCursor);
  const isLoadingMore = isValidating && (data?.length ?? 0) < size;
  const loadMore = useCallback(() => {
    if (hasMore && !isLoadingMore) void setSize((n) => n + 1);
  }, [hasMore, isLoadingMore, setSize]);
  return { transactions: data?.flatMap((p) => p.transactions) ?? [], hasMore, loadMore, isLoading, isLoadingMore, error };
}
