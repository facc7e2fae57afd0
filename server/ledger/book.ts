/**
 * The grant book of an account as of its latest entry: its journal folded over the stored book
 * (grants.ts), with the few reads the fold may need of entries already in the ledger (the charge a
 * give-back returns to, and that charge's settlement). Off the hot path: the mover, the sweep and the
 * reads of the grants call it.
 */
import type { CreditStore } from '../store/types';
import type { AccountSnapshot, GrantBook, LedgerEntry } from '../domain/types';
import { giveBackKey, settleKey } from '../domain/keys';
import { allocate, startingBook, type Earlier } from './grants';
import { ledgerEntriesOf } from './history';
import { claimId, isForeclosure } from './changes';

export interface Folded {
  /** The journal's entries the stored book does not cover yet, as ledger entries, with their grant parts. */
  entries: LedgerEntry[];
  /** The book after the last of them (seq = snapshot.count, or the stored book's when that is further on). */
  book: GrantBook;
  /** The book the fold started from (as stored, or the starting book of an account from before grants). */
  from: GrantBook;
  /** The book document as read (null: none yet); a write of `book` is a compare-and-set from its seq. */
  stored: GrantBook | null;
}

/** An account's stored book document, or null. */
export async function readBook(store: CreditStore, userId: string): Promise<GrantBook | null> {
  return (await store.getBooks([userId]))[0]?.book ?? null;
}

/**
 * An account's book as of its latest entry: the stored book read first, then the account, so that the book
 * is never ahead of the account read (entries moved in between are folded from the ledger). No book at the
 * first read and one at a second: the account's first book was stored, and its journal perhaps pulled, in
 * between, and a fold from no book would take the balance for one `base` grant; so it is read again.
 */
export async function currentBook(store: CreditStore, userId: string): Promise<{ account: AccountSnapshot | null; folded: Folded | null }> {
  for (let round = 0; ; round++) {
    const stored = await readBook(store, userId);
    const account = await store.getAccount(userId);
    if (!account) return { account, folded: null };
    if (stored === null && round < 3 && (await readBook(store, userId)) !== null) continue;
    return { account, folded: await foldJournal(store, account, stored) };
  }
}

/**
 * Folds the journal over the stored book (`stored`; read when not given). Journal entries the book covers
 * already (seq at or below its seq: a mover stored the book, then stopped before pulling them, or the
 * snapshot is older than the book) are skipped: they are in the ledger with their parts.
 */
export async function foldJournal(store: CreditStore, snapshot: AccountSnapshot, stored?: GrantBook | null): Promise<Folded> {
  const doc = stored === undefined ? await readBook(store, snapshot.userId) : stored;
  const from = startingBook(snapshot, doc);
  const raw = ledgerEntriesOf(snapshot).filter((e) => e.seq > from.seq);
  const replay = await missingEntries(store, snapshot, from);
  const all = replay.length > 0 ? [...replay, ...raw] : raw;
  const earlier = await earlierEntries(store, snapshot.userId, all);
  const { entries, book } = allocate(from, all, earlier);
  return { entries: replay.length > 0 ? entries.slice(replay.length) : entries, book, from, stored: doc };
}

/**
 * Entries between the stored book and the journal: none, unless an instance of a kit from before grants
 * moved a journal without keeping the book (a rolling upgrade), or another mover stored a book and pulled
 * the journal between a read of the book and a read of the account (currentBook). They are in the ledger (a journal is only
 * emptied after its entries are), so they are folded from there; their ledger rows keep no parts.
 */
async function missingEntries(store: CreditStore, snapshot: AccountSnapshot, from: GrantBook): Promise<LedgerEntry[]> {
  const first = snapshot.count - snapshot.journal.length + 1;
  const gap = first - 1 - from.seq;
  if (gap <= 0) return [];
  const found = (await store.listLedger(snapshot.userId, { beforeSeq: first, limit: gap })).reverse();
  if (found.length !== gap || found[0]!.seq !== from.seq + 1) {
    throw new Error(`the ledger of ${snapshot.userId} lacks entries ${from.seq + 1}-${first - 1}; its grants cannot be worked out`);
  }
  return found;
}

/** Loads what the journal's give-backs point at outside the journal. */
async function earlierEntries(store: CreditStore, userId: string, journal: LedgerEntry[]): Promise<Earlier> {
  const inJournal = new Map(journal.map((e) => [e.id, e]));
  const byKey = new Map(journal.filter((e) => e.key !== undefined).map((e) => [e.key!, e.id]));
  const settlements = new Map<string, string>();
  const wanted = new Set<string>();
  const lookups: Array<Promise<void>> = [];
  for (const e of journal) {
    const chargeId = e.ref?.chargeId;
    if (e.amount <= 0 || e.grant || chargeId === undefined || (e.kind !== 'refund' && e.kind !== 'settle')) continue;
    if (!inJournal.has(chargeId)) wanted.add(chargeId);
    if (e.key !== giveBackKey(chargeId)) continue;
    const settled = byKey.get(settleKey(chargeId));
    if (settled !== undefined) {
      settlements.set(chargeId, settled);
      continue;
    }
    // A give-back after a settlement: the settlement's claim names its entry (decided before the give-back
    // could apply: giveBack() forecloses the settlement key first).
    lookups.push(
      store.getClaim(claimId(userId, settleKey(chargeId))).then((claim) => {
        if (claim && claim.state === 'applied' && !isForeclosure(claim)) settlements.set(chargeId, claim.entryId);
      }),
    );
  }
  await Promise.all(lookups);
  for (const id of settlements.values()) if (!inJournal.has(id)) wanted.add(id);
  const loaded = wanted.size > 0 ? await store.getLedgerEntries([...wanted]) : [];
  const fromLedger = new Map(loaded.filter((e) => e.userId === userId).map((e) => [e.id, e]));
  return {
    entry: (id) => fromLedger.get(id) ?? inJournal.get(id),
    settlementOf: (chargeId) => settlements.get(chargeId),
  };
}
