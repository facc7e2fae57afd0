/**
 * The auto-recharge routes, framework-neutral like http/handlers.ts: each takes what an adapter read of the
 * request and answers a status and a JSON body. Mounted by both adapters (Express router, Fetch handlers).
 *
 *   GET    /credits/auto-recharge          settings, card on file, state, last result   (signed in)
 *   PUT    /credits/auto-recharge          { enabled?, threshold?, bundle? | credits? }  (signed in, JSON)
 *   DELETE /credits/auto-recharge          turn it off (the card stays on file)          (signed in)
 *   POST   /credits/auto-recharge/card     a setup-mode Checkout Session to save a card  (signed in, JSON)
 *   DELETE /credits/auto-recharge/card     remove the card (detached at Stripe), off     (signed in)
 *   GET    /credits/auto-recharge/action   the client secret of an attempt to authenticate (signed in, owner)
 */
import { ConflictError, CreditsError, InvalidRequestError, NotFoundError, describe } from '../errors';
import type { RechargeRecord, RechargeTopUp } from '../domain/recharge';
import type { NeutralOptions } from '../options';
import type { Reply } from '../http/guard';
import { notOwed, type AutoRecharge } from './recharge';
import type { AutoRechargeSettings } from './recharge-options';

/** What a route reads of a request (the same shape as http/handlers.ts's RouteInput). */
export interface RechargeRouteInput {
  query: Record<string, unknown>;
  user(): Promise<string>;
  body?: unknown;
}

/** What PUT /credits/auto-recharge changes, once validated. */
interface SettingsChange {
  enabled?: boolean;
  threshold?: number;
  topUp?: RechargeTopUp;
}

const FIELDS = ['enabled', 'threshold', 'bundle', 'credits', 'paymentMethod'];

/** Strict validation of the settings body against the pricing and the cap; anything off is a 400 that names it. */
export function parseSettingsBody(body: unknown, record: RechargeRecord, options: NeutralOptions, monthlyCap: number): SettingsChange {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequestError('The body must be a JSON object such as {"enabled": true, "threshold": 100, "bundle": "starter"}.');
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!FIELDS.includes(key)) {
      throw new InvalidRequestError(`Unknown field "${key.slice(0, 40)}": send only ${FIELDS.join(', ')}.`, { field: key.slice(0, 40) });
    }
  }
  const change: SettingsChange = {};
  if ('enabled' in fields) {
    if (typeof fields.enabled !== 'boolean') throw new InvalidRequestError(`"enabled" must be true or false, got ${describe(fields.enabled)}.`, { field: 'enabled' });
    change.enabled = fields.enabled;
  }
  if ('threshold' in fields) {
    const t = fields.threshold;
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 1 || t > monthlyCap) {
      throw new InvalidRequestError(`"threshold" must be a whole number of credits from 1 to ${monthlyCap} (the monthly cap), got ${describe(t)}.`, { field: 'threshold', min: 1, max: monthlyCap });
    }
    change.threshold = t;
  }
  if ('bundle' in fields && 'credits' in fields) throw new InvalidRequestError('Send either "bundle" or "credits" as the top-up, not both.');
  const { pricing } = options;
  if ('bundle' in fields) {
    const id = fields.bundle;
    const bundle = typeof id === 'string' ? pricing.bundles.get(id) : undefined;
    if (!bundle) {
      const known = [...pricing.bundles.keys()];
      throw new InvalidRequestError(`Unknown bundle ${describe(id)}. ${known.length ? `Known bundles: ${known.join(', ')}.` : 'No bundles are offered; send "credits".'}`, { field: 'bundle' });
    }
    if (bundle.credits > monthlyCap) {
      throw new InvalidRequestError(`The bundle "${bundle.id}" tops up ${bundle.credits} credits, more than the monthly cap of ${monthlyCap}.`, { field: 'bundle', max: monthlyCap });
    }
    change.topUp = { bundle: bundle.id, credits: bundle.credits, amount: bundle.price, currency: pricing.currency };
  }
  if ('credits' in fields) {
    const q = fields.credits;
    const least = Math.max(pricing.minQuantity, Math.ceil(pricing.minimumChargeCents / pricing.creditPriceCents));
    const most = Math.min(pricing.maxQuantity, monthlyCap);
    if (typeof q !== 'number' || !Number.isSafeInteger(q) || q < least || q > most) {
      throw new InvalidRequestError(`"credits" must be a whole number from ${least} to ${most} (the pricing's limits and the monthly cap), got ${describe(q)}.`, { field: 'credits', min: least, max: most });
    }
    change.topUp = { bundle: null, credits: q, amount: q * pricing.creditPriceCents, currency: pricing.currency };
  }
  if ('paymentMethod' in fields) {
    // Only the card this user saved can be named: another user's, or any other id, changes nothing.
    if (typeof fields.paymentMethod !== 'string' || fields.paymentMethod !== record.card?.paymentMethodId) {
      throw new NotFoundError('No such card on file for this user: save a card with POST /credits/auto-recharge/card.');
    }
  }
  const enabled = change.enabled ?? record.enabled;
  if (enabled) {
    if (!record.card) throw new ConflictError('Save a card first (POST /credits/auto-recharge/card): auto-recharge charges the card on file.');
    if ((change.threshold ?? record.threshold) === null) throw new InvalidRequestError('Set a "threshold" to turn auto-recharge on.', { field: 'threshold' });
    if (!(change.topUp ?? record.topUp)) throw new InvalidRequestError('Set a top-up, "bundle" or "credits", to turn auto-recharge on.', { field: 'bundle' });
  }
  return change;
}

/** The record as the page sees it. */
export function settingsView(r: RechargeRecord, recharge: AutoRecharge, options: NeutralOptions): AutoRechargeSettings {
  const s = recharge.settings;
  const month = r.month.key === new Date().toISOString().slice(0, 7) ? r.month : { key: new Date().toISOString().slice(0, 7), credits: 0 };
  return {
    enabled: r.enabled,
    threshold: r.threshold,
    topUp: r.topUp,
    card: r.card ? { brand: r.card.brand, last4: r.card.last4, expMonth: r.card.expMonth, expYear: r.card.expYear } : null,
    state: r.state,
    lastResult: r.lastResult ? { ...r.lastResult, at: r.lastResult.at.toISOString() } : null,
    monthlyCap: s.monthlyCap,
    month,
    cooldownMs: s.cooldownMs,
    maxDeclines: s.maxDeclines,
    creditName: options.creditName,
  };
}

export function createRechargeRoutes(recharge: AutoRecharge | undefined, options: NeutralOptions, accountCount: (userId: string) => Promise<number>) {
  const need = (): AutoRecharge => {
    if (!recharge) throw new CreditsError('not_configured', 'Auto-recharge is not configured: pass `autoRecharge: { monthlyCap }` to createCredits.');
    return recharge;
  };
  const noQuery = (input: RechargeRouteInput) => {
    const key = Object.keys(input.query)[0];
    if (key !== undefined) throw new InvalidRequestError(`Unknown query parameter "${key.slice(0, 40)}".`);
  };
  const view = (r: RechargeRecord) => settingsView(r, need(), options);

  return {
    async get(input: RechargeRouteInput): Promise<Reply<AutoRechargeSettings>> {
      noQuery(input);
      const userId = await input.user();
      const r = need();
      return { status: 200, body: view(await r.read(userId)) };
    },

    async put(input: RechargeRouteInput): Promise<Reply<AutoRechargeSettings>> {
      noQuery(input);
      const userId = await input.user();
      const r = need();
      const current = await r.read(userId);
      parseSettingsBody(input.body, current, options, r.settings.monthlyCap); // refuse before any write
      // Turned on: only crossings from now on count (an old one, moved late, starts nothing).
      const count = await accountCount(userId);
      const { record } = await r.update(userId, (rec) => {
        const change = parseSettingsBody(input.body, rec, options, r.settings.monthlyCap);
        const next: RechargeRecord = { ...rec, ...change };
        const turnedOn = next.enabled && (!rec.enabled || rec.state === 'paused');
        if (turnedOn) Object.assign(next, { crossingSeq: Math.max(rec.crossingSeq, count), ...(rec.state === 'paused' ? { state: 'idle', declines: 0 } : {}) });
        // Turned off, or on again: a crossing owed from before is no longer owed (reconcile() clears its dueAt).
        if ((!next.enabled || turnedOn) && next.owed !== undefined) delete next.owed;
        return JSON.stringify(next) === JSON.stringify(rec) ? null : next;
      });
      return { status: 200, body: view(record) };
    },

    async disable(input: RechargeRouteInput): Promise<Reply<AutoRechargeSettings>> {
      noQuery(input);
      const userId = await input.user();
      const r = need();
      const { record } = await r.update(userId, (rec) => (rec.enabled ? notOwed({ ...rec, enabled: false }) : null));
      return { status: 200, body: view(record) };
    },

    async saveCard(input: RechargeRouteInput): Promise<Reply<{ id: string; url: string | null }>> {
      noQuery(input);
      const userId = await input.user();
      const body = input.body;
      if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).length > 0)) {
        throw new InvalidRequestError('Send an empty JSON object {}: the card is entered on Stripe\'s page.');
      }
      return { status: 201, body: await need().startCardSetup(userId) };
    },

    async removeCard(input: RechargeRouteInput): Promise<Reply<AutoRechargeSettings>> {
      noQuery(input);
      const userId = await input.user();
      return { status: 200, body: view(await need().removeCard(userId)) };
    },

    async action(input: RechargeRouteInput): Promise<Reply<{ paymentIntentId: string; clientSecret: string; credits: number; amount: number; currency: string }>> {
      noQuery(input);
      const userId = await input.user();
      const pending = await need().pendingAction(userId);
      if (!pending) throw new NotFoundError('No auto-recharge payment of this user needs authentication.');
      return { status: 200, body: pending };
    },
  };
}

export type RechargeRoutes = ReturnType<typeof createRechargeRoutes>;
