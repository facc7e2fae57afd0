/**
 * The grant fold on its own (no database): its rules on hand-made entries, and as a property over random
 * entry sequences: folding in one pass or in any split gives the same parts and book (a mover re-run
 * after a crash, or moving in batches, cannot change the allocation), and the open grants less the debt
 * are always the balance.
 */
import fc from 'fast-check';
import type { GrantBook, GrantTerms, LedgerEntry } from '../domain/types';
import { giveBackKey } from '../domain/keys';
import { allocate, rolloverAt, type Earlier } from './grants';

const T0 = Date.UTC(2026, 0, 1);
const empty: GrantBook = { seq: 0, clock: null, debt: 0, grants: [] };
const none: Earlier = { entry: () => undefined, settlementOf: () => undefined };

function entries(list: Array<Partial<LedgerEntry> & { amount: number }>): LedgerEntry[] {
  let balance = 0;
  return list.map((e, i) => {
    balance += e.amount;
    return { id: e.id ?? `e${i + 1}`, kind: e.kind ?? (e.amount > 0 ? 'grant' : 'usage'), at: e.at ?? new Date(T0 + i), userId: 'u', seq: i + 1, balanceAfter: balance, ...e };
  });
}
const grant = (id: string, priority = 50, expiresAt?: number): GrantTerms => ({ id, source: 'admin', priority, ...(expiresAt ? { expiresAt: new Date(expiresAt) } : {}) });
const parts = (e: LedgerEntry) => (e.grants ?? []).map((p) => `${p.grant}${p.amount > 0 ? '+' : ''}${p.amount}`).join(' ');

it('a give-back after the expiry entry never reopens the grant, whatever the clock of the instance that gave back', () => {
  const expiry = T0 + 60_000;
  const { entries: out, book } = allocate(
    empty,
    entries([
      { amount: 10, grant: grant('promo', 50, expiry) },
      { amount: 5, grant: grant('keep') },
      { id: 'charge', amount: -4 },
      // The sweeper's clock was a minute ahead; the give-back's instance is a minute behind.
      { kind: 'expire', amount: -6, from: 'promo', at: new Date(expiry) },
      { kind: 'refund', amount: 4, ref: { chargeId: 'charge' }, key: giveBackKey('charge'), at: new Date(T0 + 5) },
    ]),
    none,
  );
  expect(out.map(parts)).toEqual(['promo+10', 'keep+5', 'promo-4', 'promo-6', 'base+4']);
  expect(book.grants.map((g) => [g.id, g.remaining])).toEqual([['keep', 5], ['base', 4]]);
});

it('a spend beyond every grant is debt, repaid first by the next credits, and a give-back of it lowers it', () => {
  const { entries: out, book } = allocate(
    empty,
    entries([
      { amount: 3, grant: grant('a') },
      { id: 'over', amount: -5, kind: 'settle' },
      { id: 'charge', amount: -2 },
      { kind: 'refund', amount: 2, ref: { chargeId: 'charge' }, key: giveBackKey('charge') },
      { amount: 10, grant: grant('b') },
    ]),
    none,
  );
  expect(out.map((e) => [parts(e), e.debt ?? 0])).toEqual([['a+3', 0], ['a-3', 2], ['', 2], ['', -2], ['b+8', -2]]);
  expect(book).toMatchObject({ debt: 0, grants: [{ id: 'b', remaining: 8 }] });
});

type Op = { amount: number; grant?: number; priority?: number; expires?: number; giveBack?: number; expire?: boolean; rollover?: number; revoke?: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record(
    {
      amount: fc.integer({ min: 1, max: 30 }),
      grant: fc.nat(5),
      priority: fc.integer({ min: 0, max: 100 }),
      expires: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
      rollover: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
    },
    { requiredKeys: ['amount', 'grant', 'priority'] },
  ),
  fc.record({ amount: fc.integer({ min: -25, max: -1 }) }),
  fc.record({ amount: fc.constant(0), giveBack: fc.nat(30) }),
  fc.record({ amount: fc.constant(0), expire: fc.constant(true), grant: fc.nat(5) }),
  fc.record({ amount: fc.constant(0), revoke: fc.constant(true), grant: fc.nat(6) }),
);

/** Random entries as the kit would write them: give-backs of earlier charges, expiries of due grants. */
function build(ops: Op[]): LedgerEntry[] {
  const list: Array<Partial<LedgerEntry> & { amount: number }> = [];
  const charges: Array<{ id: string; left: number }> = [];
  const terms = new Map<number, GrantTerms>();
  const expired = new Set<string>(); // a grant expires once (its key)
  for (const [i, o] of ops.entries()) {
    if (o.giveBack !== undefined) {
      const c = charges[o.giveBack % Math.max(1, charges.length)];
      if (!c || c.left === 0) continue;
      list.push({ kind: 'refund', amount: c.left, ref: { chargeId: c.id }, key: giveBackKey(c.id), at: new Date(T0 + i * 1000) });
      c.left = 0;
    } else if (o.expire) {
      // An expiry entry takes exactly what the grant holds now: computed by folding what came before, with
      // its rollover as the sweep writes it. Rollover grants (g6) expire too, and do not roll over.
      const books = allocate(empty, entries(list), none).book.grants;
      const before = books.find((g) => g.id === `g${o.grant}`) ?? (o.grant === 5 ? books.find((g) => g.id.startsWith('rollover:')) : undefined);
      if (!before?.expiresAt || before.remaining === 0 || before.expiresAt.getTime() > T0 + i * 1000 || expired.has(before.id)) continue;
      expired.add(before.id);
      const kept = rolloverAt(before);
      list.push({
        kind: 'expire',
        amount: -(before.remaining - (kept?.keep ?? 0)),
        from: before.id,
        at: new Date(T0 + i * 1000),
        ...(kept ? { grant: kept.terms, rolledOver: kept.keep } : {}),
      });
    } else if (o.revoke) {
      // A revoke takes what the grant holds now (nothing written when it holds nothing, as revokeGrant does).
      const before = allocate(empty, entries(list), none).book.grants.find((g) => g.id === `g${o.grant}` || (o.grant === 6 && g.id.startsWith('rollover:')));
      if (!before) continue;
      list.push({ kind: 'revoke', amount: -before.remaining, from: before.id, at: new Date(T0 + i * 1000) });
    } else if (o.amount > 0) {
      const expiresAt = o.expires ? T0 + (i + o.expires) * 1000 : undefined;
      const fresh = grant(`g${o.grant}`, o.priority, expiresAt);
      if (expiresAt && o.rollover !== undefined) fresh.rollover = { max: o.rollover, ...(o.rollover % 2 ? { expiresAt: new Date(expiresAt + 20_000) } : {}) };
      const t = terms.get(o.grant!) ?? fresh;
      terms.set(o.grant!, t);
      list.push({ amount: o.amount, grant: t, at: new Date(T0 + i * 1000) });
    } else if (o.amount < 0) {
      const id = `c${i}`;
      charges.push({ id, left: -o.amount });
      list.push({ id, amount: o.amount, at: new Date(T0 + i * 1000) });
    }
  }
  return entries(list);
}

it('folds to the same parts and book in one pass or split anywhere, and the book always adds up to the balance', () => {
  const seen = { rolledOver: 0, revoked: 0 };
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40, size: 'medium' }), fc.nat(), (ops, cut) => {
      const list = build(ops);
      const whole = allocate(empty, list, none);
      const at = list.length === 0 ? 0 : cut % (list.length + 1);
      const first = allocate(empty, list.slice(0, at), none);
      // The second half sees the first half's entries as the ledger (with their parts), as a later move does.
      const inLedger = new Map(first.entries.map((e) => [e.id, e]));
      const second = allocate(first.book, list.slice(at), { entry: (id) => inLedger.get(id), settlementOf: () => undefined });
      expect([...first.entries, ...second.entries]).toEqual(whole.entries);
      expect(second.book).toEqual(whole.book);
      for (let i = 0; i <= list.length; i++) {
        const { book } = allocate(empty, list.slice(0, i), none);
        const balance = i === 0 ? 0 : list[i - 1]!.balanceAfter;
        expect(book.grants.reduce((s, g) => s + g.remaining, 0) - book.debt).toBe(balance);
        expect(book.grants.every((g) => g.remaining > 0)).toBe(true);
      }
      // An expiry entry takes exactly the grant's rest, keeping what its rollover allows as rollover:<grant>;
      // a rollover grant never rolls over.
      for (const e of whole.entries.filter((x) => x.kind === 'expire')) {
        const kept = e.rolledOver ?? 0;
        expect(e.grants).toEqual([
          expect.objectContaining({ grant: e.from, amount: e.amount - kept }),
          ...(kept > 0 ? [expect.objectContaining({ grant: `rollover:${e.from}`, amount: kept, source: 'rollover' })] : []),
        ]);
        if (e.from!.startsWith('rollover:')) expect(kept).toBe(0);
        if (kept > 0) seen.rolledOver++;
      }
      // A revoked grant is emptied by its revoke and never holds credits again: give-backs and credits go to base.
      for (const r of whole.entries.filter((x) => x.kind === 'revoke')) {
        expect(r.grants).toEqual(r.amount === 0 ? [] : [expect.objectContaining({ grant: r.from, amount: r.amount })]);
        const later = whole.entries.filter((x) => x.seq > r.seq).flatMap((x) => x.grants ?? []);
        expect(later.filter((p) => p.grant === r.from && p.amount > 0)).toEqual([]);
        seen.revoked++;
      }
    }),
    { numRuns: 300 },
  );
  // The random sequences do reach the rules above.
  expect(seen.rolledOver).toBeGreaterThan(20);
  expect(seen.revoked).toBeGreaterThan(20);
});

it('a give-back pays outstanding debt first, like any credit, so a failed request leaves the expiry as it was', () => {
  const promo: GrantTerms = { id: 'promo', source: 'promotion', priority: 50, expiresAt: new Date(T0 + 60_000) };
  const after = (list: Array<Partial<LedgerEntry> & { amount: number }>) => {
    const { book } = allocate(empty, entries(list), none);
    const promoLeft = book.grants.find((g) => g.id === 'promo')?.remaining ?? 0;
    return { promoLeft, debt: book.debt, balanceAfterExpiry: list.reduce((s, e) => s + e.amount, 0) - promoLeft };
  };
  // D reserves 5 and settles 5 more (overage as debt); C, charged 10 between the two, fails and is given back.
  const without = after([
    { amount: 15, grant: promo },
    { id: 'D', amount: -5 },
    { kind: 'settle', amount: -5, ref: { chargeId: 'D' }, key: 'settle:D' },
  ]);
  const withFailed = after([
    { amount: 15, grant: promo },
    { id: 'D', amount: -5 },
    { id: 'C', amount: -10 },
    { kind: 'settle', amount: -5, ref: { chargeId: 'D' }, key: 'settle:D' },
    { kind: 'refund', amount: 10, ref: { chargeId: 'C' }, key: giveBackKey('C') },
  ]);
  expect(without).toEqual({ promoLeft: 5, debt: 0, balanceAfterExpiry: 0 });
  expect(withFailed).toEqual(without);
});

it('an expiry with rollover is one entry: the whole rest out of the grant, min(max, rest) into rollover:<grant>', () => {
  const due = T0 + 60_000;
  const sub: GrantTerms = { id: 'sub', source: 'subscription', priority: 10, expiresAt: new Date(due), rollover: { max: 4, expiresAt: new Date(due + 60_000) } };
  const { entries: out, book } = allocate(
    empty,
    entries([
      { amount: 10, grant: sub },
      { amount: 5, grant: grant('topup') },
      { id: 'charge', amount: -3 },
      { kind: 'expire', amount: -3, from: 'sub', grant: { id: 'rollover:sub', source: 'rollover', priority: 10, expiresAt: new Date(due + 60_000) }, rolledOver: 4, at: new Date(due) },
      { amount: -2 },
      // The failed charge's give-back: its grant is due, so to base (not into the rollover).
      { kind: 'refund', amount: 3, ref: { chargeId: 'charge' }, key: giveBackKey('charge') },
    ]),
    none,
  );
  expect(out.map(parts)).toEqual(['sub+10', 'topup+5', 'sub-3', 'sub-7 rollover:sub+4', 'rollover:sub-2', 'base+3']);
  expect(book.grants.map((g) => [g.id, g.source, g.priority, g.remaining, g.expiresAt?.getTime() ?? null, g.rollover ?? null])).toEqual([
    ['rollover:sub', 'rollover', 10, 2, due + 60_000, null],
    ['topup', 'admin', 50, 5, null, null],
    ['base', 'base', 1000, 3, null, null],
  ]);
  expect(rolloverAt(book.grants[0]!)).toBeNull(); // a rollover grant does not roll over
  // Keeping it all: an entry of 0 that moves the rest; keeping none (max 0): no rollover grant at all.
  expect(rolloverAt({ id: 's', source: 'subscription', priority: 1, seq: 1, remaining: 3, expiresAt: new Date(due), rollover: { max: 9 } })).toEqual({
    keep: 3,
    terms: { id: 'rollover:s', source: 'rollover', priority: 1 },
  });
  expect(rolloverAt({ id: 's', source: 'subscription', priority: 1, seq: 1, remaining: 3, expiresAt: new Date(due), rollover: { max: 0 } })).toBeNull();
});

it('a revoked grant is emptied and closed: a give-back of a spend from it, or a credit naming it, goes to base', () => {
  const sub: GrantTerms = { id: 'sub', source: 'subscription', priority: 10, expiresAt: new Date(T0 + 3_600_000) };
  const { entries: out, book } = allocate(
    empty,
    entries([
      { amount: 10, grant: sub },
      { id: 'charge', amount: -6 },
      { kind: 'revoke', amount: -4, from: 'sub' },
      { kind: 'refund', amount: 6, ref: { chargeId: 'charge' }, key: giveBackKey('charge') },
      { amount: 2, grant: sub, kind: 'reversal' },
    ]),
    none,
  );
  expect(out.map(parts)).toEqual(['sub+10', 'sub-6', 'sub-4', 'base+6', 'base+2']);
  expect(book.grants.map((g) => [g.id, g.remaining])).toEqual([['base', 8]]);
  expect(book.closed).toEqual([{ id: 'sub' }]);
});
