/**
 * Costs by name and metered model calls: looking a guard's cost up in the `costs` price list (checked at
 * start-up in options.ts), and turning a model's token usage into whole credits. No storage, no framework.
 *
 * The rounding rule: a call costs ⌈(input tokens × input + output tokens × output) ÷ per⌉ credits, computed
 * exactly in integers and rounded up once per request, never per token or per side. A call that used no
 * tokens costs 0; a call that used any costs at least 1. Credits are never fractional.
 */
import { CreditsConfigError, CreditsError, InvalidRequestError, InvalidUsageError, describe } from '../errors';
import { checkTokenPrice, suggest, type ResolvedCost, type TokenPrice } from '../options';

/**
 * A model call's token usage, in any of the shapes the common SDKs report it (extra fields, such as
 * `totalTokens`, are ignored; cached and reasoning tokens count as far as the SDK includes them in the input
 * and output counts).
 */
export type TokenUsage =
  /** Vercel AI SDK 4 (`result.usage`). */
  | { promptTokens: number | undefined; completionTokens: number | undefined }
  /** Vercel AI SDK 5 (`result.usage`). */
  | { inputTokens: number | undefined; outputTokens: number | undefined }
  /** OpenAI Chat Completions (`completion.usage`). */
  | { prompt_tokens: number | undefined; completion_tokens: number | undefined }
  /** Anthropic Messages and OpenAI Responses (`message.usage`, `response.usage`). */
  | { input_tokens: number | undefined; output_tokens: number | undefined };

/** The usage shapes, as [input field, output field, where it comes from]. */
const USAGE_SHAPES = [
  ['promptTokens', 'completionTokens', 'Vercel AI SDK 4'],
  ['inputTokens', 'outputTokens', 'Vercel AI SDK 5'],
  ['prompt_tokens', 'completion_tokens', 'OpenAI Chat Completions'],
  ['input_tokens', 'output_tokens', 'Anthropic, OpenAI Responses'],
] as const;

const SHAPES_TEXT = USAGE_SHAPES.map(([i, o, from]) => `{ ${i}, ${o} } (${from})`).join(', ');

/** Input and output tokens of a usage object, each a whole number, 0 or more; anything else is refused. */
export function tokensOf(usage: unknown): { input: number; output: number } {
  if (typeof usage !== 'object' || usage === null || Array.isArray(usage)) {
    throw new InvalidUsageError(`The usage must be a model's token usage, one of ${SHAPES_TEXT}; got ${describe(usage)}.`);
  }
  const found = USAGE_SHAPES.filter(([i, o]) => i in usage || o in usage);
  if (found.length !== 1) {
    const what = found.length === 0 ? 'none of their fields' : `fields of ${found.map(([i, o]) => `{ ${i}, ${o} }`).join(' and ')}, which is ambiguous`;
    throw new InvalidUsageError(`The usage must be one of ${SHAPES_TEXT}; it has ${what}.`);
  }
  const [inputField, outputField] = found[0]!;
  const count = (field: string): number => {
    const n: unknown = Reflect.get(usage, field);
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new InvalidUsageError(`usage.${field} must be a whole number of tokens, 0 or more, got ${describe(n)}.`);
    }
    return n;
  };
  return { input: count(inputField), output: count(outputField) };
}

/**
 * Whole credits for one model call: ⌈(input tokens × price.input + output tokens × price.output) ÷ price.per⌉,
 * exact (integer arithmetic, no floating point) and rounded up once. Throws InvalidUsageError for usage that
 * is not a token count, and CreditsConfigError for a price that is not a TokenPrice.
 */
export function creditsForUsage(usage: TokenUsage, price: TokenPrice): number {
  const p = checkTokenPrice(price, 'creditsForUsage(usage, price): the price');
  const { input, output } = tokensOf(usage);
  const cost = BigInt(input) * BigInt(p.input) + BigInt(output) * BigInt(p.output);
  const per = BigInt(p.per);
  const credits = (cost + per - BigInt(1)) / per;
  if (credits > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidUsageError(`That usage (${input} input and ${output} output tokens) costs more credits than the ledger holds.`);
  }
  return Number(credits);
}

/**
 * A guard's cost, checked when the guard is created: a name is looked up in the `costs` price list (an
 * unknown one is a CreditsConfigError naming the known ones), anything else is returned as it is, for the
 * guard's own check of a number or function.
 */
export function costOf<F>(costs: ReadonlyMap<string, ResolvedCost>, cost: number | string | F, call: string): { amount: number | F; named?: ResolvedCost } {
  if (typeof cost !== 'string') return { amount: cost };
  const named = costs.get(cost);
  if (named) return { amount: named.amount, named };
  if (costs.size === 0) {
    throw new CreditsConfigError(
      `${call}(${JSON.stringify(cost)}): there are no named costs. Give createCredits a price list, such as costs: { ${/^[A-Za-z_$][\w$]*$/.test(cost) ? cost : JSON.stringify(cost)}: { credits: 5, label: 'Summarize' } }, or pass a number.`,
    );
  }
  const known = [...costs.keys()];
  const hint = suggest(cost, known);
  throw new CreditsConfigError(`${call}(${JSON.stringify(cost)}): no cost of that name in \`costs\`.${hint ? ` Did you mean '${hint}'?` : ''} Known: ${known.join(', ')}.`);
}

/** What a named cost adds to its ledger entries' `ref`: its name and label (nothing for a numeric cost). */
export function costRef(named: ResolvedCost | undefined): { cost?: string; label?: string } {
  return named ? { cost: named.name, label: named.label } : {};
}

/**
 * The token price `settleUsage(usage, model)` settles by: the model's entry in the route's named cost
 * (`perModel`). Only a name: the model often comes from the request, and a price object in its place would
 * let the client set its own price (a route with a price of its own settles `creditsForUsage(usage, price)`).
 */
export function tokenPriceFor(named: ResolvedCost | undefined, model: unknown): TokenPrice {
  if (typeof model !== 'string') {
    throw new InvalidRequestError(`The model must be a model's name, one priced in \`perModel\`, got ${describe(model)}; nothing was settled.`);
  }
  const price = named?.perModel.get(model);
  if (price) return price;
  if (!named || named.perModel.size === 0) {
    throw new CreditsError(
      'misconfigured',
      `settleUsage(usage, ${JSON.stringify(model)}): ${named ? `the cost '${named.name}' has no \`perModel\` prices` : 'this route was not guarded by a named cost'}; give the cost perModel: { ${JSON.stringify(model)}: { input, output, per } }, or settle(creditsForUsage(usage, price)) with a price of your own.`,
    );
  }
  throw new InvalidRequestError(
    `There is no price for the model ${describe(model)} in the cost '${named.name}'; nothing was settled. Priced models: ${[...named.perModel.keys()].join(', ')}.`,
  );
}
