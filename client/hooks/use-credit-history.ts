import { useCallback, useState } from 'react';
import useSWR from 'swr';
import type { CreditsRequestError } from '../core/errors';
import { KEY } from '../core/request';
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
 * The ledger, newest first, `pageSize` entries a page. The pages shown are fetched together under one key,
 * cursor after cursor, so a revalidation after a spend refreshes them all without gaps or duplicates.
 */
export function useCreditHistory(pageSize = 20): UseCreditHistoryResult {
  const { api } = useCreditsContext('useCreditHistory');
  const [pages, setPages] = useState(1);
  const { data, error, isLoading, isValidating } = useSWR<TransactionPage[], CreditsRequestError>(
    [KEY, api.base, '/credits/transactions', pageSize, pages],
    async () => {
      const loaded: TransactionPage[] = [];
      let cursor: string | null = null;
      do {
        const query: string = `?limit=${pageSize}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const page: TransactionPage = await api.get<TransactionPage>(`/credits/transactions${query}`);
        loaded.push(page);
        cursor = page.nextCursor;
      } while (cursor && loaded.length < pages);
      return loaded;
    },
    { keepPreviousData: true },
  );
  const last = data?.[data.length - 1];
  const hasMore = Boolean(last?.nextCursor);
  const isLoadingMore = isValidating && (data?.length ?? 0) < pages;
  const loadMore = useCallback(() => {
    if (hasMore && !isLoadingMore) setPages((n) => n + 1);
  }, [hasMore, isLoadingMore]);
  return { transactions: data?.flatMap((p) => p.transactions) ?? [], hasMore, loadMore, isLoading, isLoadingMore, error };
}
