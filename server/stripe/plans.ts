/**
 * The `plans` option: subscription plans, each a Stripe Price the app created (recurring) and the credits
 * every paid billing period grants. Checked once, at start-up.
 */
import { CreditsConfigError } from '../errors';
import { DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY } from '../ledger/grants';

export interface PlanOption {
  /** The Stripe Price id (`price_…`) of the plan: a recurring price you created in Stripe. */
  price: string;
  /** Credits granted for every paid billing period: a positive integer. */
  credits: number;
  /** Shown to people. Default: the plan id. */
  label?: string;
  /**
   * At the period's end, up to `max` of its unspent allowance is kept for one more period (a grant of its
   * own, expiring at the end of the next period); the rest expires. Default: nothing is kept.
   */
  rollover?: { max: number };
  /** Spending order of the allowance (0-100, lower first). Default 50, as other grants. */
  priority?: number;
}

/** createCredits' `plans`: plan id → plan. */
export type PlanOptions = Record<string, PlanOption>;

export interface ResolvedPlan {
  id: string;
  price: string;
  credits: number;
  label: string;
  rollover: { max: number } | null;
  priority: number;
}

export interface ResolvedPlans {
  byId: ReadonlyMap<string, ResolvedPlan>;
  byPrice: ReadonlyMap<string, ResolvedPlan>;
}

const PLAN_KEYS = ['price', 'credits', 'label', 'rollover', 'priority'];

export function resolvePlans(option: unknown): ResolvedPlans {
  const byId = new Map<string, ResolvedPlan>();
  const byPrice = new Map<string, ResolvedPlan>();
  if (option === undefined) return { byId, byPrice };
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new CreditsConfigError("createCredits: `plans` must be an object of plans by id, such as { pro: { price: 'price_123', credits: 1000 } }.");
  }
  for (const [id, value] of Object.entries(option)) {
    const at = `plans.${id}`;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      throw new CreditsConfigError(`createCredits: a plan id must be 1-64 letters, digits, '-' or '_', got ${JSON.stringify(id)}.`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new CreditsConfigError(`createCredits: \`${at}\` must be { price, credits, label?, rollover?, priority? }, got ${JSON.stringify(value)}.`);
    }
    const plan = value as Partial<Record<string, unknown>>;
    const unknown = Object.keys(plan).find((k) => !PLAN_KEYS.includes(k));
    if (unknown !== undefined) throw new CreditsConfigError(`createCredits: unknown key \`${at}.${unknown}\`. Known: ${PLAN_KEYS.join(', ')}.`);
    if (typeof plan.price !== 'string' || !/^(price|plan)_[A-Za-z0-9_]{1,250}$/.test(plan.price)) {
      throw new CreditsConfigError(`createCredits: \`${at}.price\` must be the id of a recurring Stripe Price (price_…), got ${JSON.stringify(plan.price)}.`);
    }
    if (byPrice.has(plan.price)) {
      throw new CreditsConfigError(`createCredits: plans '${byPrice.get(plan.price)!.id}' and '${id}' name the same price ${plan.price}: each plan needs its own Price.`);
    }
    if (typeof plan.credits !== 'number' || !Number.isSafeInteger(plan.credits) || plan.credits <= 0) {
      throw new CreditsConfigError(`createCredits: \`${at}.credits\` must be a positive integer (credits per billing period), got ${String(plan.credits)}.`);
    }
    const label = plan.label ?? id;
    if (typeof label !== 'string' || label.trim() === '' || label.length > 100 || /[\u0000-\u001f]/.test(label)) {
      throw new CreditsConfigError(`createCredits: \`${at}.label\` must be a non-empty line of at most 100 characters, got ${JSON.stringify(label)}.`);
    }
    let rollover: ResolvedPlan['rollover'] = null;
    if (plan.rollover !== undefined) {
      const r = plan.rollover as { max?: unknown } | null;
      const keys = typeof r === 'object' && r !== null && !Array.isArray(r) ? Object.keys(r) : null;
      if (!keys || keys.some((k) => k !== 'max') || typeof r!.max !== 'number' || !Number.isSafeInteger(r!.max) || r!.max < 0) {
        throw new CreditsConfigError(`createCredits: \`${at}.rollover\` must be { max } with max a whole number of credits, 0 or more, got ${JSON.stringify(plan.rollover)}.`);
      }
      rollover = { max: r!.max };
    }
    const priority = plan.priority ?? DEFAULT_PRIORITY;
    if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
      throw new CreditsConfigError(`createCredits: \`${at}.priority\` must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}, got ${String(priority)}.`);
    }
    const resolved: ResolvedPlan = { id, price: plan.price, credits: plan.credits, label, rollover, priority };
    byId.set(id, resolved);
    byPrice.set(plan.price, resolved);
  }
  return { byId, byPrice };
}
