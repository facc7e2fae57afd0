/**
 * Grants: which credits each entry took or added, as a pure function of the account's entries in `seq`
 * order. The hot path never looks at grants (a spend stays one guarded update of the balance); the journal
 * mover folds each account's journal over its grant book, writes the parts on each ledger entry, and stores
 * the new book with the journal's removal (one compare-and-set on `book.seq`). Folding the same entries
 * from the same book always gives the same parts and book, so a mover that crashed, or two that raced,
 * write the same thing: entries by id once, the book once.
 *
 * The rules (README "Grants"):
 * - Order: a spend takes from the open grants by priority (lower first), then soonest expiry (none last),
 *   then oldest (the `seq` of the entry that opened it). `from` names a grant taken from first.
 * - A spend beyond every grant is debt (the `debt` overage policy); the next credits repay it first.
 * - A credit with grant terms adds to that grant (repaying debt first). A give-back (a `refund` or a
 *   positive `settle` of a charge) returns to the grants the charge (and its overage settlement) took
 *   from, last taken first back, reopening a used-up grant from the terms kept with the parts; a part whose
 *   grant is due (its expiry at or before the give-back, by the account's clock) goes to `base` instead.
 *   Any other credit goes to `base`.
 * - `base`: credits with no grant of their own, never expiring, spent after every grant. An account from
 *   before grants starts as one `base` grant holding its balance (or debt, if below zero).
 * - Expiry: a due grant is still spent from (the grace until the sweep), and its `expire` entry takes
 *   exactly what it holds (ledger/expiry.ts). The account's clock is the latest entry time seen, and an
 *   expiry moves it to at least the grant's expiry, so once an expiry is in no later entry can see the
 *   grant as not yet due, and no give-back reopens it.
 * - Rollover: an `expire` entry with `rolledOver` > 0 takes the grant's whole rest (`-amount + rolledOver`)
 *   and adds `rolledOver` to the grant its `grant` terms name (`rollover:<grant>`, no rollover of its own).
 * - Revoke: a `revoke` entry takes what its grant (`from`) holds and closes it: no give-back reopens it and
 *   no credit adds to it again; what would have gone to it goes to `base`, as for a due grant.
 */
import type { AccountSnapshot, ClosedGrant, GrantBook, GrantPart, GrantTerms, JournalEntry, LedgerEntry, OpenGrant } from '../domain/types';
import { giveBackKey } from '../domain/keys';

export const BASE_GRANT = 'base';
/** Below every grant's priority (0-100): `base` is spent last. */
const BASE_PRIORITY = 1000;
export const MIN_PRIORITY = 0;
export const MAX_PRIORITY = 100;
export const DEFAULT_PRIORITY = 50;
/** The source of the grant an expiry's rollover keeps. */
export const ROLLOVER_SOURCE = 'rollover';

/** The grant that keeps what grant `grantId` rolls over at its expiry. */
export const rolloverGrantId = (grantId: string) => `rollover:${grantId}` as const;

/** What the fold may need of entries outside the journal: their parts (earlier ledger entries). */
export interface Earlier {
  /** An entry by id: in the ledger with its parts, or earlier in the same fold. */
  entry(id: string): Pick<LedgerEntry, 'id' | 'seq' | 'amount' | 'grants'> | undefined;
  /** The entry applied under `settle:<chargeId>`, if one was. */
  settlementOf(chargeId: string): string | undefined;
}

/**
 * The book a fold of the journal starts from: the stored book document, else the book a kit from before
 * credit_books kept on the account, else (an account from before grants) its balance before the journal,
 * as `base`.
 */
export function startingBook(snapshot: AccountSnapshot, stored: GrantBook | null = null): GrantBook {
  if (stored) return stored;
  if (snapshot.book) return snapshot.book;
  if (snapshot.bookMoved) throw new Error(`the grant book of ${snapshot.userId} was stored, but is not found; its grants cannot be worked out`);
  const before = snapshot.balance - snapshot.journal.reduce((sum, e) => sum + e.amount, 0);
  return {
    seq: snapshot.count - snapshot.journal.length,
    clock: null,
    debt: before < 0 ? -before : 0,
    grants: before > 0 ? [baseGrant(before)] : [],
  };
}

/** The grant an entry's credit adds to (or reopens). */
export function grantIdOf(entry: Pick<JournalEntry, 'id' | 'key' | 'grant'>): string {
  return entry.grant?.id ?? entry.key ?? entry.id;
}

/**
 * Folds entries (in `seq` order, the first one right after `book.seq`) over the book: each entry with its
 * parts, and the book after the last one. Pure: `book` is not changed.
 */
export function allocate(book: GrantBook, entries: LedgerEntry[], earlier: Earlier): { entries: LedgerEntry[]; book: GrantBook } {
  const state = new Book(book);
  const done = new Map<string, LedgerEntry>();
  const lookup: Earlier = { entry: (id) => done.get(id) ?? earlier.entry(id), settlementOf: (c) => earlier.settlementOf(c) };
  const out = entries.map((e) => {
    if (e.seq !== state.seq + 1) throw new Error(`grant book at ${state.seq} cannot take entry ${e.seq} of ${e.userId}`);
    const allocated = state.apply(e, lookup);
    done.set(allocated.id, allocated);
    return allocated;
  });
  return { entries: out, book: state.toBook() };
}

/** Sort order of spending: priority, then soonest expiry (none last), then oldest, then id. */
export function spendOrder(a: OpenGrant, b: OpenGrant): number {
  return a.priority - b.priority || expiryMs(a) - expiryMs(b) || a.seq - b.seq || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function expiryMs(g: { expiresAt?: Date }): number {
  return g.expiresAt ? new Date(g.expiresAt).getTime() : Number.POSITIVE_INFINITY;
}

function baseGrant(remaining: number): OpenGrant {
  return { id: BASE_GRANT, source: 'base', priority: BASE_PRIORITY, seq: 0, remaining };
}

class Book {
  seq: number;
  private clock: number | null;
  private debt: number;
  private readonly grants = new Map<string, OpenGrant>();
  private readonly closed = new Map<string, ClosedGrant>();

  constructor(book: GrantBook) {
    this.seq = book.seq;
    this.clock = book.clock ? new Date(book.clock).getTime() : null;
    this.debt = book.debt;
    for (const g of book.grants) this.grants.set(g.id, { ...g });
    for (const c of book.closed ?? []) this.closed.set(c.id, { ...c });
  }

  apply(entry: LedgerEntry, earlier: Earlier): LedgerEntry {
    const at = new Date(entry.at).getTime();
    this.clock = this.clock === null ? at : Math.max(this.clock, at);
    this.seq = entry.seq;
    const parts: GrantPart[] = [];
    let debt = 0;
    if (entry.kind === 'expire' && entry.from !== undefined) {
      // Whatever the clock of the instance that swept: after a grant's expiry the account's clock is past it.
      const expiring = this.grants.get(entry.from);
      if (expiring?.expiresAt) this.clock = Math.max(this.clock, expiryMs(expiring));
    }
    if (entry.kind === 'expire' && entry.from !== undefined && entry.grant && entry.rolledOver && entry.rolledOver > 0) {
      // One entry: the grant's whole rest out, the part rolled over into its rollover grant.
      debt = this.take(entry.rolledOver - entry.amount, entry.from, parts);
      debt += this.addToGrant(entry.rolledOver, termsOf(entry.grant, entry.grant.id ?? rolloverGrantId(entry.from), entry.seq), parts);
    } else if (entry.amount < 0) debt = this.take(-entry.amount, entry.from, parts);
    else if (entry.amount > 0) debt = this.credit(entry, earlier, parts);
    if (entry.kind === 'revoke' && entry.from !== undefined && entry.from !== BASE_GRANT) {
      // Kept for good (a few dozen bytes per revoked grant): a credit naming it may come at any time.
      this.closed.set(entry.from, { id: entry.from });
    }
    for (const [id, g] of this.grants) if (g.remaining === 0) this.grants.delete(id);
    const { grants: _g, debt: _d, ...rest } = entry;
    // `grants` is always set on an allocated entry (empty for a zero change): absent means moved before grants.
    return { ...rest, grants: parts, ...(debt !== 0 ? { debt } : {}) };
  }

  /** Takes `n` credits: from `first`, then in spending order, then as debt. Returns the debt added. */
  private take(n: number, first: string | undefined, parts: GrantPart[]): number {
    let left = n;
    const firstGrant = first !== undefined ? this.grants.get(first) : undefined;
    const order = [...this.grants.values()].filter((g) => g !== firstGrant).sort(spendOrder);
    for (const g of firstGrant ? [firstGrant, ...order] : order) {
      if (left === 0) break;
      const taken = Math.min(left, g.remaining);
      if (taken === 0) continue;
      g.remaining -= taken;
      left -= taken;
      parts.push(partOf(g, -taken));
    }
    this.debt += left;
    return left;
  }

  private credit(entry: LedgerEntry, earlier: Earlier, parts: GrantPart[]): number {
    if (entry.grant) return this.addToGrant(entry.amount, termsOf(entry.grant, grantIdOf(entry), entry.seq), parts);
    const chargeId = entry.ref?.chargeId;
    if (chargeId === undefined || (entry.kind !== 'refund' && entry.kind !== 'settle')) return this.unassigned(entry.amount, parts);
    let left = entry.amount;
    let repaid = 0;
    // Last taken, first back: a partial give-back (a settlement below the reservation) keeps what the work
    // used drawn from the grants spent first.
    const taken = this.takenBy(chargeId, entry, earlier);
    for (let i = taken.length - 1; i >= 0 && left > 0; i--) {
      const part = taken[i]!;
      const back = Math.min(left, -part.amount);
      left -= back;
      if (part.grant === DEBT) {
        // What the charge ran up as debt lowers the debt; debt repaid meanwhile leaves the rest to `base`.
        const lowered = -this.repay(back);
        repaid -= lowered;
        if (back > lowered) repaid += this.unassigned(back - lowered, parts);
        continue;
      }
      // Due, or revoked: its credits never come back to it.
      if ((part.expiresAt && expiryMs(part) <= this.clock!) || this.closed.has(part.grant)) {
        repaid += this.unassigned(back, parts);
        continue;
      }
      // Debt is repaid first, as by any credit (README "Debt"); only the rest reopens the grant.
      const lowered = -this.repay(back);
      repaid -= lowered;
      if (back > lowered) {
        this.reopen(part, back - lowered);
        parts.push({ ...partOf(this.grants.get(part.grant)!, back - lowered) });
      }
    }
    return repaid + (left > 0 ? this.unassigned(left, parts) : 0);
  }

  /**
   * What a charge took and has not been given back before this entry: the charge's own parts, and for the
   * failure give-back (which comes after a settlement, if any) the settlement's overage parts, less what
   * the settlement gave back. Debt is a part too (grant DEBT).
   */
  private takenBy(chargeId: string, entry: LedgerEntry, earlier: Earlier): GrantPart[] {
    const charge = earlier.entry(chargeId);
    if (!charge || charge.seq >= entry.seq || !charge.grants) return [];
    const taken = withDebt(charge);
    if (entry.key === giveBackKey(chargeId)) {
      const settlementId = earlier.settlementOf(chargeId);
      const settlement = settlementId !== undefined ? earlier.entry(settlementId) : undefined;
      if (settlement && settlement.seq < entry.seq && settlement.grants !== undefined) {
        // An overage settlement took more; one below the reservation gave back its tail, by this same walk.
        if (settlement.amount < 0) taken.push(...withDebt(settlement));
        else dropLast(taken, settlement.amount);
      }
    }
    return taken.filter((p) => p.amount < 0);
  }

  private reopen(part: GrantPart, n: number): void {
    const open = this.grants.get(part.grant);
    if (open) {
      open.remaining += n;
      return;
    }
    const g: OpenGrant = { id: part.grant, source: part.source, priority: part.priority, seq: part.seq, remaining: n };
    if (part.expiresAt) g.expiresAt = part.expiresAt;
    if (part.rollover) g.rollover = { ...part.rollover };
    this.grants.set(g.id, g);
  }

  /** Credits for the grant `terms` name; a revoked grant takes nothing again (a won dispute of a revoked purchase, say): to `base`. */
  private addToGrant(n: number, terms: OpenGrant, parts: GrantPart[]): number {
    return this.closed.has(terms.id) ? this.unassigned(n, parts) : this.addTo(n, terms, parts);
  }

  /** Credits with a grant: repay debt, the rest to the grant. Returns the debt change (negative). */
  private addTo(n: number, terms: OpenGrant, parts: GrantPart[]): number {
    const repaid = this.repay(n);
    const rest = n + repaid;
    if (rest > 0) {
      const open = this.grants.get(terms.id);
      if (open) open.remaining += rest;
      else this.grants.set(terms.id, { ...terms, remaining: rest });
      parts.push(partOf(this.grants.get(terms.id)!, rest));
    }
    return repaid;
  }

  private unassigned(n: number, parts: GrantPart[]): number {
    return this.addTo(n, this.grants.get(BASE_GRANT) ?? baseGrant(0), parts);
  }

  /** Repays up to `n` of the debt; returns the (negative) debt change. */
  private repay(n: number): number {
    const repaid = Math.min(n, this.debt);
    this.debt -= repaid;
    return -repaid;
  }

  toBook(): GrantBook {
    const book: GrantBook = {
      seq: this.seq,
      clock: this.clock === null ? null : new Date(this.clock),
      debt: this.debt,
      grants: [...this.grants.values()].sort(spendOrder).map((g) => ({ ...g, remaining: g.remaining })),
    };
    if (this.closed.size > 0) book.closed = [...this.closed.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((c) => ({ ...c }));
    return book;
  }
}

/** The debt an entry took on, as a part, so that give-backs return it in order with the grants. */
const DEBT = '\u0000debt';

function withDebt(entry: Pick<LedgerEntry, 'grants' | 'debt' | 'amount'>): GrantPart[] {
  const parts = (entry.grants ?? []).map((p) => ({ ...p }));
  if (entry.amount < 0 && entry.debt && entry.debt > 0) parts.push({ grant: DEBT, amount: -entry.debt, source: 'base', priority: BASE_PRIORITY, seq: 0 });
  return parts;
}

/** Takes `n` credits off the end of taken parts, as a give-back of them walked it. */
function dropLast(taken: GrantPart[], n: number): void {
  let left = n;
  for (let i = taken.length - 1; i >= 0 && left > 0; i--) {
    const t = taken[i]!;
    const back = Math.min(left, -t.amount);
    t.amount += back;
    left -= back;
  }
}

function termsOf(terms: GrantTerms, id: string, seq: number): OpenGrant {
  const g: OpenGrant = { id, source: terms.source, priority: terms.priority, seq, remaining: 0 };
  if (terms.expiresAt) g.expiresAt = new Date(terms.expiresAt);
  if (terms.rollover) g.rollover = rolloverOf(terms.rollover);
  return g;
}

function partOf(g: OpenGrant, amount: number): GrantPart {
  const p: GrantPart = { grant: g.id, amount, source: g.source, priority: g.priority, seq: g.seq };
  if (g.expiresAt) p.expiresAt = g.expiresAt;
  if (g.rollover) p.rollover = rolloverOf(g.rollover);
  return p;
}

function rolloverOf(r: { max: number; expiresAt?: Date }): { max: number; expiresAt?: Date } {
  return r.expiresAt ? { max: r.max, expiresAt: new Date(r.expiresAt) } : { max: r.max };
}

/**
 * What an expiring grant keeps: min(max, rest) of its rest, as the terms of its rollover grant (none when
 * it has no rollover terms, or keeps nothing).
 */
export function rolloverAt(grant: OpenGrant): { keep: number; terms: GrantTerms } | null {
  if (!grant.rollover || grant.remaining <= 0) return null;
  const keep = Math.min(grant.rollover.max, grant.remaining);
  if (keep <= 0) return null;
  const terms: GrantTerms = { id: rolloverGrantId(grant.id), source: ROLLOVER_SOURCE, priority: grant.priority };
  if (grant.rollover.expiresAt) terms.expiresAt = new Date(grant.rollover.expiresAt);
  return { keep, terms };
}
