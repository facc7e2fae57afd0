/**
 * The `autoRecharge` option of createCredits, checked once at start-up: bad values are a CreditsConfigError
 * whose message says what to pass.
 */
import { CreditsConfigError } from '../errors';
import type { RechargeOutcome, RechargeState, RechargeTopUp } from '../domain/recharge';

/** What the app is told through `onAutoRecharge` when an attempt changes state. */
export interface AutoRechargeEvent {
  type: 'started' | 'succeeded' | 'requires_action' | 'declined' | 'paused' | 'skipped';
  userId: string;
  /** The attempt (`${crossingSeq}.${n}`); absent for a crossing that started nothing (`skipped`). */
  attemptId?: string;
  credits: number;
  amount: number;
  currency: string;
  paymentIntentId?: string;
  /** Why it was skipped or declined. */
  reason?: string;
  /** The state the record is in after the change. */
  state: RechargeState;
}

export interface AutoRechargeOptions {
  /** Most credits auto-recharge may buy for one user in one calendar month (UTC). Required. */
  monthlyCap: number;
  /** No attempt starts within this many ms of the previous one's start (retries included). Default 60000. */
  cooldownMs?: number;
  /** Declines of one crossing after which auto-recharge pauses (1 = no retry). Default 3. */
  maxDeclines?: number;
  /** Path (on `publicUrl`) the card-saving Checkout returns to. Default `/`. */
  returnPath?: string;
  /**
   * How long a payment that needs authentication waits for the card holder; after it, reconcile() cancels the
   * PaymentIntent at Stripe (so it can no longer succeed) and auto-recharge is free for the next crossing.
   * Default 86400000 (a day).
   */
  actionTimeoutMs?: number;
  /**
   * Told when an attempt starts, succeeds, needs authentication, is declined or pauses auto-recharge, and
   * when a crossing starts nothing (the cap). Called by the instance whose compare-and-set made the change;
   * errors it throws go to `hooks.onBackgroundError`. The record (GET /credits/auto-recharge) stays the truth.
   */
  onAutoRecharge?: (event: AutoRechargeEvent) => void | Promise<void>;
}

export interface ResolvedAutoRecharge {
  monthlyCap: number;
  cooldownMs: number;
  maxDeclines: number;
  returnPath: string;
  actionTimeoutMs: number;
  onAutoRecharge: ((event: AutoRechargeEvent) => void | Promise<void>) | undefined;
}

const KEYS = ['monthlyCap', 'cooldownMs', 'maxDeclines', 'returnPath', 'actionTimeoutMs', 'onAutoRecharge'];
/** setTimeout's largest delay, the longest cooldown a timer could honour. */
const MAX_COOLDOWN_MS = 2_147_483_647;

export function resolveAutoRecharge(value: unknown, withStripe: boolean): ResolvedAutoRecharge {
  if (!withStripe) {
    throw new CreditsConfigError('createCredits: `autoRecharge` charges saved cards through Stripe: pass `stripe` and `webhookSecret` too.');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CreditsConfigError('createCredits: `autoRecharge` must be an object such as { monthlyCap: 5000 }.');
  }
  const given = value as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!KEYS.includes(key)) throw new CreditsConfigError(`createCredits: unknown key \`autoRecharge.${key}\`. Known: ${KEYS.join(', ')}.`);
  }
  const int = (name: string, v: unknown, min: number, max: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new CreditsConfigError(`createCredits: \`autoRecharge.${name}\` must be a whole number from ${min} to ${max}, got ${typeof v === 'number' ? String(v) : JSON.stringify(v)}.`);
    }
    return v;
  };
  if (given.monthlyCap === undefined) {
    throw new CreditsConfigError('createCredits: `autoRecharge.monthlyCap` is required: the most credits auto-recharge may buy for one user in a calendar month.');
  }
  const returnPath = given.returnPath ?? '/';
  if (typeof returnPath !== 'string' || !returnPath.startsWith('/') || returnPath.startsWith('//')) {
    throw new CreditsConfigError(`createCredits: \`autoRecharge.returnPath\` must be a path on publicUrl starting with a single "/", got ${JSON.stringify(returnPath)}.`);
  }
  if (given.onAutoRecharge !== undefined && typeof given.onAutoRecharge !== 'function') {
    throw new CreditsConfigError('createCredits: `autoRecharge.onAutoRecharge` must be a function (event) => void.');
  }
  return {
    monthlyCap: int('monthlyCap', given.monthlyCap, 1, Number.MAX_SAFE_INTEGER),
    cooldownMs: int('cooldownMs', given.cooldownMs ?? 60_000, 0, MAX_COOLDOWN_MS),
    maxDeclines: int('maxDeclines', given.maxDeclines ?? 3, 1, 10),
    returnPath,
    actionTimeoutMs: int('actionTimeoutMs', given.actionTimeoutMs ?? 86_400_000, 1, 30 * 86_400_000),
    onAutoRecharge: given.onAutoRecharge as ResolvedAutoRecharge['onAutoRecharge'],
  };
}

/** What GET /credits/auto-recharge answers (dates as ISO strings on the wire). */
export interface AutoRechargeSettings {
  enabled: boolean;
  threshold: number | null;
  topUp: RechargeTopUp | null;
  card: { brand: string; last4: string; expMonth: number; expYear: number } | null;
  state: RechargeState;
  lastResult: { status: RechargeOutcome; at: string; credits: number; amount: number; reason?: string; paymentIntentId?: string } | null;
  /** The app's cap, and what this calendar month (UTC) has used of it. */
  monthlyCap: number;
  month: { key: string; credits: number };
  cooldownMs: number;
  maxDeclines: number;
  creditName: string;
}

/** What PUT /credits/auto-recharge takes: any of these; the top-up is a bundle id or a number of credits. */
export interface AutoRechargeChange {
  enabled?: boolean;
  threshold?: number;
  bundle?: string;
  credits?: number;
  /** Optional: the card on file's id, to make sure the change is about that card. */
  paymentMethod?: string;
}

/** What GET /credits/auto-recharge/action answers: what Stripe.js needs to let the card holder authenticate. */
export interface AutoRechargeAction {
  paymentIntentId: string;
  clientSecret: string;
  credits: number;
  amount: number;
  currency: string;
}
