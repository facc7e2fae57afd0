/**
 * Subscriptions: Checkout in subscription mode for the app's plans, one allowance grant per paid billing
 * period, and the subscription's state kept from Stripe's events, whatever their number and order.
 *
 * The kit records a subscription when it creates its Checkout Session, under an id of its own (`ref`) that
 * the session's and the subscription's metadata carry. Every event is matched to that record; an event
 * about a subscription the kit did not create, or a price that is no plan, is acknowledged and ignored.
 *
 * Exactly once: a period's allowance is `grantCredits` under a key of the subscription and the period
 * (`subscription:<sub>:<periodStart>`), an upgrade's difference under one of the period and the plan, and
 * a refund or dispute takes a period back with `revokeGrant`, once per grant. Each step is idempotent and
 * the record's changes are compare-and-sets that merge (never overwrite) what they learn, so a delivery
 * repeated, reordered or concurrent with another ends the same; a crash between two steps is finished by
 * Stripe's retry of the delivery, which was not answered 2xx.
 */
import { createHmac } from 'node:crypto';
import type Stripe from 'stripe';
import { ConflictError, CreditsError, InvalidRequestError, NotFoundError, PaymentProviderError, describe } from '../errors';
import type { GrantOptions, GrantResult, RevokeOptions } from '../domain/core';
import type { RevokeResult } from '../ledger';
import { holdsSlot, LIVE_STATUSES, newSubscription, type SubscriptionGrant, type SubscriptionPeriod, type SubscriptionRecord } from '../domain/subscription-record';
import type { NeutralOptions } from '../options';
import type { CreditStore } from '../store/types';
import type { ResolvedPlan } from './plans';
import type { StripeFact } from './facts';
import type { Plan, SubscriptionCheckoutCreated, UserPlan } from '../http/subscription-wire';

/** Metadata keys the kit writes on the session and the subscription it creates. */
export const SUBSCRIPTION_METADATA = { userId: 'credit_kit_user_id', plan: 'credit_kit_plan', ref: 'credit_kit_subscription' } as const;

/** The ledger operations subscriptions use (the credits object's own grantCredits and revokeGrant). */
export interface SubscriptionLedger {
  grantCredits(userId: string, amount: number, options: GrantOptions): Promise<GrantResult>;
  revokeGrant(userId: string, grantId: string, options?: RevokeOptions): Promise<RevokeResult>;
}

/** What an event about a subscription did. */
export interface SubscriptionEventResult {
  /** The kit's subscription id the event is about, when it is one of the kit's. */
  subscription: string | null;
  /** Credits granted by this delivery (0 when granted before). */
  creditsGranted: number;
  /** Credits taken back by this delivery (a refunded or disputed period). */
  revoked: number;
  /** Set when the event changed nothing, with why. */
  ignored?: true;
  reason?: string;
}

/** The grant id of a period's allowance (grantCredits' id is `grant:<idempotencyKey>`). */
export const periodKey = (stripeSubscriptionId: string, periodStart: number) => `subscription:${stripeSubscriptionId}:${periodStart}` as const;
/** An upgrade's difference, once per period (by its end) and plan. */
export const upgradeKey = (stripeSubscriptionId: string, periodEnd: number, plan: string) => `subscription:${stripeSubscriptionId}:upgrade:${periodEnd}:${plan}` as const;
const grantIdOfKey = (key: string) => `grant:${key}`;
const isUpgrade = (grantId: string) => grantId.includes(':upgrade:');
const REVOKE_REASON = 'Subscription payment refunded or disputed';

/** How long a subscription checkout accepts payment (Stripe allows 30 minutes to 24 hours). */
const CHECKOUT_OPEN_SECONDS = 3600;
/** How long a second subscribe waits for the session the slot's holder is creating. */
const SESSION_WAIT_MS = 5_000;
/** After this, a slot with no session recorded is taken over (its holder died between its two writes). */
const SESSION_TAKEOVER_MS = 30_000;

interface Deps {
  store: CreditStore;
  options: NeutralOptions;
  ledger: SubscriptionLedger;
}

export class Subscriptions {
  private priceCache: Promise<Map<string, Pick<Plan, 'amount' | 'currency' | 'interval'>>> | undefined;

  constructor(private readonly deps: Deps) {}

  private get stripe(): Stripe {
    const { stripe } = this.deps.options;
    if (!stripe) throw new CreditsError('not_configured', 'Stripe is not configured: pass `stripe` and `webhookSecret` to createCredits.');
    return stripe;
  }

  private get plans() {
    return this.deps.options.plans;
  }

  /** The plan a request names, or a 400 that lists the known ones (nothing is created). */
  parseSubscribeBody(body: unknown): ResolvedPlan {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new InvalidRequestError('The body must be a JSON object such as {"plan": "pro"}.');
    }
    const fields = body as Record<string, unknown>;
    const extra = Object.keys(fields).find((k) => k !== 'plan');
    if (extra !== undefined) {
      throw new InvalidRequestError(`Unknown field "${extra.slice(0, 40)}": send only "plan"; prices and the user are set by the server.`, { field: extra.slice(0, 40) });
    }
    const plan = typeof fields.plan === 'string' ? this.plans.byId.get(fields.plan) : undefined;
    if (!plan) {
      const known = [...this.plans.byId.keys()];
      throw new InvalidRequestError(`Unknown plan ${describe(fields.plan)}. ${known.length ? `Known plans: ${known.join(', ')}.` : 'This app offers no plans.'}`, { field: 'plan' });
    }
    return plan;
  }

  /**
   * POST /credits/subscribe: a Checkout Session in subscription mode for the plan. Refused (409) while the
   * user has a live subscription: changing plans goes through the portal.
   *
   * One at a time per user, atomically: the request first inserts the record of the user's next slot, whose
   * id is derived from the user and the slot number, so of concurrent requests (on any number of instances)
   * exactly one inserts it and creates the session; the others answer that same session once it is
   * recorded (the same plan) or 409 (another plan, after trying to expire the open one). The slot is freed
   * when its checkout expires (`checkout.session.expired`, or the `expires_at` the kit set has passed) or
   * its subscription ends. A holder that died before recording its session is taken over after a while,
   * with the same Stripe idempotency key, so Stripe answers the session it created, if any.
   */
  async subscribe(userId: string, plan: ResolvedPlan, _clientKey?: string): Promise<SubscriptionCheckoutCreated> {
    const { options, store } = this.deps;
    if (!options.publicUrl) throw new CreditsError('not_configured', 'Checkout needs the publicUrl option (or NEXT_PUBLIC_URL) for its return URLs.');
    void this.stripe; // not configured: its error, before anything is written
    let expiredOne = false;
    for (let attempt = 0; attempt < 8; attempt++) {
      const now = Math.floor(Date.now() / 1000);
      const mine = await store.findSubscriptions({ userId }, 50);
      const held = mine.find((s) => holdsSlot(s, now) !== null);
      if (held) {
        if (holdsSlot(held, now) === 'live') {
          throw new ConflictError(
            `You already subscribe to the ${this.plans.byId.get(held.plan)?.label ?? held.plan} plan: change or cancel it in the billing portal (POST /credits/portal).`,
            { plan: held.plan },
          );
        }
        if (held.plan === plan.id) return this.openSession(held);
        // Another plan chosen while a checkout is open: expire that one at Stripe (so it can never be paid),
        // then take the next slot. Once: a checkout that cannot be expired (being paid) is a 409.
        if (!expiredOne && held.checkoutSessionId && (await this.expireCheckout(held))) {
          expiredOne = true;
          continue;
        }
        throw new ConflictError(
          `A checkout for the ${this.plans.byId.get(held.plan)?.label ?? held.plan} plan is open: finish it, or try again once it has expired.`,
          { plan: held.plan },
        );
      }
      const slot = Math.max(-1, ...mine.map((s) => s.slot ?? -1)) + 1;
      const record: SubscriptionRecord = {
        ...newSubscription({ id: this.slotId(userId, slot), userId, plan: plan.id, price: plan.price, checkoutSessionId: null, livemode: null }),
        slot,
        customerId: mine.find((s) => s.customerId)?.customerId ?? null,
        checkoutUrl: null,
        checkoutExpiresAt: now + CHECKOUT_OPEN_SECONDS,
      };
      if (await store.insertSubscription(record)) return this.openSession(record, true);
      // Another request took this slot meanwhile: read again, and join it.
    }
    throw new ConflictError('Your subscription checkout is changing: try again in a moment.');
  }

  /**
   * The slot's id: keyed with the webhook secret (one per endpoint, so per app), so two apps or databases
   * sharing a Stripe account never make the same id (an event's metadata names it).
   */
  private slotId(userId: string, slot: number): string {
    const key = this.deps.options.webhookSecret ?? '';
    return `sub_ck_${createHmac('sha256', key).update(JSON.stringify([userId, slot])).digest('hex').slice(0, 32)}`;
  }

  /**
   * The slot's Checkout Session: created by the request that inserted the slot (`mine`); any other waits
   * for it to be recorded, and takes the creation over when its holder seems dead (the same idempotency key
   * and parameters, so Stripe answers the session it created before, if any).
   */
  private async openSession(slot: SubscriptionRecord, mine = false): Promise<SubscriptionCheckoutCreated> {
    const deadline = Date.now() + SESSION_WAIT_MS;
    let record: SubscriptionRecord | null = slot;
    while (!mine && record && !record.checkoutSessionId) {
      if (Date.now() - record.createdAt.getTime() >= SESSION_TAKEOVER_MS) {
        mine = true;
        break;
      }
      if (Date.now() >= deadline) throw new ConflictError('Your subscription checkout is being created: try again in a moment.');
      await new Promise((r) => setTimeout(r, 50));
      record = await this.deps.store.getSubscription(slot.id);
    }
    if (!record) throw new ConflictError('Your subscription checkout is changing: try again in a moment.');
    if (record.checkoutSessionId) {
      return { id: record.checkoutSessionId, url: record.checkoutUrl ?? null, plan: record.plan };
    }
    const { options } = this.deps;
    const metadata = { [SUBSCRIPTION_METADATA.userId]: record.userId, [SUBSCRIPTION_METADATA.plan]: record.plan, [SUBSCRIPTION_METADATA.ref]: record.id };
    const params: Stripe.Checkout.SessionCreateParams = {
      mode: 'subscription',
      line_items: [{ price: record.price, quantity: 1 }],
      client_reference_id: record.userId,
      metadata,
      subscription_data: { metadata },
      success_url: `${options.publicUrl}${options.successPath}`,
      cancel_url: `${options.publicUrl}${options.cancelPath}`,
      ...(record.checkoutExpiresAt ? { expires_at: record.checkoutExpiresAt } : {}),
      ...(record.customerId ? { customer: record.customerId } : {}),
    };
    let session: Stripe.Checkout.Session;
    try {
      session = await this.stripe.checkout.sessions.create(params, { idempotencyKey: `credit-kit-subscribe-${record.id}` });
    } catch (err) {
      // Refused outright (a 4xx other than a conflict or rate limit): no session exists, the slot is freed.
      // Anything else (a timeout, a 5xx) may have created one: the slot stays held, and is taken over later.
      const status = (err as { statusCode?: number }).statusCode;
      if (status !== undefined && status >= 400 && status < 500 && status !== 409 && status !== 429) {
        await this.update(record, (s) => (s.checkoutSessionId || s.status !== 'checkout' ? s : { ...s, status: 'incomplete_expired', checkoutExpiresAt: 0 }));
      }
      throw new PaymentProviderError(err);
    }
    const written = await this.update(record, (s) =>
      s.checkoutSessionId ? s : { ...s, checkoutSessionId: session.id, checkoutUrl: session.url, livemode: session.livemode },
    );
    return { id: written.checkoutSessionId!, url: written.checkoutUrl ?? session.url, plan: written.plan };
  }

  /** Expires an open checkout at Stripe and frees its slot; false when it cannot be (it is complete, or Stripe is unreachable). */
  private async expireCheckout(record: SubscriptionRecord): Promise<boolean> {
    try {
      await this.stripe.checkout.sessions.expire(record.checkoutSessionId!);
    } catch {
      // Refused: free the slot only if Stripe says the session has expired already (its event is on the way).
      const session = await this.stripe.checkout.sessions.retrieve(record.checkoutSessionId!).catch(() => null);
      if (session?.status !== 'expired') return false;
    }
    await this.update(record, (s) => (s.status === 'checkout' ? { ...s, status: 'incomplete_expired' } : s));
    return true;
  }

  /** POST /credits/portal: a Stripe customer portal session for the user's customer. */
  async portal(userId: string): Promise<{ url: string }> {
    const mine = await this.deps.store.findSubscriptions({ userId }, 20);
    const customer = mine.find((s) => s.customerId)?.customerId;
    if (!customer) throw new NotFoundError('You have no subscription to manage yet: subscribe to a plan first.');
    try {
      const session = await this.stripe.billingPortal.sessions.create({ customer, return_url: this.deps.options.publicUrl! });
      return { url: session.url };
    } catch (err) {
      throw new PaymentProviderError(err);
    }
  }

  /** The user's live subscription, or `{ plan: null }`. */
  async getPlan(userId: string): Promise<UserPlan> {
    const mine = await this.deps.store.findSubscriptions({ userId }, 20);
    const live = mine.find((s) => LIVE_STATUSES.has(s.status));
    if (!live) return { plan: null };
    const plan = this.plans.byId.get(live.plan);
    return {
      plan: live.plan,
      label: plan?.label ?? live.plan,
      credits: plan?.credits ?? 0,
      status: live.status,
      currentPeriod: live.currentPeriod ? { start: iso(live.currentPeriod.start), end: iso(live.currentPeriod.end) } : null,
      cancelAtPeriodEnd: live.cancelAtPeriodEnd,
    };
  }

  /** The app's plans, with each Price's amount and interval from Stripe when it can be read (read once). */
  async listPlans(): Promise<Plan[]> {
    const prices = await this.prices();
    return [...this.plans.byId.values()].map((p) => ({
      id: p.id,
      label: p.label,
      credits: p.credits,
      price: p.price,
      rollover: p.rollover,
      ...(prices.get(p.price) ?? { amount: null, currency: null, interval: null }),
    }));
  }

  private prices(): Promise<Map<string, Pick<Plan, 'amount' | 'currency' | 'interval'>>> {
    const { stripe } = this.deps.options;
    if (!stripe || this.plans.byId.size === 0) return Promise.resolve(new Map());
    this.priceCache ??= (async () => {
      const out = new Map<string, Pick<Plan, 'amount' | 'currency' | 'interval'>>();
      for (const plan of this.plans.byId.values()) {
        const price = await stripe.prices.retrieve(plan.price);
        out.set(plan.price, {
          amount: price.unit_amount,
          currency: price.currency,
          interval: price.recurring ? { unit: price.recurring.interval, count: price.recurring.interval_count } : null,
        });
      }
      return out;
    })().catch(() => {
      // Stripe unreachable: the plans are listed without amounts, and read again next time.
      this.priceCache = undefined;
      return new Map();
    });
    return this.priceCache;
  }

  /** checkout.session.completed (or expired) for a session in subscription mode. */
  async sessionEvent(session: Stripe.Checkout.Session): Promise<SubscriptionEventResult> {
    const ref = session.metadata?.[SUBSCRIPTION_METADATA.ref];
    const record = ref ? await this.deps.store.getSubscription(ref) : null;
    if (!record) return ignored(null, 'no subscription checkout with this session was created by this app');
    const problems: string[] = [];
    // A slot whose holder died before recording its session learns it here (the verified event names it).
    if (record.checkoutSessionId !== null && record.checkoutSessionId !== session.id) problems.push('the session differs');
    if (session.metadata?.[SUBSCRIPTION_METADATA.userId] !== record.userId) problems.push('the user differs');
    if (record.livemode !== null && session.livemode !== record.livemode) problems.push('livemode differs');
    if (problems.length) return ignored(record.id, `the session does not match what this app created: ${problems.join('; ')}`);
    const subscriptionId = idOf(session.subscription);
    const customerId = idOf(session.customer);
    const expired = session.status === 'expired';
    await this.update(record, (s) => {
      const next = { ...s };
      if (!s.checkoutSessionId) next.checkoutSessionId = session.id;
      if (s.livemode === null) next.livemode = session.livemode;
      if (subscriptionId && !s.stripeSubscriptionId) next.stripeSubscriptionId = subscriptionId;
      if (customerId && !s.customerId) next.customerId = customerId;
      // A subscription event (stateAsOf > 0) knows better than the session.
      if (s.stateAsOf === 0 && s.status === 'checkout') next.status = expired ? 'incomplete_expired' : subscriptionId ? 'active' : s.status;
      return next;
    });
    return { subscription: record.id, creditsGranted: 0, revoked: 0 };
  }

  /** customer.subscription.created / updated / deleted: the newest state wins (by `event.created`). */
  async subscriptionEvent(sub: Stripe.Subscription, asOf: number): Promise<SubscriptionEventResult> {
    const record = await this.findRecord(sub.id, sub.metadata);
    if ('reason' in record) return ignored(null, record.reason);
    if (record.found.livemode !== null && sub.livemode !== record.found.livemode) return ignored(record.found.id, 'livemode differs from the subscription the app created');
    const item = sub.items?.data?.[0];
    const plan = item ? this.plans.byPrice.get(item.price.id) : undefined;
    // A price that is no plan (changed in the dashboard) keeps the recorded plan; its status still counts:
    // a cancellation must stop grants whatever the price. Its invoices are ignored (invoicePaid).
    const unknownPrice = item && !plan ? `the subscription's price ${item.price.id} is not one of the plans: the plan stays ${record.found.plan}` : undefined;
    let stale = false;
    await this.update(record.found, (s) => {
      const newer = asOf > s.stateAsOf || (asOf === s.stateAsOf && sub.status === 'canceled' && s.status !== 'canceled');
      const next = { ...s, stripeSubscriptionId: s.stripeSubscriptionId ?? sub.id, customerId: s.customerId ?? idOf(sub.customer) };
      if (!newer) {
        stale = true;
        return next;
      }
      return {
        ...next,
        status: sub.status,
        plan: plan?.id ?? s.plan,
        currentPeriod: item ? { start: item.current_period_start, end: item.current_period_end } : s.currentPeriod,
        cancelAtPeriodEnd: sub.cancel_at_period_end === true,
        endedAt: sub.ended_at ?? (sub.status === 'canceled' ? (sub.canceled_at ?? asOf) : null),
        stateAsOf: asOf,
      };
    });
    if (stale) return ignored(record.found.id, 'an event newer than this one has been applied');
    return { subscription: record.found.id, creditsGranted: 0, revoked: 0, ...(unknownPrice ? { reason: unknownPrice } : {}) };
  }

  /**
   * invoice.paid: the period's allowance (or an upgrade's difference), exactly once per period and plan.
   * Purchased credits are never touched: a grant only adds its own.
   */
  async invoicePaid(invoice: Stripe.Invoice): Promise<SubscriptionEventResult> {
    const details = invoice.parent?.subscription_details;
    const subscriptionId = idOf(details?.subscription);
    if (!subscriptionId) return ignored(null, 'the invoice is not for a subscription');
    const found = await this.findRecord(subscriptionId, details?.metadata ?? null);
    if ('reason' in found) return ignored(null, found.reason);
    const record = found.found;
    if (record.livemode !== null && invoice.livemode !== record.livemode) return ignored(record.id, 'livemode differs from the subscription the app created');

    const lines = (invoice.lines?.data ?? []).flatMap((line) => {
      const price = idOf(line.pricing?.price_details?.price);
      const plan = price ? this.plans.byPrice.get(price) : undefined;
      const proration = line.parent?.subscription_item_details?.proration === true || line.parent?.invoice_item_details?.proration === true;
      return plan ? [{ plan, amount: line.amount, period: line.period, proration }] : [];
    });
    if (lines.length === 0) return ignored(record.id, 'no line of the invoice is for a price in `plans`');

    const upgrade = invoice.billing_reason === 'subscription_update';
    let want: { key: string; plan: ResolvedPlan; from: ResolvedPlan | null; period: { start: number; end: number } };
    if (upgrade) {
      // A plan change mid-period. Upgrade: up to the new plan's allowance for the rest of the period, once per
      // period and plan. Downgrade: nothing now; the next period's invoice grants the new plan.
      const to = lines.find((l) => l.amount > 0);
      const from = lines.find((l) => l.amount < 0);
      if (!to || !from || to.plan.credits <= from.plan.credits) {
        return ignored(record.id, 'a plan change that is not an upgrade applies from the next period');
      }
      want = { key: upgradeKey(subscriptionId, to.period.end, to.plan.id), plan: to.plan, from: from.plan, period: to.period };
    } else {
      // The period's own line, not a proration an earlier plan change left for this invoice (a renewal carries
      // those of an upgrade made with proration_behavior create_prorations: they are for the period that ended).
      const line = lines.find((l) => l.amount >= 0 && !l.proration) ?? lines.find((l) => l.amount >= 0) ?? lines[0]!;
      want = { key: periodKey(subscriptionId, line.period.start), plan: line.plan, from: null, period: line.period };
    }
    if (record.endedAt !== null && want.period.start >= record.endedAt) {
      return ignored(record.id, 'the subscription was cancelled before this period began');
    }
    const paymentIntents = await this.paymentIntentsOf(invoice);
    // An upgrade's line starts mid-period: the period's true start (which sets how long its rollover lasts)
    // comes from the period's own invoice, the subscription's state, or else Stripe, so that an upgrade
    // delivered before its period's own invoice rolls over as long as one delivered after it.
    const periodStart = upgrade ? await this.periodStartOf(record, subscriptionId, want.period) : want.period.start;

    // The claim: which grant this invoice makes, and how many credits, is written into the record (a
    // compare-and-set) before it is made, then made under its key. So two invoices for one period (a
    // re-issued invoice, a start or end that drifted) make one allowance grant, and an upgrade grants what
    // of the step from its old plan to its new one the period does not hold yet (up, down and up again
    // never adds up to more than the biggest plan paid for). A crash after the claim is finished by any
    // retry: it reads the claim and makes that grant, under the same key.
    let claimed: SubscriptionGrant | null = null;
    let entry: SubscriptionPeriod | null = null;
    const grantId = grantIdOfKey(want.key);
    const after = await this.update(record, (s) => {
      claimed = null;
      const periods = [...s.periods];
      const i = periodOf(periods, want.period, upgrade);
      const base: SubscriptionPeriod = i >= 0 ? periods[i]! : { start: periodStart, end: want.period.end, grants: [], paymentIntentIds: [], revokedAt: null };
      let grants = base.grants;
      const same = grants.find((g) => g.id === grantId) ?? (upgrade ? undefined : grants.find((g) => !isUpgrade(g.id)));
      if (same) {
        // This invoice again (its payments merged), or another invoice for a period already granted: that
        // one grant, and the other invoice's payment is not linked (a refund of a double charge takes nothing).
        claimed = same.invoiceId === invoice.id ? { ...same, paymentIntentIds: [...new Set([...(same.paymentIntentIds ?? []), ...paymentIntents])] } : same;
        grants = grants.map((g) => (g === same ? claimed! : g));
      } else {
        // What this invoice pays for, on the period's ladder of credits: the allowance from 0 to its plan's
        // credits, an upgrade from the plan it leaves to the new one. The grant is the part of that no grant of
        // the period covers yet, so once a period's invoices are all in it holds the biggest plan paid for, and
        // each payment's grant is the same whatever order they arrive in (an upgrade delivered before the
        // period's own invoice grants its difference only; the allowance, granted when its invoice comes, goes
        // with that invoice's payment). Up to Pro then up to Max, either way round, ends with Max's credits.
        const covers: [number, number] = [upgrade ? want.from!.credits : 0, want.plan.credits];
        const free = uncoveredParts(covers, grants.map((g) => coversOf(g, this.plans.byId.get(g.plan)?.credits)));
        const credits = sumOf(free);
        if (credits > 0) {
          // Its rollover, on the period's ladder of rollover maxes the same way: the allowance from 0 to its
          // plan's max, an upgrade from the old plan's max to the new one's, less what the period's grants cover.
          const rolloverCovers: [number, number] = [upgrade ? maxOf(want.from!) : 0, maxOf(want.plan)];
          const rollover = sumOf(uncoveredParts(rolloverCovers, grants.map((g) => rolloverCoversOf(g, this.plans.byId.get(g.plan)))));
          claimed = { id: grantId, plan: want.plan.id, credits, covers, rollover, rolloverCovers, invoiceId: invoice.id, paymentIntentIds: paymentIntents, revokedAt: null };
          grants = [...grants, claimed];
        }
      }
      if (!claimed) return s;
      const p: SubscriptionPeriod = {
        ...base,
        // The allowance's line names the period's true start; an upgrade's line starts mid-period.
        start: !upgrade && !same ? want.period.start : base.start,
        grants,
        paymentIntentIds: [...new Set([...base.paymentIntentIds, ...grants.flatMap((g) => g.paymentIntentIds ?? [])])],
      };
      entry = p;
      if (i >= 0) periods[i] = p;
      else periods.push(p);
      const next: SubscriptionRecord = {
        ...s,
        // The last two years of periods: a refund of an older one finds nothing left to take back anyway, and a
        // replay of one grants nothing (the ledger keeps a grant's key for good, and its period has ended).
        periods: periods.sort((a, b) => a.end - b.end).slice(-24),
        stripeSubscriptionId: s.stripeSubscriptionId ?? subscriptionId,
        customerId: s.customerId ?? idOf(invoice.customer),
      };
      if (s.stateAsOf === 0) {
        // No subscription event yet: the paid invoice says as much as the session would.
        if (s.status === 'checkout') next.status = 'active';
        if (!s.currentPeriod || s.currentPeriod.end < p.end) next.currentPeriod = { start: p.start, end: p.end };
      }
      return next;
    });
    const grant = claimed as SubscriptionGrant | null;
    const period = entry as SubscriptionPeriod | null;
    if (!grant || !period) return ignored(record.id, `the period already holds as much as the ${want.plan.label} plan grants`);

    const plan = this.plans.byId.get(grant.plan) ?? want.plan;
    const length = period.end - period.start;
    const rolloverMax = this.rolloverMax(plan, grant, period);
    let granted: GrantResult;
    try {
      granted = await this.deps.ledger.grantCredits(record.userId, grant.credits, {
        idempotencyKey: grant.id.slice('grant:'.length),
        source: 'subscription',
        expiresAt: new Date(period.end * 1000),
        priority: plan.priority,
        reason: isUpgrade(grant.id) ? `Upgraded to ${plan.label}: ${grant.credits} more this period` : `${plan.label} plan`,
        ...(rolloverMax > 0 ? { rollover: { max: rolloverMax, expiresAt: new Date((period.end + length) * 1000) } } : {}),
      });
    } catch (err) {
      // Delivered after the period ended, and never granted before: grantCredits refuses an expiry in the
      // past (every other term is the kit's own, checked at start-up), and nothing is left to grant.
      if (err instanceof InvalidRequestError && period.end * 1000 <= Date.now()) {
        return ignored(record.id, 'the period ended before its paid invoice was delivered');
      }
      throw err;
    }

    // A refund or dispute that marked this grant taken back between the claim and the grant (read again now:
    // its revokeGrant may have come before the grant existed, and took nothing), or one delivered before this
    // payment was linked, which was kept: apply it now.
    let revoked = 0;
    const latest = (await this.deps.store.getSubscription(record.id)) ?? after;
    const marked = latest.periods.flatMap((p) => p.grants).find((g) => g.id === grant.id)?.revokedAt ?? grant.revokedAt;
    if (marked) revoked += await this.revokeWithRollover(after.userId, grant.id);
    else {
      for (const pi of grant.paymentIntentIds ?? []) {
        const kept = (await this.deps.store.paymentFacts(pi)).map((f) => JSON.parse(f) as StripeFact);
        if (kept.some(takesBack)) revoked += await this.revokePayment(after, pi);
      }
    }
    return { subscription: record.id, creditsGranted: granted.granted ? grant.credits : 0, revoked };
  }

  /**
   * A refund, dispute or charge event: when its payment intent paid a subscription period, a refund or a
   * dispute takes that period's unspent allowance back (once); null when no period is linked to it. The
   * caller (the webhook) then hands it to the purchases, which keep a fact no purchase is linked to yet, and
   * asks here again once it is kept: an invoice.paid that linked the payment meanwhile is found then, and one
   * that links it later reads what was kept.
   */
  async paymentFact(paymentIntent: string | { id: string } | null | undefined, fact: StripeFact): Promise<SubscriptionEventResult | null> {
    const pi = idOf(paymentIntent);
    if (!pi) return null;
    const [record] = await this.deps.store.findSubscriptions({ paymentIntentId: pi }, 1);
    if (!record) return null;
    if (!takesBack(fact)) return { subscription: record.id, creditsGranted: 0, revoked: 0, reason: 'nothing was refunded or disputed' };
    return { subscription: record.id, creditsGranted: 0, revoked: await this.revokePayment(record, pi) };
  }

  /** The credits object's getSubscription(userId). */
  async getSubscription(userId: string): Promise<UserPlan> {
    return this.getPlan(userId);
  }

  /**
   * Marks the grants a payment paid for taken back (an allowance, an upgrade's difference: each is paid by
   * its own invoice), then takes each one's unspent rest, once per grant. A grant recorded before grants
   * named their payments goes with every payment of its period.
   */
  private async revokePayment(record: SubscriptionRecord, pi: string): Promise<number> {
    const paidBy = (g: SubscriptionGrant, p: SubscriptionPeriod) => (g.paymentIntentIds ?? p.paymentIntentIds).includes(pi);
    const after = await this.update(record, (s) => ({
      ...s,
      periods: s.periods.map((p) =>
        p.grants.some((g) => paidBy(g, p) && !g.revokedAt)
          ? { ...p, revokedAt: p.revokedAt ?? new Date(), grants: p.grants.map((g) => (paidBy(g, p) && !g.revokedAt ? { ...g, revokedAt: new Date() } : g)) }
          : p,
      ),
    }));
    let revoked = 0;
    for (const p of after.periods) {
      for (const g of p.grants) {
        if (!paidBy(g, p)) continue;
        // Once per grant (revokeGrant's default key is the grant's id), whoever asks.
        revoked += await this.revokeWithRollover(after.userId, g.id);
      }
    }
    return revoked;
  }

  /**
   * Takes back what a refunded or disputed payment paid for: the grant's unspent rest, and the unspent rest
   * of what it rolled over (`rollover:<grant>`), so the outcome does not depend on whether the expiry sweep
   * ran before the refund. Each once (revokeGrant's default key); a rollover not made yet takes nothing, and
   * none is made later from a revoked grant (it holds nothing).
   */
  private async revokeWithRollover(userId: string, grantId: string): Promise<number> {
    const own = await this.deps.ledger.revokeGrant(userId, grantId, { reason: REVOKE_REASON });
    const rolled = await this.deps.ledger.revokeGrant(userId, `rollover:${grantId}`, { reason: REVOKE_REASON });
    return own.revoked + rolled.revoked;
  }

  /**
   * The period's start, for an upgrade's line (which starts mid-period): the start of the period with the
   * same end that its own invoice set, else of the subscription's current period when it ends then, else
   * Stripe's (the subscription's current period, when it ends then; it does while the period can still be
   * granted), else the line's start.
   */
  private async periodStartOf(record: SubscriptionRecord, subscriptionId: string, line: { start: number; end: number }): Promise<number> {
    const known = record.periods.find((p) => p.end === line.end);
    if (known && known.grants.some((g) => !isUpgrade(g.id))) return known.start;
    if (record.currentPeriod?.end === line.end) return record.currentPeriod.start;
    if (known) return known.start;
    let sub: Stripe.Subscription;
    try {
      sub = await this.stripe.subscriptions.retrieve(subscriptionId);
    } catch (err) {
      throw new PaymentProviderError(err);
    }
    const item = sub.items?.data?.find((it) => it.current_period_end === line.end);
    return item && item.current_period_start < line.end ? Math.min(item.current_period_start, line.start) : line.start;
  }

  /**
   * What a grant may roll over: the share recorded in its claim; for a claim recorded before claims carried
   * it, its plan's `rollover.max` less the biggest max among the period's grants claimed before it.
   */
  private rolloverMax(plan: ResolvedPlan, grant: SubscriptionGrant, period: SubscriptionPeriod): number {
    if (grant.rollover !== undefined) return grant.rollover;
    const max = plan.rollover?.max ?? 0;
    const before = period.grants
      .slice(0, Math.max(0, period.grants.findIndex((g) => g.id === grant.id)))
      .reduce((top, g) => Math.max(top, this.plans.byId.get(g.plan)?.rollover?.max ?? 0), 0);
    return Math.max(0, max - before);
  }

  /** The payment intents that paid an invoice: from its `payments` when the event carries them, else from Stripe. */
  private async paymentIntentsOf(invoice: Stripe.Invoice): Promise<string[]> {
    if (invoice.amount_paid === 0) return [];
    let payments = invoice.payments?.data;
    if (!payments) {
      try {
        payments = (await this.stripe.invoicePayments.list({ invoice: invoice.id, status: 'paid', limit: 10 })).data;
      } catch (err) {
        throw new PaymentProviderError(err);
      }
    }
    return payments.flatMap((p) => {
      const pi = idOf(p.payment.payment_intent);
      return pi && p.status === 'paid' ? [pi] : [];
    });
  }

  /** The kit's record of a subscription: by the kit's id in its metadata, else by the Stripe id once linked. */
  private async findRecord(stripeSubscriptionId: string, metadata: Stripe.Metadata | null): Promise<{ found: SubscriptionRecord } | { reason: string }> {
    // Once linked, the kit's record decides, whatever the metadata says now (edited in the dashboard, it must
    // neither send the grants to another user nor stop them).
    const [linked] = await this.deps.store.findSubscriptions({ stripeSubscriptionId }, 1);
    if (linked) return { found: linked };
    const ref = metadata?.[SUBSCRIPTION_METADATA.ref];
    if (ref) {
      const record = await this.deps.store.getSubscription(ref);
      if (!record) return { reason: 'no subscription with this id was created by this app' };
      if (metadata?.[SUBSCRIPTION_METADATA.userId] !== record.userId) return { reason: 'the subscription does not match what this app created: the user differs' };
      if (record.stripeSubscriptionId && record.stripeSubscriptionId !== stripeSubscriptionId) {
        return { reason: 'the subscription does not match what this app created: another Stripe subscription is linked' };
      }
      return { found: record };
    }
    return { reason: 'this subscription was not created by this app' };
  }

  /** A compare-and-set change of the record, retried on a concurrent change; the record as written. */
  private async update(from: SubscriptionRecord, change: (s: SubscriptionRecord) => SubscriptionRecord): Promise<SubscriptionRecord> {
    const { store } = this.deps;
    for (let read: SubscriptionRecord | null = from; ; read = null) {
      const current = read ?? (await store.getSubscription(from.id));
      if (!current) throw new NotFoundError(`No subscription ${from.id}.`);
      const next = change(current);
      if (JSON.stringify(next) === JSON.stringify(current)) return current;
      const written = { ...next, version: current.version + 1, updatedAt: new Date() };
      if (await store.replaceSubscription(written)) return written;
    }
  }
}

/**
 * The period an invoice's line belongs to: the one with the same end (an upgrade's line ends with its
 * period), else for a period's own invoice the one with the same start; else one that most of the line's
 * span overlaps (or that mostly lies within it), as when a re-issued invoice's end drifted and an upgrade
 * starts within it, an upgrade came first and the period it made lies within the invoice's span, or a
 * re-issued invoice's start and end both drifted. A period's own or re-issued invoice joins by overlap only
 * a period it starts in the first half of: an end may drift far, a start only a little. -1: a new period.
 */
function periodOf(periods: SubscriptionPeriod[], span: { start: number; end: number }, upgrade: boolean): number {
  const byEnd = periods.findIndex((p) => p.end === span.end);
  if (byEnd >= 0) return byEnd;
  if (!upgrade) {
    const byStart = periods.findIndex((p) => p.start === span.start);
    if (byStart >= 0) return byStart;
  }
  const overlap = (p: SubscriptionPeriod) => Math.min(p.end, span.end) - Math.max(p.start, span.start);
  // A period's own or re-issued invoice starts where its period does, give or take a small drift: one that
  // starts past the middle of a period is the next period's, however far the earlier one's end drifted.
  const startsWithin = (p: SubscriptionPeriod) => upgrade || 2 * (span.start - p.start) < p.end - p.start;
  return periods.findIndex((p) => startsWithin(p) && 2 * overlap(p) > Math.min(p.end - p.start, span.end - span.start));
}

/** The credits a grant pays for on its period's ladder (recorded since grants carry it; before, its top part). */
function coversOf(g: SubscriptionGrant, planCredits: number | undefined): [number, number] {
  if (g.covers) return g.covers;
  const top = Math.max(planCredits ?? g.credits, g.credits);
  return [top - g.credits, top];
}

/** What a grant covers on its period's ladder of rollover maxes (before claims carried it: 0 to its plan's max). */
function rolloverCoversOf(g: SubscriptionGrant, plan: ResolvedPlan | undefined): [number, number] {
  return g.rolloverCovers ?? [0, plan?.rollover?.max ?? 0];
}

const maxOf = (plan: ResolvedPlan) => plan.rollover?.max ?? 0;
const sumOf = (parts: Array<[number, number]>) => parts.reduce((t, [a, b]) => t + b - a, 0);

/** The parts of [lo, hi] none of `taken` covers (none when hi <= lo). */
function uncoveredParts([lo, hi]: [number, number], taken: Array<[number, number]>): Array<[number, number]> {
  const free: Array<[number, number]> = [];
  let at = lo;
  for (const [a, b] of [...taken].sort((x, y) => x[0] - y[0])) {
    if (b <= at) continue;
    if (a >= hi) break;
    if (a > at) free.push([at, Math.min(a, hi)]);
    at = Math.max(at, b);
    if (at >= hi) break;
  }
  if (hi > at) free.push([at, hi]);
  return free;
}

/** A refund that returned money, or a dispute not decided for the merchant, takes the period back. */
function takesBack(fact: StripeFact): boolean {
  switch (fact.type) {
    case 'charge':
      return fact.amountRefunded > 0;
    case 'refund':
      return fact.amount > 0 && fact.status !== 'failed' && fact.status !== 'canceled';
    case 'dispute':
      return fact.status !== 'won' && fact.status !== 'warning_closed';
  }
}

function ignored(subscription: string | null, reason: string): SubscriptionEventResult {
  return { subscription, creditsGranted: 0, revoked: 0, ignored: true, reason };
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === 'string' ? value : (value?.id ?? null);
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
