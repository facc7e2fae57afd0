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
  /** The journal's entries as ledger entries, with their grant parts. */
  entries: LedgerEntry[];
  /** The book after the last of them (seq = snapshot.count). */
  book: GrantBook;
  /** The book the fold started from (as stored, or the starting book of an account from before grants). */
  from: GrantBook;
}

export async function foldJournal(store: CreditStore, snapshot: AccountSnapshot): Promise<Folded> {
  const from = startingBook(snapshot);
  const raw = ledgerEntriesOf(snapshot);
  const earlier = await earlierEntries(store, snapshot.userId, raw);
  const { entries, book } = allocate(from, raw, earlier);
  return { entries, book, from };
}

/** Loads what the journal's give-backs point at outside the journal. */
async function earlierEntries(store: CreditStore, userId: string, journal: LedgerEntry[]): Promise<Earlier> {
  const inJournal = new Map(journal.map((e) => [e.id, e]));
  const byKey = new Map(journal.filter((e) => e.key !== undefined).map((e) => [e.key!, e.id]));
  const settlements = new Map<string, string>();
  const wanted = new Set<string>();
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
    const claim = await store.getClaim(claimId(userId, settleKey(chargeId)));
    if (claim && claim.state === 'applied' && !isForeclosure(claim)) {
      settlements.set(chargeId, claim.entryId);
      if (!inJournal.has(claim.entryId)) wanted.add(claim.entryId);
    }
  }
  const loaded = wanted.size > 0 ? await store.getLedgerEntries([...wanted]) : [];
  const fromLedger = new Map(loaded.filter((e) => e.userId === userId).map((e) => [e.id, e]));
  return {
    entry: (id) => fromLedger.get(id) ?? inJournal.get(id),
    settlementOf: (chargeId) => settlements.get(chargeId),
  };
}
