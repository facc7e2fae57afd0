/**
 * The CreditStore conformance suite: what any store must do for the ledger's guarantees to hold. Written
 * once; a store's test file calls `describeCreditStore` with a factory (the MongoDB store does so in
 * mongo-store.test.ts), so a second store later costs one call.
 */
import { randomUUID } from 'node:crypto';
import { newPurchase } from '../domain/purchase-record';
import { newRechargeRecord } from '../domain/recharge';
import { newSubscription } from '../domain/subscription-record';
import type { AlertRecord, CreditStore, JournalEntry, Purchase } from './types';

export interface StoreUnderTest {
  store: CreditStore;
  /** Reads the stored account as the database holds it, bypassing the store (null when absent). */
  rawAccount(userId: string): Promise<{ balance: number; journal: unknown[] } | null>;
  close(): Promise<void>;
}

const entry = (amount: number, extra: Partial<JournalEntry> = {}): JournalEntry => ({
  id: randomUUID(),
  kind: amount < 0 ? 'usage' : 'grant',
  amount,
  at: new Date(),
  ...extra,
});

export function describeCreditStore(name: string, create: () => Promise<StoreUnderTest>): void {
  describe(`CreditStore conformance: ${name}`, () => {
    let t: StoreUnderTest;
    beforeAll(async () => {
      t = await create();
      await t.store.init();
      await t.store.init(); // idempotent
    });
    afterAll(() => t.close());

    it('creates an account only when asked, and journals each change with the balance', async () => {
      const user = `c-${randomUUID()}`;
      expect(await t.store.applyEntry(user, entry(-1), { minBalance: 1 })).toBeNull();
      expect(await t.store.applyEntry(user, entry(5))).toBeNull();
      expect(await t.rawAccount(user)).toBeNull();
      const first = entry(5);
      const after = await t.store.applyEntry(user, first, { create: true });
      expect(after).toMatchObject({ userId: user, balance: 5, count: 1, journal: [expect.objectContaining({ id: first.id, amount: 5 })] });
      expect(await t.rawAccount(user)).toMatchObject({ balance: 5, journal: [expect.objectContaining({ id: first.id })] });
    });

    it('applies a guarded deduction under concurrency exactly as often as the balance allows', async () => {
      const user = `c-${randomUUID()}`;
      await t.store.applyEntry(user, entry(100), { create: true });
      const results = await Promise.all(Array.from({ length: 250 }, () => t.store.applyEntry(user, entry(-1), { minBalance: 1 })));
      expect(results.filter(Boolean)).toHaveLength(100);
      expect((await t.rawAccount(user))?.balance).toBe(0);
      const counts = results.flatMap((r) => (r ? [r.count] : [])).sort((a, b) => a - b);
      expect(counts).toEqual(Array.from({ length: 100 }, (_, i) => i + 2)); // each update saw its own count
    });

    it('applies several spends in one update all or none (applyEntries, when the store has it), never past the guard', async () => {
      if (!t.store.applyEntries) {
        expect(t.store.applyEntries).toBeUndefined(); // optional: the kit then sends each spend alone
        return;
      }
      const user = `c-${randomUUID()}`;
      expect(await t.store.applyEntries(user, [entry(-1)], 1)).toBeNull(); // no account: nothing created
      expect(await t.rawAccount(user)).toBeNull();
      await t.store.applyEntry(user, entry(10), { create: true });
      const three = [entry(-2), entry(-3), entry(-4)];
      const after = await t.store.applyEntries(user, three, 9);
      expect(after).toMatchObject({ balance: 1, count: 4, journal: [expect.anything(), ...three.map((e) => expect.objectContaining({ id: e.id, amount: e.amount }))] });
      expect(await t.store.applyEntries(user, [entry(-1), entry(-1)], 2)).toBeNull(); // the guard: all or none
      const fenced = entry(-1);
      await t.store.fenceEntry(user, fenced.id);
      expect(await t.store.applyEntries(user, [entry(-1), fenced], 0)).toBeNull(); // one fenced id refuses the batch
      expect(await t.rawAccount(user)).toMatchObject({ balance: 1, journal: { length: 4 } });
      // Concurrent batches and single spends on one account never take it below what the guards allow.
      const rich = `c-${randomUUID()}`;
      await t.store.applyEntry(rich, entry(100), { create: true });
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          i % 2 === 0 ? t.store.applyEntries!(rich, [entry(-2), entry(-1)], 3) : t.store.applyEntry(rich, entry(-1), { minBalance: 1 }),
        ),
      );
      const spent = results.reduce((sum, r, i) => sum + (r ? (i % 2 === 0 ? 3 : 1) : 0), 0);
      const raw = await t.rawAccount(rich);
      expect(raw?.balance).toBe(100 - spent);
      expect(raw!.balance).toBeGreaterThanOrEqual(0);
      expect(raw?.journal).toHaveLength(1 + results.reduce((n, r, i) => n + (r ? (i % 2 === 0 ? 2 : 1) : 0), 0));
    });

    it('refuses a keyed entry whose id the journal already holds, even concurrently, and with create', async () => {
      const user = `c-${randomUUID()}`;
      const keyed = entry(7, { key: 'grant:once' });
      const results = await Promise.all(Array.from({ length: 20 }, () => t.store.applyEntry(user, keyed, { create: true })));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await t.rawAccount(user))?.balance).toBe(7);
    });

    it('moves journal entries to the ledger idempotently and removes exactly those from the journal', async () => {
      const user = `c-${randomUUID()}`;
      await t.store.applyEntry(user, entry(10), { create: true });
      const snap = (await t.store.applyEntry(user, entry(-3), { minBalance: 3 }))!;
      const ledgerEntries = snap.journal.map((e, i) => ({ ...e, userId: user, seq: i + 1, balanceAfter: i === 0 ? 10 : 7 }));
      // Two movers at once, and one that gets only a part of what the other wrote: no error, no double.
      await Promise.all([t.store.insertLedgerEntries(ledgerEntries), t.store.insertLedgerEntries(ledgerEntries)]);
      await t.store.insertLedgerEntries([ledgerEntries[1]!, { ...ledgerEntries[0]!, id: randomUUID(), seq: 99 }]);
      const book = { seq: 2, clock: null, debt: 0, grants: [{ id: 'base', source: 'base', priority: 1000, seq: 0, remaining: 7 }] };
      expect(await t.store.getBooks([user])).toEqual([]);
      // Two movers storing the first book at once: one stores it, the other is told it lost only when the
      // stored book is not the one it would have written.
      const [a, b] = await Promise.all([
        t.store.writeBooks([{ userId: user, from: null, to: book }]),
        t.store.writeBooks([{ userId: user, from: null, to: book }]),
      ]);
      expect([a, b]).toEqual([[], []]);
      expect(await t.store.writeBooks([{ userId: user, from: null, to: { ...book, seq: 3 } }])).toEqual([user]);
      // A mover that read an older book changes nothing and is told so.
      expect(await t.store.writeBooks([{ userId: user, from: 0, to: { ...book, seq: 9 } }])).toEqual([user]);
      expect(await t.store.getBooks([user, `c-${randomUUID()}`])).toEqual([{ userId: user, book }]);
      // The book is its own document: the account's changes neither hold nor return it.
      expect(await t.rawAccount(user)).not.toHaveProperty('book');
      await t.store.pullJournals([{ userId: user, entries: snap.journal }]);
      await t.store.pullJournals([{ userId: user, entries: snap.journal }]); // again: nothing more to remove
      expect((await t.store.getAccount(user))?.journal).toEqual([]);
      // The next book replaces this one only from its seq.
      const next = { ...book, seq: 3, grants: [{ ...book.grants[0]!, remaining: 8 }] };
      expect(await t.store.writeBooks([{ userId: user, from: 2, to: next }])).toEqual([]);
      expect(await t.store.writeBooks([{ userId: user, from: 2, to: { ...next, seq: 4 } }])).toEqual([user]);
      expect(await t.store.getBooks([user])).toEqual([{ userId: user, book: next }]);
      const later = (await t.store.applyEntry(user, entry(1)))!;
      expect(later.journal).toHaveLength(1);
      expect((await t.rawAccount(user))?.journal).toHaveLength(1);
      const listed = await t.store.listLedger(user, { limit: 10 });
      expect(listed.map((e) => [e.seq, e.amount, e.balanceAfter])).toEqual([
        [99, 10, 10],
        [2, -3, 7],
        [1, 10, 10],
      ]);
      expect(await t.store.listLedger(user, { limit: 10, beforeSeq: 99 })).toHaveLength(2);
      expect(await t.store.hasLedgerEntry(ledgerEntries[0]!.id)).toBe(true);
      expect(await t.store.accountsWithJournal(new Date(Date.now() + 1000), 10_000)).toContain(user);
      expect(await t.store.accountsWithJournal(new Date(Date.now() - 60_000), 10_000)).not.toContain(user);
    });

    it('applies an entry only at the count it was computed at (ifCount), once among concurrent ones', async () => {
      const user = `c-${randomUUID()}`;
      const at = (await t.store.applyEntry(user, entry(10), { create: true }))!.count;
      expect(await t.store.applyEntry(user, entry(-1), { ifCount: at + 1 })).toBeNull();
      const results = await Promise.all(Array.from({ length: 20 }, () => t.store.applyEntry(user, entry(-2, { kind: 'expire' }), { ifCount: at })));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await t.rawAccount(user))?.balance).toBe(8);
    });

    it('finds ledger entries by id and accounts whose stored grant book holds a due grant', async () => {
      const user = `c-${randomUUID()}`;
      const snap = (await t.store.applyEntry(user, entry(10), { create: true }))!;
      const e = { ...snap.journal[0]!, userId: user, seq: 1, balanceAfter: 10, grants: [{ grant: 'g', amount: 10, source: 'promotion', priority: 50, seq: 1, expiresAt: new Date(Date.now() + 60_000) }] };
      await t.store.insertLedgerEntries([e]);
      expect(await t.store.getLedgerEntries([e.id, randomUUID()])).toEqual([e]);
      const due = new Date(Date.now() + 60_000);
      const book = { seq: 1, clock: null, debt: 0, grants: [{ id: 'g', source: 'promotion', priority: 50, seq: 1, remaining: 10, expiresAt: due }] };
      expect(await t.store.writeBooks([{ userId: user, from: null, to: book }])).toEqual([]);
      expect(await t.store.accountsWithGrantsDue(new Date(due.getTime() - 1), 10_000)).not.toContain(user);
      expect(await t.store.accountsWithGrantsDue(due, 10_000)).toContain(user);
      const server = await t.store.serverTime();
      if (server) expect(Math.abs(server.getTime() - Date.now())).toBeLessThan(60_000);
    });

    it('lists ledger entries whose reservation is due until each is closed, and keeps them as they were', async () => {
      const user = `c-${randomUUID()}`;
      const past = new Date(Date.now() - 60_000);
      const future = new Date(Date.now() + 60_000);
      const due = { ...entry(-10, { ref: { note: 'POST /chat', settleBy: past } }), userId: user, seq: 2, balanceAfter: 0 };
      const notYet = { ...entry(-10, { ref: { note: 'POST /chat', settleBy: future } }), userId: user, seq: 3, balanceAfter: -10 };
      const plain = { ...entry(-10, { ref: { note: 'POST /chat' } }), userId: user, seq: 4, balanceAfter: -20 };
      await t.store.insertLedgerEntries([due, notYet, plain]);
      const mine = async () => (await t.store.openReservationsBefore(new Date(), 10_000)).filter((e) => e.userId === user);
      expect(await mine()).toEqual([due]);
      await Promise.all([t.store.closeReservation(due.id), t.store.closeReservation(due.id)]);
      expect(await mine()).toEqual([]);
      // Closed or not, the entry reads back as it was written.
      expect(await t.store.listLedger(user, { limit: 10 })).toEqual([plain, notYet, due]);
    });

    it('grants a claim to exactly one of many concurrent claimants, and releases only a pending one it names', async () => {
      const claimId = `claim-${randomUUID()}`;
      const base = { id: claimId, userId: 'u', key: 'k', state: 'pending' as const, createdAt: new Date(), amount: 1 };
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => t.store.insertClaim({ ...base, entryId: `e${i}` })));
      const winners = results.filter((r) => r === null);
      expect(winners).toHaveLength(1);
      const held = (await t.store.getClaim(claimId))!;
      await t.store.releaseClaim(claimId, 'not-the-holder');
      expect(await t.store.getClaim(claimId)).not.toBeNull();
      expect(await t.store.pendingClaimsBefore(new Date(Date.now() + 1000), 10_000)).toEqual(
        expect.arrayContaining([expect.objectContaining({ id: claimId })]),
      );
      // Re-armed only from the entry it names, and marked applied only by the entry it names.
      expect(await t.store.rearmClaim(claimId, 'not-the-holder', { entryId: 'e-new', createdAt: new Date() })).toBe(false);
      expect(await t.store.rearmClaim(claimId, held.entryId, { entryId: 'e-new', createdAt: new Date() })).toBe(true);
      await t.store.markClaimApplied(claimId, held.entryId);
      expect((await t.store.getClaim(claimId))?.state).toBe('pending');
      await t.store.markClaimApplied(claimId, 'e-new');
      await t.store.releaseClaim(claimId, 'e-new');
      expect((await t.store.getClaim(claimId))?.state).toBe('applied');
    });

    it('keeps a request key’s fingerprint and expiry, and its answer once, only for the entry the claim names', async () => {
      const claimId = `claim-${randomUUID()}`;
      const request = { route: 'POST /api/summarize', digest: 'ab'.repeat(32) };
      const expiresAt = new Date(Date.now() + 60_000);
      const claim = { id: claimId, userId: 'u', key: 'request:k', entryId: 'e1', state: 'pending' as const, createdAt: new Date(), amount: -5, request, expiresAt };
      expect(await t.store.insertClaim(claim)).toBeNull();
      // Whoever finds the key taken learns what the request was.
      expect(await t.store.insertClaim({ ...claim, entryId: 'e2', request: { ...request, digest: 'cd'.repeat(32) } })).toMatchObject({ entryId: 'e1', request, expiresAt });
      await t.store.markClaimApplied(claimId, 'e1');

      // The largest answer the kit keeps (64 KiB), with text outside ASCII, comes back byte for byte.
      const text = 'é ✓ '.repeat(8000);
      const body = JSON.stringify({ text, pad: 'x'.repeat(64 * 1024 - Buffer.byteLength(JSON.stringify({ text, pad: '' }))) });
      expect(Buffer.byteLength(body)).toBe(64 * 1024);
      const reply = { kept: true as const, status: 201, contentType: 'application/json; charset=utf-8', body };
      expect(await t.store.saveReply(claimId, 'not-the-holder', reply)).toBe(false);
      expect((await t.store.getClaim(claimId))?.reply).toBeUndefined();
      // Concurrent saves: exactly one is kept, and a later one never overwrites it.
      const saved = await Promise.all(Array.from({ length: 10 }, (_, i) => t.store.saveReply(claimId, 'e1', { ...reply, status: 200 + i })));
      expect(saved.filter(Boolean)).toHaveLength(1);
      const winner = 200 + saved.indexOf(true);
      expect(await t.store.saveReply(claimId, 'e1', { kept: false, status: 500, reason: 'too_large' })).toBe(false);
      const stored = await t.store.getClaim(claimId);
      expect(stored).toMatchObject({ state: 'applied', request, expiresAt, reply: { ...reply, status: winner } });
      expect(Buffer.byteLength(stored!.reply!.kept ? stored!.reply!.body : '')).toBe(Buffer.byteLength(body));

      // An answer that was not kept is recorded as such; an empty body has no content type.
      const other = { ...claim, id: `claim-${randomUUID()}` };
      await t.store.insertClaim(other);
      expect(await t.store.saveReply(other.id, 'e1', { kept: false, status: 200, reason: 'not_json' })).toBe(true);
      expect((await t.store.getClaim(other.id))?.reply).toEqual({ kept: false, status: 200, reason: 'not_json' });
      const empty = { ...claim, id: `claim-${randomUUID()}` };
      await t.store.insertClaim(empty);
      expect(await t.store.saveReply(empty.id, 'e1', { kept: true, status: 204, body: '' })).toBe(true);
      expect((await t.store.getClaim(empty.id))?.reply).toEqual({ kept: true, status: 204, body: '' });
    });

    it('deletes applied claims past their expiry, in batches, and never a pending one or one without expiry', async () => {
      const make = (state: 'pending' | 'applied', expiresAt?: Date) => ({
        id: `claim-${randomUUID()}`,
        userId: 'u',
        key: `request:${randomUUID()}`,
        entryId: randomUUID(),
        state,
        createdAt: new Date(),
        amount: -1,
        ...(expiresAt ? { expiresAt } : {}),
      });
      const past = new Date(Date.now() - 1000);
      const expired = [make('applied', past), make('applied', past), make('applied', past)];
      const pending = make('pending', past);
      const live = make('applied', new Date(Date.now() + 3_600_000));
      const forever = make('applied');
      for (const c of [...expired, pending, live, forever]) expect(await t.store.insertClaim(c)).toBeNull();

      expect(await t.store.deleteExpiredClaims(new Date(), 2)).toBeLessThanOrEqual(2);
      await t.store.deleteExpiredClaims(new Date(), 10_000);
      for (const c of expired) expect(await t.store.getClaim(c.id)).toBeNull();
      for (const c of [pending, live, forever]) expect(await t.store.getClaim(c.id)).toMatchObject({ id: c.id, state: c.state });
      expect(await t.store.deleteExpiredClaims(new Date(), 10_000)).toBe(0);
      // The pending one goes once it is decided and applied.
      await t.store.markClaimApplied(pending.id, pending.entryId);
      expect(await t.store.deleteExpiredClaims(new Date(), 10_000)).toBeLessThanOrEqual(1);
      expect(await t.store.getClaim(pending.id)).toBeNull();
    });

    it('fences an entry: a write of it that arrives afterwards never lands, and the fence says if it had', async () => {
      const user = `c-${randomUUID()}`;
      const late = entry(-5, { key: 'request:late' });
      // On an account that does not exist yet: the fence creates it, empty.
      expect(await t.store.fenceEntry(user, late.id)).toEqual({ inJournal: false });
      expect(await t.store.isFenced(user, late.id)).toBe(true);
      expect(await t.store.applyEntry(user, entry(10), { create: true })).toMatchObject({ balance: 10, count: 1 });
      expect(await t.store.applyEntry(user, late)).toBeNull();
      expect(await t.store.applyEntry(user, { ...late, key: undefined })).toBeNull(); // unkeyed writes are fenced too
      const landed = entry(-2);
      await t.store.applyEntry(user, landed, { minBalance: 2 });
      expect(await t.store.fenceEntry(user, landed.id)).toEqual({ inJournal: true });
      expect(await t.store.isFenced(user, randomUUID())).toBe(false);
      expect((await t.rawAccount(user))?.balance).toBe(8);
    });

    it('refuses a change that would take the balance out of the safe integer range', async () => {
      const user = `c-${randomUUID()}`;
      expect(await t.store.applyEntry(user, entry(Number.MAX_SAFE_INTEGER - 1), { create: true })).toMatchObject({ balance: Number.MAX_SAFE_INTEGER - 1 });
      expect(await t.store.applyEntry(user, entry(2), { create: true })).toBeNull();
      expect(await t.store.applyEntry(user, entry(1), { create: true })).toMatchObject({ balance: Number.MAX_SAFE_INTEGER });
      expect((await t.rawAccount(user))?.balance).toBe(Number.MAX_SAFE_INTEGER);
    });

    it('records a purchase once and replaces it only by compare-and-set on its version', async () => {
      const p: Purchase = newPurchase({ sessionId: `cs_${randomUUID()}`, userId: 'buyer', credits: 100, amountTotal: 1000, currency: 'usd', livemode: false });
      const inserted = await Promise.all(Array.from({ length: 10 }, () => t.store.insertPurchase(p)));
      expect(inserted.filter(Boolean)).toHaveLength(1);
      expect(await t.store.getPurchase(p.id)).toEqual(p);

      const pi = `pi_${randomUUID()}`;
      const wins = await Promise.all(
        Array.from({ length: 10 }, (_, i) => t.store.replacePurchase({ ...p, paymentIntentId: pi, granted: i, version: 1 })),
      );
      expect(wins.filter(Boolean)).toHaveLength(1);
      expect(await t.store.findPurchaseByPaymentIntent(pi)).toMatchObject({ id: p.id, version: 1 });
      const adj = { key: 'checkout:x:0', kind: 'purchase' as const, amount: 100, ref: { checkoutSessionId: p.id } };
      const stored = (await t.store.getPurchase(p.id))!;
      expect(await t.store.replacePurchase({ ...stored, pendingAdjustments: [adj], version: 2 })).toBe(true);
      expect((await t.store.purchasesWithPendingAdjustments(10_000)).map((x) => x.id)).toContain(p.id);
      expect(await t.store.replacePurchase({ ...stored, version: 2 })).toBe(false); // a stale copy loses
    });

    it('records an alert once whoever records it, keeps a delivered one delivered, and lists the pending oldest first', async () => {
      const user = `c-${randomUUID()}`;
      const alert = (seq: number, createdAt: Date): AlertRecord => ({
        id: `${seq}:10:${user}`, userId: user, level: 10, balance: 9, entryId: randomUUID(), seq, at: createdAt, state: 'pending', createdAt,
      });
      const older = alert(3, new Date(Date.now() - 2000));
      const newer = alert(7, new Date(Date.now() - 1000));
      const recorded = await Promise.all(Array.from({ length: 10 }, () => t.store.insertAlerts([newer, older])));
      expect(recorded.flat().sort()).toEqual([newer.id, older.id].sort());
      const mine = async (before: Date) => (await t.store.pendingAlertsBefore(before, 10_000)).filter((a) => a.userId === user);
      expect((await mine(new Date())).map((a) => a.id)).toEqual([older.id, newer.id]);
      expect(await mine(new Date(Date.now() - 1500))).toEqual([older]);
      await t.store.markAlertDelivered(older.id);
      expect(await t.store.insertAlerts([older])).toEqual([]); // recorded again by a late mover: still delivered
      expect((await mine(new Date())).map((a) => a.id)).toEqual([newer.id]);
      expect(await t.store.insertAlerts([])).toEqual([]);
    });

    it('keeps facts about a payment once each, whatever the concurrency', async () => {
      const pi = `pi_${randomUUID()}`;
      expect(await t.store.paymentFacts(pi)).toEqual([]);
      await Promise.all(Array.from({ length: 10 }, (_, i) => t.store.addPaymentFacts(pi, ['a', `b${i % 2}`])));
      expect((await t.store.paymentFacts(pi)).sort()).toEqual(['a', 'b0', 'b1']);
    });

    it('records a subscription once, replaces it only by compare-and-set, and finds it by user, Stripe id and payment', async () => {
      const user = `c-${randomUUID()}`;
      const older = newSubscription({ id: `sub_ck_${randomUUID()}`, userId: user, plan: 'pro', price: 'price_pro', checkoutSessionId: 'cs_1', livemode: false }, new Date(Date.now() - 1000));
      const s = newSubscription({ id: `sub_ck_${randomUUID()}`, userId: user, plan: 'pro', price: 'price_pro', checkoutSessionId: 'cs_2', livemode: false });
      const inserted = await Promise.all(Array.from({ length: 10 }, () => t.store.insertSubscription(s)));
      expect(inserted.filter(Boolean)).toHaveLength(1);
      expect(await t.store.insertSubscription(older)).toBe(true);
      expect(await t.store.getSubscription(s.id)).toEqual(s);
      expect(await t.store.getSubscription('sub_ck_none')).toBeNull();

      const pi = `pi_${randomUUID()}`;
      const next = { ...s, version: 1, stripeSubscriptionId: `sub_${s.id}`, periods: [{ start: 1, end: 2, grants: [{ id: 'grant:x', plan: 'pro', credits: 5, invoiceId: 'in_1' }], paymentIntentIds: [pi], revokedAt: null }] };
      const replaced = await Promise.all(Array.from({ length: 5 }, () => t.store.replaceSubscription(next)));
      expect(replaced.filter(Boolean)).toHaveLength(1);
      expect(await t.store.replaceSubscription({ ...s, version: 5 })).toBe(false);
      expect(await t.store.getSubscription(s.id)).toEqual(next);

      expect((await t.store.findSubscriptions({ userId: user }, 10)).map((x) => x.id)).toEqual([s.id, older.id]); // newest first
      expect((await t.store.findSubscriptions({ userId: user }, 1)).map((x) => x.id)).toEqual([s.id]);
      expect((await t.store.findSubscriptions({ stripeSubscriptionId: `sub_${s.id}` }, 10)).map((x) => x.id)).toEqual([s.id]);
      expect((await t.store.findSubscriptions({ paymentIntentId: pi }, 10)).map((x) => x.id)).toEqual([s.id]);
      expect(await t.store.findSubscriptions({ paymentIntentId: 'pi_none' }, 10)).toEqual([]);

      // A slot record before its session exists: its nulls read back as nulls, and its id is taken once.
      const slot = { ...newSubscription({ id: `sub_ck_${randomUUID()}`, userId: user, plan: 'pro', price: 'price_pro', checkoutSessionId: null, livemode: null }), slot: 0, checkoutUrl: null, checkoutExpiresAt: 1 };
      expect((await Promise.all(Array.from({ length: 10 }, () => t.store.insertSubscription(slot)))).filter(Boolean)).toHaveLength(1);
      expect(await t.store.getSubscription(slot.id)).toEqual(slot);
    });

    it('keeps one auto-recharge record per user, replaced only by compare-and-set, and finds the enabled and the due ones', async () => {
      const user = `r-${randomUUID()}`;
      const other = `r-${randomUUID()}`;
      const fresh = newRechargeRecord(user);
      const inserted = await Promise.all(Array.from({ length: 10 }, () => t.store.insertRecharge(fresh)));
      expect(inserted.filter(Boolean)).toHaveLength(1);
      expect(await t.store.getRecharge(user)).toEqual(fresh);
      expect(await t.store.getRecharge(other)).toBeNull();

      const due = new Date(Date.now() - 1000);
      const card = { paymentMethodId: 'pm_1', brand: 'visa', last4: '4242', expMonth: 12, expYear: 2030, savedAt: new Date() };
      const wins = await Promise.all(
        Array.from({ length: 10 }, (_, i) => t.store.replaceRecharge({ ...fresh, enabled: true, threshold: 10 + i, card, dueAt: due, version: 1 })),
      );
      expect(wins.filter(Boolean)).toHaveLength(1);
      const stored = (await t.store.getRecharge(user))!;
      expect(stored).toMatchObject({ enabled: true, card, dueAt: due, version: 1 });
      expect(await t.store.replaceRecharge({ ...fresh, version: 1 })).toBe(false); // a stale copy loses
      await t.store.insertRecharge(newRechargeRecord(other));

      expect((await t.store.enabledRecharges([user, other, 'nobody'])).map((r) => r.id)).toEqual([user]);
      expect(await t.store.enabledRecharges([])).toEqual([]);
      const dueIds = async (at: Date) => (await t.store.rechargesDue(at, 10_000)).map((r) => r.id);
      expect(await dueIds(new Date())).toContain(user);
      expect(await dueIds(new Date(Date.now() - 5000))).not.toContain(user);

      // A replacement without `dueAt` removes it: nothing is owed any more.
      const { dueAt: _gone, ...rest } = stored;
      expect(await t.store.replaceRecharge({ ...rest, version: 2 })).toBe(true);
      expect((await t.store.getRecharge(user))!.dueAt).toBeUndefined();
      expect(await dueIds(new Date())).not.toContain(user);
    });
  });
}
