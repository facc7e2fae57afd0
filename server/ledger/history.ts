/**
 * Reading the ledger: journal entries not yet moved, then the ledger collection, paged newest first so that
 * a page never counts an entry twice or skips one while a move is under way.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, EntryKind, EntryRef, LedgerEntry } from '../domain/types';

export interface Transaction {
  id: string;
  kind: EntryKind;
  amount: number;
  balanceAfter: number;
  seq: number;
  createdAt: string;
  reason?: string;
  ref?: EntryRef;
}

export interface TransactionPage {
  transactions: Transaction[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
  /** The balance the listed entries lead to. */
  balance: number;
}

export async function listTransactions(
  store: CreditStore,
  userId: string,
  options: { limit: number; cursor?: number },
): Promise<TransactionPage> {
  const account = await store.getAccount(userId);
  if (!account) return { transactions: [], nextCursor: null, balance: 0 };
  const journalled = ledgerEntriesOf(account);
  const firstJournalSeq = account.count - account.journal.length + 1;
  const before = options.cursor ?? account.count + 1;

  const fromJournal = journalled.filter((e) => e.seq < before).reverse().slice(0, options.limit);
  const rest = options.limit - fromJournal.length;
  const fromLedger = rest > 0 ? await store.listLedger(userId, { beforeSeq: Math.min(before, firstJournalSeq), limit: rest }) : [];
  const page = [...fromJournal, ...fromLedger];
  const last = page[page.length - 1];
  return {
    transactions: page.map(toTransaction),
    nextCursor: last && last.seq > 1 ? String(last.seq) : null,
    balance: account.balance,
  };
}

/**
 * Sequence numbers and balances-after of journal entries follow from one snapshot: every update adds one
 * entry and bumps `count`, so the journal is the last `journal.length` entries, in order.
 */
export function ledgerEntriesOf(snapshot: AccountSnapshot): LedgerEntry[] {
  const { journal, count, userId } = snapshot;
  const out: LedgerEntry[] = new Array(journal.length);
  let balanceAfter = snapshot.balance;
  for (let i = journal.length - 1; i >= 0; i--) {
    const entry = journal[i]!;
    out[i] = { ...entry, userId, seq: count - (journal.length - 1 - i), balanceAfter };
    balanceAfter -= entry.amount;
  }
  return out;
}

function toTransaction(entry: LedgerEntry): Transaction {
  const t: Transaction = {
    id: entry.id,
    kind: entry.kind,
    amount: entry.amount,
    balanceAfter: entry.balanceAfter,
    seq: entry.seq,
    createdAt: new Date(entry.at).toISOString(),
  };
  if (entry.reason) t.reason = entry.reason;
  if (entry.ref) t.ref = entry.ref;
  return t;
}
