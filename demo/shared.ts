/**
 * What the demo's server and its page agree on: the prices of the two AI features and how words are
 * counted. Pure functions and constants only, so the page bundle can import them too.
 */

/** The summarizer has a fixed price, charged by `credits.requireCredits(SUMMARY_COST)`. */
export const SUMMARY_COST = 20;

/** The analyzer is metered: it reserves this much, then settles the real cost. */
export const ANALYSIS_RESERVE = 20;
export const WORDS_PER_CREDIT = 25;

/** Longest text either feature takes; the analyzer's reservation covers it exactly. */
export const MAX_WORDS = ANALYSIS_RESERVE * WORDS_PER_CREDIT;
export const MAX_CHARS = 5000;

export function countWords(text: string): number {
  return text.match(/[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu)?.length ?? 0;
}

/** One credit per started 25 words, at least 1: what the analyzer settles to. */
export function analysisCost(words: number): number {
  return Math.min(ANALYSIS_RESERVE, Math.max(1, Math.ceil(words / WORDS_PER_CREDIT)));
}

/** Why a text cannot be sent to the AI routes, or null when it can. */
export function textProblem(text: unknown): string | null {
  if (typeof text !== 'string' || text.trim() === '') return 'Write or paste some text first.';
  if (text.length > MAX_CHARS) return `The text is longer than ${MAX_CHARS} characters.`;
  const words = countWords(text);
  if (words < 5) return 'The text needs at least 5 words.';
  if (words > MAX_WORDS) return `The text has ${words} words; the limit is ${MAX_WORDS}.`;
  return null;
}

/** The bundles the demo sells, prices in cents: a small discount on the fixed price of 10 cents a credit. */
export const BUNDLES = [
  { id: 'starter', credits: 100, price: 900, name: 'Starter: 100 credits' },
  { id: 'pro', credits: 500, price: 4000, name: 'Pro: 500 credits' },
] as const;

export const SAMPLE_TEXT =
  'Prepaid credits let an AI app charge for expensive work before it runs. ' +
  'Each request spends a few credits, and a failed request gives them back. ' +
  'People buy credits in bundles through Stripe Checkout, and a webhook adds them to the balance exactly once. ' +
  'The ledger records every purchase, charge and refund, so the history always adds up to the balance.';

/**
 * The demo's plan: a Stripe Price (the simulator's own, or DEMO_PLAN_PRICE_ID in test mode), 500 credits
 * every period, up to 100 of them rolling over into the next.
 */
export const PLAN = { id: 'pro', label: 'Pro plan', credits: 500, rollover: { max: 100 }, simulatorPrice: 'price_sim_pro_monthly', amount: 1900 } as const;

/** What POST /demo/month-passes answers: the simulated clock after a month, and what it did. */
export interface MonthPassed {
  now: string;
  outcome: 'renewed' | 'ended' | 'none';
  creditsExpired: number;
}

/** What GET /demo/info answers: how this demo is running, for the page's footer. */
export interface DemoInfo {
  stripe: 'simulator' | 'test-mode';
  /** A plan is offered (always with the simulator; in test mode with DEMO_PLAN_PRICE_ID). */
  plans: boolean;
  database: 'embedded' | 'external';
  summaryCost: number;
  analysisReserve: number;
  wordsPerCredit: number;
}

/** The signed-in demo user, as GET /auth/me answers. */
export interface DemoUser {
  id: string;
  name: string;
}

export interface SummaryResult {
  summary: string;
  charged: number;
  balance: number;
}

export interface AnalysisResult {
  words: number;
  sentences: number;
  readingSeconds: number;
  keywords: string[];
  reserved: number;
  charged: number;
  balance: number;
}
