/**
 * Reading the ledger: journal entries not yet moved, then the ledger collection, paged newest first so that
 * a page never counts an entry twice or skips one while a move is under way.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, EntryKind, EntryRef, GrantSource, LedgerEntry } from '../domain/types';
import { foldJournal } from './book';
import { BASE_GRANT } from './grants';

/** One grant's share of a transaction: taken from it (negative) or added to it (positive). */
export interface TransactionGrant {
  /** The grant's id (`base` for credits with no grant of their own). */
  grant: string;
  source: GrantSource;
  amount: number;
  /** ISO time; absent when the grant never expires. */
  expiresAt?: string;
}

export interface Transaction {
  id: string;
  kind: EntryKind;
  amount: number;
  balanceAfter: number;
  seq: number;
  createdAt: string;
  reason?: string;
  ref?: EntryRef;
  /** The grants the entry took from or added to; absent on entries from before grants. */
  grants?: TransactionGrant[];
  /** Credits the entry spent beyond every grant (positive), or debt it repaid (negative). */
  debt?: number;
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
  const folded = account.journal.length > 0 ? await foldJournal(store, account) : undefined;
  const journalled = folded?.entries ?? [];
  // Journal entries the stored book covers already (a move stopped between its book and its pull) are
  // read from the ledger, where they are with their parts; the fold returns only the others.
  const firstJournalSeq = Math.min(account.count + 1, Math.max(account.count - account.journal.length + 1, (folded?.from.seq ?? 0) + 1));
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
  if (entry.grants) {
    t.grants = entry.grants.map((p) => ({
      grant: p.grant,
      source: p.grant === BASE_GRANT ? 'base' : p.source,
      amount: p.amount,
      ...(p.expiresAt ? { expiresAt: new Date(p.expiresAt).toISOString() } : {}),
    }));
  }
  if (entry.debt) t.debt = entry.debt;
  return t;
}
