/**
 * Auto-recharge: when a spend takes a user's balance from at or above their threshold to below it, the kit
 * charges their saved card once, off-session, and the credits arrive with Stripe's verified
 * `payment_intent.succeeded`.
 *
 * Exactly one payment per crossing, never two in flight for one user, whatever the instances:
 * - the crossing is a fact of the ledger, found where every entry passes in `seq` order with its balance
 *   after (the journal mover, as for low-balance alerts), off the request path;
 * - the user's record moves idle -> pending(attempt) by a compare-and-set on its version, and records the
 *   crossing's `seq`: a second mover of the same entries, or a late one, finds it taken and starts nothing;
 * - the PaymentIntent is created after that write, with a Stripe idempotency key derived from the attempt: a
 *   retry after a lost reply, or reconcile() finishing an attempt a crash left unsent (`dueAt`), gets the
 *   same PaymentIntent back, never a second payment;
 * - the attempt is recorded as a purchase (`recharge:<user>:<attempt>`, stripe/purchases.ts) before the
 *   payment exists, so the succeeded event credits it once by its key, and refunds and disputes, found by
 *   payment intent, claw it back exactly like a Checkout purchase.
 * Declines are retried by reconcile() after the cooldown, at most `maxDeclines` declines per crossing, then
 * auto-recharge pauses. A card that needs authentication leaves the attempt in `requires_action` until the
 * card holder completes it on the app's page (the action route gives that page the client secret).
 */
import { createHash } from 'node:crypto';
import type Stripe from 'stripe';
import { CreditsError, PaymentProviderError } from '../errors';
import { monthKey, newRechargeRecord, type RechargeAttempt, type RechargeRecord, type RechargeResult } from '../domain/recharge';
import type { LedgerEntry } from '../domain/types';
import { Background } from '../ledger/background';
import type { Ledger } from '../ledger';
import type { NeutralOptions } from '../options';
import type { CreditStore } from '../store/types';
import { METADATA } from './checkout';
import type { Purchases } from './purchases';
import type { AutoRechargeEvent, ResolvedAutoRecharge } from './recharge-options';
import type { StripeCheckoutSessionLike } from './types';

/** Metadata keys of the kit's off-session payments and card-saving sessions, beside METADATA's. */
export const RECHARGE_METADATA = { attempt: 'credit_kit_recharge_attempt', purpose: 'credit_kit_purpose' } as const;
const SETUP_PURPOSE = 'auto_recharge_card';
/** How many card-saving sessions a record remembers (the newest): enough for a person who opened a few tabs. */
const KEEP_SETUP_SESSIONS = 5;
/**
 * Stripe keeps an idempotency key for at least 24 hours: an attempt still unsent after this long is never
 * sent, since its key might no longer stop a second payment (its creation may have reached Stripe, the reply lost).
 */
export const RECHARGE_SEND_WINDOW_MS = 23 * 3_600_000;

/** The purchase record of an attempt: what the succeeded event credits and refunds claw back. */
export const rechargePurchaseId = (userId: string, attemptId: string) => `recharge:${userId}:${attemptId}`;

/** The Stripe idempotency key of an attempt's PaymentIntent: the same attempt never creates two payments. */
export function rechargeIdempotencyKey(userId: string, attemptId: string): string {
  return `credit-kit-recharge-${createHash('sha256').update(`${userId}\u0000${attemptId}`).digest('hex')}`;
}

/** What a verified event did to auto-recharge, as the webhook answers it. */
export interface RechargeEventResult {
  creditsAdded: number;
  state?: string;
  cardSaved?: boolean;
  reason?: string;
}

type Verdict =
  | { kind: 'sent'; paymentIntentId: string }
  | { kind: 'requires_action'; paymentIntentId: string | undefined }
  | { kind: 'declined'; paymentIntentId: string | undefined; reason: string }
  | { kind: 'succeeded'; paymentIntentId: string };

interface Deps {
  store: CreditStore;
  ledger: Ledger;
  purchases: Purchases;
  options: NeutralOptions;
  settings: ResolvedAutoRecharge;
  /** How long an attempt's creation is left to the instance that started it before reconcile() sends it. */
  leaseMs: number;
}

export class AutoRecharge {
  /** Its own queue: Stripe calls and the app's hook never hold up the ledger's money work. */
  readonly background: Background;

  constructor(private readonly deps: Deps) {
    this.background = new Background(deps.options.hooks.onBackgroundError);
  }

  private get stripe(): Stripe {
    const { stripe } = this.deps.options;
    if (!stripe) throw new CreditsError('not_configured', 'Stripe is not configured: pass `stripe` and `webhookSecret` to createCredits.');
    return stripe;
  }

  get settings(): ResolvedAutoRecharge {
    return this.deps.settings;
  }

  /** A user's record, or a fresh (not yet stored) one. */
  async read(userId: string): Promise<RechargeRecord> {
    return (await this.deps.store.getRecharge(userId)) ?? newRechargeRecord(userId);
  }

  /**
   * Changes a user's record by compare-and-set, creating it first if needed; `change` returns null to change
   * nothing, and may be called again after a concurrent write. Returns the record as written (or as found).
   */
  async update(userId: string, change: (r: RechargeRecord) => RechargeRecord | null, first?: RechargeRecord): Promise<{ record: RechargeRecord; changed: boolean }> {
    const { store } = this.deps;
    for (let read: RechargeRecord | null | undefined = first; ; read = undefined) {
      let current = read ?? (await store.getRecharge(userId));
      if (!current) {
        const fresh = newRechargeRecord(userId);
        if (!(await store.insertRecharge(fresh))) continue;
        current = fresh;
      }
      const next = change(current);
      if (!next) return { record: current, changed: false };
      const written = { ...next, version: current.version + 1, updatedAt: new Date() };
      if (await store.replaceRecharge(written)) return { record: written, changed: true };
    }
  }

  // ---- the trigger ------------------------------------------------------------------------------------

  /**
   * The journal mover's hook: the crossings among entries just written to the ledger, each decided by a
   * compare-and-set before the entries leave their journals (a failure throws, and the move is tried again).
   */
  async watch(entries: readonly LedgerEntry[]): Promise<void> {
    const spenders = [...new Set(entries.filter((e) => e.amount < 0).map((e) => e.userId))];
    if (spenders.length === 0) return;
    const records = await this.deps.store.enabledRecharges(spenders);
    for (const record of records) {
      const { threshold } = record;
      if (threshold === null) continue;
      const crossings = entries
        .filter((e) => e.userId === record.id && e.seq > record.crossingSeq && e.amount < 0 && e.balanceAfter - e.amount >= threshold && e.balanceAfter < threshold)
        .sort((a, b) => a.seq - b.seq);
      if (crossings.length > 0) await this.cross(record, crossings[0]!.seq, crossings[crossings.length - 1]!.seq);
    }
  }

  /** One crossing (the first of those up to `upTo`): starts an attempt if the rules allow, else records why not. */
  private async cross(record: RechargeRecord, seq: number, upTo: number): Promise<void> {
    const balance = await this.deps.ledger.getBalance(record.id);
    const now = new Date();
    let event: AutoRechargeEvent | undefined;
    const { record: written, changed } = await this.update(
      record.id,
      (r) => {
        event = undefined;
        if (r.crossingSeq >= seq) return null; // decided already, by this or another instance
        const seen = { ...r, crossingSeq: Math.max(r.crossingSeq, upTo) };
        // Only an idle, complete, enabled record starts anything; a crossing meanwhile is one in flight's.
        if (!armed(r) || r.state !== 'idle') return seen;
        // A late mover's old crossing, with the balance back above the threshold since: nothing is owed.
        if (balance >= r.threshold) return seen;
        // The last attempt's PaymentIntent is not canceled yet (reconcile() does it): it could still succeed.
        const skip = r.attempt?.open ? 'previous_payment_open' : this.refusal(r, r.topUp.credits, now);
        if (skip) {
          event = this.event(r, 'skipped', { reason: skip });
          const skipped = { ...seen, lastResult: result('skipped', r.topUp, now, skip) };
          // The cooldown and an open payment only delay the crossing: reconcile() starts it when they are over.
          // The monthly cap refuses it (nothing more this month), so it is not owed.
          return skip === 'monthly_cap' ? notOwed(skipped) : this.owe(skipped, seq, now);
        }
        const started = { ...seen, ...this.starting(r, attemptFor(r, seq, 1, now), now), declines: 0 };
        event = this.event(started, 'started', {});
        return started;
      },
      record,
    );
    if (!changed) return;
    if (event) this.tell(event);
    if (written.state === 'pending' && written.attempt?.crossingSeq === seq && !written.attempt.paymentIntentId) this.sendLater(written.id, written.attempt.id);
  }

  /** Why the cooldown or the cap forbid starting `credits` now, or undefined when they allow it. */
  private refusal(r: RechargeRecord, credits: number, now: Date): string | undefined {
    const { cooldownMs, monthlyCap } = this.deps.settings;
    if (r.lastAttemptAt && now.getTime() - r.lastAttemptAt.getTime() < cooldownMs) return 'cooldown';
    const used = r.month.key === monthKey(now) ? r.month.credits : 0;
    if (used + credits > monthlyCap) return 'monthly_cap';
    return undefined;
  }

  /**
   * The record owing crossing `seq`: due to reconcile() when the cooldown from the last attempt is over (now,
   * when a previous payment is open: reconcile() cancels it first), or earlier if already due for something else.
   */
  private owe(r: RechargeRecord, seq: number, now: Date): RechargeRecord {
    const at = r.attempt?.open || !r.lastAttemptAt ? now.getTime() : Math.max(now.getTime(), r.lastAttemptAt.getTime() + this.deps.settings.cooldownMs);
    const dueAt = r.dueAt && r.dueAt.getTime() < at ? r.dueAt : new Date(at);
    return { ...r, owed: seq, dueAt };
  }

  /** The fields of a record that starts `attempt`: pending, counted against the month, owed to reconcile until sent. */
  private starting(r: RechargeRecord, attempt: RechargeAttempt, now: Date): Partial<RechargeRecord> {
    const key = monthKey(now);
    const used = r.month.key === key ? r.month.credits : 0;
    return {
      state: 'pending',
      attempt,
      owed: undefined,
      lastAttemptAt: now,
      month: { key, credits: used + attempt.credits },
      dueAt: new Date(now.getTime() + this.deps.leaseMs),
    };
  }

  // ---- sending the payment ----------------------------------------------------------------------------

  private sendLater(userId: string, attemptId: string): void {
    this.background.retry(async () => void (await this.send(userId, attemptId)), `creating the off-session payment of auto-recharge attempt ${attemptId} for user ${userId}`);
  }

  /**
   * Creates the attempt's PaymentIntent (again, under the same idempotency key, when retried) and records the
   * answer; true when it asked Stripe.
   */
  async send(userId: string, attemptId: string): Promise<boolean> {
    const r = await this.deps.store.getRecharge(userId);
    const attempt = r?.attempt;
    if (!r || !attempt || attempt.id !== attemptId || r.state !== 'pending' || attempt.paymentIntentId) return false;
    if (!r.customerId) throw new CreditsError('internal', `Auto-recharge record of ${userId} has an attempt but no customer.`);
    if (Date.now() - attempt.startedAt.getTime() > RECHARGE_SEND_WINDOW_MS) {
      await this.giveUpUnsent(userId, attemptId);
      return false;
    }
    const purchaseId = rechargePurchaseId(userId, attempt.id);
    // Recorded before the payment exists: whatever arrives first, the succeeded event finds what to credit.
    await this.deps.purchases.record({ sessionId: purchaseId, userId, credits: attempt.credits, amountTotal: attempt.amount, currency: attempt.currency, livemode: false });
    const metadata = {
      [METADATA.userId]: userId,
      [METADATA.credits]: String(attempt.credits),
      [RECHARGE_METADATA.attempt]: attempt.id,
    };
    let pi: Stripe.PaymentIntent;
    try {
      pi = await this.stripe.paymentIntents.create(
        {
          amount: attempt.amount,
          currency: attempt.currency,
          customer: r.customerId,
          payment_method: attempt.paymentMethodId,
          off_session: true,
          confirm: true,
          description: `Auto-recharge: ${attempt.credits} ${this.deps.options.creditName}`,
          metadata,
        },
        { idempotencyKey: rechargeIdempotencyKey(userId, attempt.id) },
      );
    } catch (err) {
      const e = err as { type?: string; code?: string; decline_code?: string; payment_intent?: { id?: string } };
      if (e.type !== 'StripeCardError') throw new PaymentProviderError(err); // retried, under the same key
      const paymentIntentId = e.payment_intent?.id;
      if (paymentIntentId) await this.deps.purchases.offSession(purchaseId, paymentIntentId, false, false);
      await this.verdict(
        userId,
        attempt.id,
        e.code === 'authentication_required'
          ? { kind: 'requires_action', paymentIntentId }
          : { kind: 'declined', paymentIntentId, reason: e.decline_code ?? e.code ?? 'card_declined' },
      );
      return true;
    }
    // Linked now, so that a refund delivered before the succeeded event finds its purchase. Credits come
    // only with the verified event, never from this answer.
    await this.deps.purchases.offSession(purchaseId, pi.id, pi.livemode, false);
    await this.verdict(userId, attempt.id, pi.status === 'requires_action' ? { kind: 'requires_action', paymentIntentId: pi.id } : { kind: 'sent', paymentIntentId: pi.id });
    return true;
  }

  /** An attempt unsent past RECHARGE_SEND_WINDOW_MS: dropped (it bought nothing that the kit knows of), the record idle. */
  private async giveUpUnsent(userId: string, attemptId: string): Promise<void> {
    const now = new Date();
    let event: AutoRechargeEvent | undefined;
    const { changed } = await this.update(userId, (r) => {
      event = undefined;
      const a = r.attempt;
      if (r.state !== 'pending' || !a || a.id !== attemptId || a.paymentIntentId) return null;
      const next: RechargeRecord = { ...r, state: 'idle', month: uncounted(r, a), lastResult: result('skipped', a, now, 'attempt_too_old') };
      event = { ...this.event(next, 'skipped', { reason: 'attempt_too_old' }), attemptId: a.id };
      return withoutDue(next);
    });
    if (changed && event) this.tell(event);
  }

  /** Applies what Stripe said about an attempt to the record, once: a verdict for another attempt, or a stale one, changes nothing. */
  private async verdict(userId: string, attemptId: string, v: Verdict, balance?: number): Promise<RechargeRecord | null> {
    const now = new Date();
    let event: AutoRechargeEvent | undefined;
    const { record, changed } = await this.update(userId, (r) => {
      event = undefined;
      const a = r.attempt;
      if (!a || a.id !== attemptId) return null;
      const withPi = v.paymentIntentId && !a.paymentIntentId ? { ...a, paymentIntentId: v.paymentIntentId } : a;
      const base = { ...r, attempt: withPi };
      const pi = withPi.paymentIntentId ?? undefined;
      switch (v.kind) {
        case 'sent':
          if (r.state !== 'pending' || a.paymentIntentId) return null;
          return withoutDue(base);
        case 'requires_action':
          if (r.state !== 'pending') return a.paymentIntentId || !v.paymentIntentId ? null : base;
          event = this.event(base, 'requires_action', {});
          // Left to the card holder until actionTimeoutMs; then reconcile() cancels it and frees the record.
          return { ...base, state: 'requires_action', lastResult: result('requires_action', a, now, undefined, pi), dueAt: new Date(now.getTime() + this.deps.settings.actionTimeoutMs) };
        case 'declined': {
          if (r.state !== 'pending' && r.state !== 'requires_action') return a.paymentIntentId || !v.paymentIntentId ? null : base;
          const declines = r.declines + 1;
          // A declined attempt bought nothing: it no longer counts against the month.
          const month = uncounted(r, a);
          const paused = declines >= this.deps.settings.maxDeclines;
          // Its PaymentIntent may still be confirmed (a page holding the client secret): open until canceled.
          const attempt: RechargeAttempt = withPi.paymentIntentId ? { ...withPi, open: true } : withPi;
          const next: RechargeRecord = { ...base, attempt, declines, month, lastResult: result('declined', a, now, v.reason, pi), state: paused ? 'paused' : 'retrying' };
          if (paused) {
            event = this.event(next, 'paused', { reason: v.reason });
            return owing(next, now);
          }
          event = this.event(next, 'declined', { reason: v.reason });
          // Retried by reconcile() once the cooldown from this attempt's start is over.
          return { ...next, dueAt: new Date(Math.max(now.getTime(), a.startedAt.getTime() + this.deps.settings.cooldownMs)) };
        }
        case 'succeeded': {
          // Told before (a replay). But an idle record may still hold an open payment (given up on, e.g. a paused
          // record that got a new card) that was confirmed after all: its credits arrived, so it is closed here,
          // or every later crossing would wait behind it for good.
          if (r.state === 'idle' && !a.open) return null;
          // A success after the attempt was counted as declined (not expected of Stripe) counts against the month again.
          const recount = r.state === 'retrying' || r.state === 'paused' || r.state === 'idle';
          const month = recount && r.month.key === monthKey(a.startedAt) ? { ...r.month, credits: r.month.credits + a.credits } : r.month;
          const { open: _open, ...closed } = withPi; // it succeeded: nothing left to cancel
          const next: RechargeRecord = { ...base, attempt: closed, state: 'idle', declines: 0, month, lastResult: result('succeeded', a, now, undefined, v.paymentIntentId) };
          event = this.event(next, 'succeeded', {});
          // Its credits arrived and the balance is still below the threshold (a threshold above the top-up, or
          // spends meanwhile): the crossing is owed again, started by reconcile() after the cooldown and within
          // the monthly cap, so this never loops. Attempts of one crossing are numbered on, so each has its own key.
          const below = balance !== undefined && next.enabled && next.threshold !== null && balance < next.threshold;
          // A crossing owed already (one that waited behind this open payment) stays the one owed.
          if (next.owed !== undefined) return next;
          return below ? this.owe(withoutDue(next), a.crossingSeq, now) : withoutDue(next);
        }
      }
    });
    if (!changed) return null;
    if (event) this.tell(event);
    // Given up on: canceled at Stripe now (reconcile() does it if Stripe is down), before anything else starts.
    if (record.attempt?.open) this.cancelLater(userId);
    return record;
  }

  private cancelLater(userId: string): void {
    this.background.retry(async () => void (await this.cancelOpen(userId)), `canceling the declined auto-recharge payment of user ${userId}`);
  }

  /**
   * Cancels the PaymentIntent of an attempt the kit gave up on, and records that it can no longer succeed.
   * True when nothing is open any more; false when Stripe says it succeeded or is processing meanwhile (its
   * event settles it, credited once by its purchase record; no other attempt starts before).
   */
  private async cancelOpen(userId: string): Promise<boolean> {
    const r = await this.deps.store.getRecharge(userId);
    const a = r?.attempt;
    if (!a?.open) return true;
    if (!(await this.cancelAtStripe(a.paymentIntentId!))) return false;
    await this.update(userId, (x) => {
      if (x.attempt?.id !== a.id || !x.attempt.open) return null;
      const { open: _open, ...closed } = x.attempt;
      if (x.state === 'retrying' || x.state === 'pending' || x.state === 'requires_action') return { ...x, attempt: closed };
      // Canceled: a crossing owed meanwhile is due once the cooldown allows.
      return x.owed !== undefined ? this.owe(withoutDue({ ...x, attempt: closed }), x.owed, new Date()) : withoutDue({ ...x, attempt: closed });
    });
    return true;
  }

  /** Cancels a PaymentIntent at Stripe; false when it cannot be, having succeeded (or being processed). */
  private async cancelAtStripe(paymentIntentId: string): Promise<boolean> {
    try {
      await this.stripe.paymentIntents.cancel(paymentIntentId);
      return true;
    } catch (err) {
      const e = err as { code?: string; payment_intent?: { status?: string }; raw?: { payment_intent?: { status?: string } } };
      if (e.code !== 'payment_intent_unexpected_state') throw new PaymentProviderError(err);
      return (e.payment_intent ?? e.raw?.payment_intent)?.status === 'canceled';
    }
  }

  /** A payment that needed authentication nobody completed within actionTimeoutMs: canceled at Stripe, the record idle. */
  private async abandonAction(r: RechargeRecord): Promise<boolean> {
    const a = r.attempt!;
    if (!(await this.cancelAtStripe(a.paymentIntentId!))) return false;
    const now = new Date();
    let event: AutoRechargeEvent | undefined;
    const { changed } = await this.update(r.id, (x) => {
      event = undefined;
      if (x.state !== 'requires_action' || x.attempt?.id !== a.id) return null;
      const { open: _open, ...closed } = x.attempt;
      const reason = 'authentication_not_completed';
      const next: RechargeRecord = { ...x, attempt: closed, state: 'idle', month: uncounted(x, a), lastResult: result('declined', a, now, reason, a.paymentIntentId ?? undefined) };
      event = this.event(next, 'declined', { reason });
      return withoutDue(next);
    });
    if (changed && event) this.tell(event);
    return true;
  }

  // ---- Stripe's events ----------------------------------------------------------------------------------

  /** payment_intent.succeeded / payment_failed / requires_action about a payment this kit started; null when not one. */
  async paymentIntentEvent(type: string, pi: Stripe.PaymentIntent): Promise<RechargeEventResult | null> {
    const meta = pi.metadata ?? {};
    const attemptId = meta[RECHARGE_METADATA.attempt];
    const userId = meta[METADATA.userId];
    if (!attemptId || !userId) return null;
    const purchaseId = rechargePurchaseId(userId, attemptId);
    const purchase = await this.deps.store.getPurchase(purchaseId);
    if (!purchase) return { creditsAdded: 0, reason: 'no auto-recharge attempt with this id was started by this app' };
    const problems: string[] = [];
    if (purchase.userId !== userId) problems.push('the user differs');
    // Metadata anyone creating a PaymentIntent can write: the customer the kit created for this user is what ties it.
    const owner = await this.deps.store.getRecharge(purchase.userId);
    if (!owner?.customerId || idOf(pi.customer) !== owner.customerId) problems.push('the customer is not the one this app created for the user');
    if (pi.amount !== purchase.amountTotal) problems.push(`amount is ${pi.amount}, recorded ${purchase.amountTotal}`);
    if (pi.currency !== purchase.currency) problems.push(`currency is ${pi.currency}, recorded ${purchase.currency}`);
    if (meta[METADATA.credits] !== String(purchase.credits)) problems.push('the credits differ');
    if (purchase.paymentIntentId && purchase.paymentIntentId !== pi.id) problems.push('another payment intent is linked to this attempt');
    if (problems.length) return { creditsAdded: 0, reason: `the payment does not match what this app started: ${problems.join('; ')}` };

    if (type === 'payment_intent.succeeded') {
      // Credits first (once, by the purchase's key), then the record: a crash between leaves the event unanswered, and Stripe retries it.
      const { creditsAdded } = await this.deps.purchases.offSession(purchaseId, pi.id, pi.livemode, true);
      const balance = await this.deps.ledger.getBalance(userId);
      const record = await this.verdict(userId, attemptId, { kind: 'succeeded', paymentIntentId: pi.id }, balance);
      return { creditsAdded, ...(record ? { state: record.state } : {}) };
    }
    await this.deps.purchases.offSession(purchaseId, pi.id, pi.livemode, false);
    const code = pi.last_payment_error?.code;
    const verdict: Verdict =
      type === 'payment_intent.requires_action' || code === 'authentication_required'
        ? { kind: 'requires_action', paymentIntentId: pi.id }
        : { kind: 'declined', paymentIntentId: pi.id, reason: pi.last_payment_error?.decline_code ?? code ?? 'payment_failed' };
    const record = await this.verdict(userId, attemptId, verdict);
    return { creditsAdded: 0, ...(record ? { state: record.state } : { reason: 'the attempt had moved on; nothing changed' }) };
  }

  /** checkout.session.completed in setup mode: the card the user saved, if the session is one the kit created for them. */
  async setupCompleted(session: StripeCheckoutSessionLike & { setup_intent?: unknown; customer?: unknown }): Promise<RechargeEventResult | null> {
    if (session.mode !== 'setup' || session.metadata?.[RECHARGE_METADATA.purpose] !== SETUP_PURPOSE) return null;
    const userId = session.metadata?.[METADATA.userId];
    const record = userId ? await this.deps.store.getRecharge(userId) : null;
    if (!userId || !record || !record.setupSessions.includes(session.id)) {
      return { creditsAdded: 0, reason: 'no card-saving session with this id was created by this app' };
    }
    const customer = idOf(session.customer);
    if (!record.customerId || customer !== record.customerId) return { creditsAdded: 0, reason: 'the session is for another customer' };
    if (session.status !== 'complete') return { creditsAdded: 0, reason: `the session is ${String(session.status)}` };
    const setupIntentId = idOf(session.setup_intent);
    if (!setupIntentId) return { creditsAdded: 0, reason: 'the session names no setup intent' };
    let si: Stripe.SetupIntent;
    try {
      si = await this.stripe.setupIntents.retrieve(setupIntentId, { expand: ['payment_method'] });
    } catch (err) {
      throw new PaymentProviderError(err);
    }
    // Stripe's answers name the customer; one that names another customer is refused. (stripe-mock's fixed
    // answers name none: the signed session, created by the kit for this customer, is what ties them.)
    if (si.customer && idOf(si.customer) !== customer) return { creditsAdded: 0, reason: 'the setup intent is for another customer' };
    const pm = typeof si.payment_method === 'string' ? await this.stripe.paymentMethods.retrieve(si.payment_method) : si.payment_method;
    if (!pm?.card) return { creditsAdded: 0, reason: 'the saved payment method is not a card' };
    if (pm.customer && idOf(pm.customer) !== customer) return { creditsAdded: 0, reason: 'the payment method belongs to another customer' };
    const card = { paymentMethodId: pm.id, brand: pm.card.brand, last4: pm.card.last4, expMonth: pm.card.exp_month, expYear: pm.card.exp_year, savedAt: new Date() };
    const { record: written } = await this.update(userId, (r) => {
      if (r.card?.paymentMethodId === card.paymentMethodId) return null;
      // A new card lifts a pause: the declines were the old card's.
      return { ...r, card, ...(r.state === 'paused' ? { state: 'idle' as const, declines: 0 } : {}) };
    });
    return { creditsAdded: 0, cardSaved: true, state: written.state };
  }

  // ---- reconcile ----------------------------------------------------------------------------------------

  /**
   * Sends attempts a crash left unsent (older than `olderThanMs`) and retries declined ones whose cooldown is
   * over; how many payments it created or retried.
   */
  async reconcile(olderThanMs: number, batch: number, onError: (err: unknown) => void): Promise<number> {
    const now = Date.now();
    let n = 0;
    for (let r of await this.deps.store.rechargesDue(new Date(now + this.deps.leaseMs - olderThanMs), batch)) {
      try {
        const due = r.dueAt !== undefined && r.dueAt.getTime() <= now;
        if (due && r.attempt?.open && r.state !== 'requires_action') {
          // A declined attempt's PaymentIntent is canceled before a retry, or anything else, may start.
          if (!(await this.cancelOpen(r.id))) {
            await this.later(r.id, now);
            continue;
          }
          const fresh = await this.deps.store.getRecharge(r.id);
          if (!fresh) continue;
          r = fresh;
        }
        if (r.state === 'pending' && r.attempt && !r.attempt.paymentIntentId && r.attempt.startedAt.getTime() <= now - olderThanMs) {
          if (await this.send(r.id, r.attempt.id)) n++;
        } else if (r.state === 'requires_action') {
          if (due && !(await this.abandonAction(r))) await this.later(r.id, now);
        } else if (r.state === 'retrying' && r.dueAt && r.dueAt.getTime() <= now) {
          const attempt = await this.retry(r);
          if (attempt && (await this.send(r.id, attempt.id))) n++;
        } else if (r.state === 'idle' && r.owed !== undefined && !r.attempt?.open) {
          // Date.now(), not the pass's start: canceling an open payment just above may have made it due.
          if (r.dueAt && r.dueAt.getTime() <= Date.now()) {
            const attempt = await this.payOwed(r);
            if (attempt && (await this.send(r.id, attempt.id))) n++;
          }
        } else if (r.state !== 'pending' && r.state !== 'retrying' && !r.attempt?.open) {
          await this.update(r.id, (x) => (x.dueAt && !x.attempt?.open && x.owed === undefined ? withoutDue(x) : null)); // nothing owed any more
        }
      } catch (err) {
        onError(err);
      }
    }
    return n;
  }

  /** Looks at the record again a lease from now (a PaymentIntent that succeeded while the kit gave up on it: its event settles it). */
  private async later(userId: string, now: number): Promise<void> {
    await this.update(userId, (x) => (x.dueAt && x.dueAt.getTime() <= now ? { ...x, dueAt: new Date(now + this.deps.leaseMs) } : null));
  }

  /**
   * The attempt for a crossing owed since a cooldown, an open payment or a recharge that left the balance below
   * the threshold: started by the same compare-and-set as the trigger's (one instance wins, the others find it
   * no longer owed), if the balance is still below the threshold, auto-recharge still on and the cap allows it.
   */
  private async payOwed(record: RechargeRecord): Promise<RechargeAttempt | null> {
    const balance = await this.deps.ledger.getBalance(record.id);
    const now = new Date();
    let event: AutoRechargeEvent | undefined;
    const { record: written, changed } = await this.update(
      record.id,
      (r) => {
        event = undefined;
        const seq = r.owed;
        if (seq === undefined || r.state !== 'idle' || r.attempt?.open) return null; // paid, or another instance's now
        // Turned off, card removed, or the balance back above the threshold meanwhile: nothing is owed any more.
        if (!armed(r) || balance >= r.threshold) return withoutDue(notOwed(r));
        const skip = this.refusal(r, r.topUp.credits, now);
        if (skip === 'cooldown') {
          const due = this.owe(withoutDue(r), seq, now); // not yet (a clock ahead elsewhere): due when it is over
          return due.dueAt!.getTime() === r.dueAt?.getTime() ? null : due;
        }
        if (skip) {
          event = this.event(r, 'skipped', { reason: skip });
          return withoutDue(notOwed({ ...r, lastResult: result('skipped', r.topUp, now, skip) }));
        }
        // Attempts of one crossing are numbered on (a crossing owed again after its recharge succeeded): each its own key.
        const n = r.attempt?.crossingSeq === seq ? r.attempt.n + 1 : 1;
        const next = { ...r, ...this.starting(r, attemptFor(r, seq, n, now), now), declines: 0 };
        event = this.event(next, 'started', {});
        return next;
      },
      record,
    );
    if (!changed) return null;
    if (event) this.tell(event);
    return written.state === 'pending' && written.attempt?.paymentIntentId === null ? written.attempt : null;
  }

  /** The next attempt of a declined crossing, if it is still wanted and allowed. */
  private async retry(record: RechargeRecord): Promise<RechargeAttempt | null> {
    const balance = await this.deps.ledger.getBalance(record.id);
    const now = new Date();
    let event: AutoRechargeEvent | undefined;
    const { record: written, changed } = await this.update(
      record.id,
      (r) => {
        event = undefined;
        if (r.state !== 'retrying' || !r.attempt || !r.dueAt || r.dueAt.getTime() > now.getTime()) return null;
        const prev = r.attempt;
        if (prev.open) return null; // canceled first (reconcile), never beside a PaymentIntent that may still succeed
        // Turned off, card removed, or the balance back above the threshold: the crossing needs nothing more.
        if (!armed(r) || balance >= r.threshold) return withoutDue({ ...r, state: 'idle', declines: 0 });
        const skip = this.refusal({ ...r, lastAttemptAt: null }, r.topUp.credits, now);
        if (skip) {
          event = this.event(r, 'skipped', { reason: skip });
          return withoutDue({ ...r, state: 'idle', declines: 0, lastResult: result('skipped', r.topUp, now, skip) });
        }
        const next = { ...r, ...this.starting(r, attemptFor(r, prev.crossingSeq, prev.n + 1, now), now) };
        event = this.event(next, 'started', {});
        return next;
      },
      record,
    );
    if (!changed) return null;
    if (event) this.tell(event);
    return written.state === 'pending' ? written.attempt : null;
  }

  async flush(): Promise<void> {
    await this.background.flush();
  }

  // ---- telling the app ------------------------------------------------------------------------------------

  private event(r: RechargeRecord, type: AutoRechargeEvent['type'], extra: { reason?: string }): AutoRechargeEvent {
    const a = type === 'skipped' ? undefined : r.attempt;
    const topUp = a ?? r.topUp;
    return {
      type,
      userId: r.id,
      ...(a ? { attemptId: a.id } : {}),
      credits: topUp?.credits ?? 0,
      amount: topUp?.amount ?? 0,
      currency: topUp?.currency ?? this.deps.options.pricing.currency,
      ...(a?.paymentIntentId ? { paymentIntentId: a.paymentIntentId } : {}),
      ...(extra.reason ? { reason: extra.reason } : {}),
      state: type === 'started' ? 'pending' : r.state,
    };
  }

  private tell(event: AutoRechargeEvent): void {
    const hook = this.deps.settings.onAutoRecharge;
    if (!hook) return;
    this.background.track(
      Promise.resolve()
        .then(() => hook(event))
        .catch((err: unknown) => this.deps.options.hooks.onBackgroundError(err)),
    );
  }

  // ---- the card -------------------------------------------------------------------------------------------

  /** The user's Stripe customer, created once (the idempotency key and the compare-and-set keep it one). */
  async customerFor(userId: string): Promise<string> {
    const existing = await this.deps.store.getRecharge(userId);
    if (existing?.customerId) return existing.customerId;
    let customer: Stripe.Customer;
    try {
      customer = await this.stripe.customers.create(
        { metadata: { [METADATA.userId]: userId } },
        { idempotencyKey: `credit-kit-customer-${createHash('sha256').update(userId).digest('hex')}` },
      );
    } catch (err) {
      throw new PaymentProviderError(err);
    }
    const { record } = await this.update(userId, (r) => (r.customerId ? null : { ...r, customerId: customer.id }), existing ?? undefined);
    return record.customerId!;
  }

  /** A setup-mode Checkout Session that saves a card for off-session use; recorded before anyone sees its URL. */
  async startCardSetup(userId: string): Promise<{ id: string; url: string | null }> {
    const { publicUrl } = this.deps.options;
    if (!publicUrl) throw new CreditsError('not_configured', 'Saving a card needs the publicUrl option (or NEXT_PUBLIC_URL) for its return URL.');
    const customer = await this.customerFor(userId);
    const metadata = { [METADATA.userId]: userId, [RECHARGE_METADATA.purpose]: SETUP_PURPOSE };
    let session: Stripe.Checkout.Session;
    try {
      session = await this.stripe.checkout.sessions.create({
        mode: 'setup',
        customer,
        currency: this.deps.options.pricing.currency, // setup mode needs it to choose the payment methods offered
        client_reference_id: userId,
        metadata,
        setup_intent_data: { metadata },
        success_url: `${publicUrl}${this.deps.settings.returnPath}`,
        cancel_url: `${publicUrl}${this.deps.settings.returnPath}`,
      });
    } catch (err) {
      throw new PaymentProviderError(err);
    }
    await this.update(userId, (r) => ({ ...r, setupSessions: [...r.setupSessions.filter((s) => s !== session.id), session.id].slice(-KEEP_SETUP_SESSIONS) }));
    return { id: session.id, url: session.url };
  }

  /** Removes the card on file (detached at Stripe, so that nobody can charge it) and turns auto-recharge off. */
  async removeCard(userId: string): Promise<RechargeRecord> {
    const record = await this.read(userId);
    if (record.card) {
      try {
        await this.stripe.paymentMethods.detach(record.card.paymentMethodId);
      } catch (err) {
        if ((err as { code?: string }).code !== 'resource_missing') throw new PaymentProviderError(err);
      }
    }
    return (await this.update(userId, (r) => (r.card || r.enabled ? { ...r, card: null, enabled: false } : null))).record;
  }

  /** What the page needs to complete an attempt that needs authentication, or null when none does. */
  async pendingAction(userId: string): Promise<{ paymentIntentId: string; clientSecret: string; credits: number; amount: number; currency: string } | null> {
    const r = await this.deps.store.getRecharge(userId);
    const a = r?.attempt;
    if (!r || r.state !== 'requires_action' || !a?.paymentIntentId) return null;
    let pi: Stripe.PaymentIntent;
    try {
      pi = await this.stripe.paymentIntents.retrieve(a.paymentIntentId);
    } catch (err) {
      throw new PaymentProviderError(err);
    }
    if (!pi.client_secret) return null;
    // The id comes from this user's own record, never from the request: only the owner gets its secret.
    return { paymentIntentId: a.paymentIntentId, clientSecret: pi.client_secret, credits: a.credits, amount: a.amount, currency: a.currency };
  }
}

/** A record that may start a payment: turned on, with a card, a top-up and a threshold. */
type Armed = RechargeRecord & { enabled: true; card: NonNullable<RechargeRecord['card']>; topUp: NonNullable<RechargeRecord['topUp']>; threshold: number };

function armed(r: RechargeRecord): r is Armed {
  return r.enabled && r.card !== null && r.topUp !== null && r.threshold !== null;
}

/** Attempt `n` for crossing `seq`: the record's top-up, from its card, not yet sent. */
function attemptFor(r: Armed, seq: number, n: number, now: Date): RechargeAttempt {
  return {
    id: `${seq}.${n}`,
    crossingSeq: seq,
    n,
    credits: r.topUp.credits,
    amount: r.topUp.amount,
    currency: r.topUp.currency,
    paymentMethodId: r.card.paymentMethodId,
    paymentIntentId: null,
    startedAt: now,
  };
}

/** The record with no crossing owed. */
export function notOwed(r: RechargeRecord): RechargeRecord {
  const { owed: _owed, ...rest } = r;
  return rest;
}

function withoutDue(r: RechargeRecord): RechargeRecord {
  const { dueAt: _due, ...rest } = r;
  return rest;
}

/** Due now when its attempt is open (reconcile() cancels it), else nothing owed. */
function owing(r: RechargeRecord, now: Date): RechargeRecord {
  return r.attempt?.open ? { ...r, dueAt: now } : withoutDue(r);
}

/** The month with an attempt that bought nothing no longer counted in it. */
function uncounted(r: RechargeRecord, a: RechargeAttempt): RechargeRecord['month'] {
  return r.month.key === monthKey(a.startedAt) ? { ...r.month, credits: Math.max(0, r.month.credits - a.credits) } : r.month;
}

function result(status: RechargeResult['status'], of: { credits: number; amount: number }, at: Date, reason?: string, paymentIntentId?: string): RechargeResult {
  return { status, at, credits: of.credits, amount: of.amount, ...(reason ? { reason } : {}), ...(paymentIntentId ? { paymentIntentId } : {}) };
}

function idOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string') return (value as { id: string }).id;
  return null;
}
