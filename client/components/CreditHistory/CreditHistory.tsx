import { forwardRef, type HTMLAttributes } from 'react';
import { useCreditHistory } from '../../hooks/use-credit-history';
import type { CreditTransaction, TransactionKind } from '../../core/types';
import { cx, formatNumber } from '../cx';

export interface CreditHistoryProps extends HTMLAttributes<HTMLDivElement> {
  /** Entries per page (1-100). Default 20. */
  pageSize?: number;
  /** The table's caption. Default `Credit history`. */
  caption?: string;
}

const KIND_LABELS: Record<TransactionKind, string> = {
  purchase: 'Purchase',
  usage: 'Usage',
  refund: 'Refund',
  grant: 'Grant',
  settle: 'Adjustment for usage',
  clawback: 'Payment refunded',
  reversal: 'Dispute reversed',
  adjustment: 'Adjustment',
  expire: 'Expired',
  revoke: 'Revoked',
};

/** What an entry was for: a named cost's label ("Summarize", "Adjustment for Chat"), else its kind. */
function describeEntry(t: CreditTransaction): string {
  const label = t.ref?.label;
  return label && t.kind === 'usage' ? label : label && t.kind === 'settle' ? `Adjustment for ${label}` : (KIND_LABELS[t.kind] ?? t.kind);
}

/** The ledger as a table, newest first, with a "Load more" button while older entries remain. */
export const CreditHistory = forwardRef<HTMLDivElement, CreditHistoryProps>(function CreditHistory(
  { pageSize = 20, caption = 'Credit history', className, ...props },
  ref,
) {
  const { transactions, hasMore, loadMore, isLoading, isLoadingMore, error } = useCreditHistory(pageSize);
  const state = isLoading ? 'loading' : error && !transactions.length ? 'error' : 'ready';
  return (
    <div ref={ref} className={cx('ck-history', className)} data-state={state} aria-busy={isLoading || isLoadingMore || undefined} {...props}>
      {state === 'loading' && <p className="ck-status">Loading history…</p>}
      {error && (
        <p role="alert" className="ck-error">
          {error.message}
        </p>
      )}
      {state === 'ready' && !transactions.length && <p className="ck-status">No transactions yet.</p>}
      {transactions.length > 0 && (
        <table className="ck-table">
          <caption>{caption}</caption>
          <thead>
            <tr>
              <th scope="col">Date</th>
              <th scope="col">Type</th>
              <th scope="col">Amount</th>
              <th scope="col">Balance</th>
            </tr>
          </thead>
          <tbody>
            {transactions.map((t) => (
              <tr key={t.id} data-kind={t.kind}>
                <td>
                  <time dateTime={t.createdAt}>{new Date(t.createdAt).toLocaleString()}</time>
                </td>
                <td>{describeEntry(t)}</td>
                <td className={t.amount < 0 ? 'ck-debit' : 'ck-credit'}>
                  {t.amount > 0 ? '+' : t.amount < 0 ? '−' : ''}
                  {formatNumber(Math.abs(t.amount))}
                </td>
                <td>{formatNumber(t.balanceAfter)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {hasMore && (
        <button type="button" className="ck-button ck-more" onClick={loadMore} disabled={isLoadingMore} aria-busy={isLoadingMore || undefined}>
          Load more
        </button>
      )}
    </div>
  );
});
