/**
 * What the chat route and the page agree on: the reservation, the price of a token, and the events of the
 * stream. Pure constants and functions, so the page's bundle can import them too.
 */

/** The chat route reserves this much before the model runs, then settles what it delivered. */
export const CHAT_RESERVE = 30;
export const TOKENS_PER_CREDIT = 2;
/** The longest answer the reservation covers. */
export const MAX_TOKENS = CHAT_RESERVE * TOKENS_PER_CREDIT;
export const MAX_PROMPT_CHARS = 500;

/** One credit per started pair of tokens: what a delivered answer (or part of one) costs. Zero tokens cost nothing. */
export function chatCost(tokens: number): number {
  return Math.min(CHAT_RESERVE, Math.ceil(tokens / TOKENS_PER_CREDIT));
}

/** Why a prompt cannot be sent, or null when it can. */
export function promptProblem(prompt: unknown): string | null {
  if (typeof prompt !== 'string' || prompt.trim() === '') return 'Write a question first.';
  if (prompt.length > MAX_PROMPT_CHARS) return `The question is longer than ${MAX_PROMPT_CHARS} characters.`;
  return null;
}

/**
 * The events of the chat stream (server-sent events, one JSON `data:` line each): a `token` per token of
 * the answer, then `done` with what the whole answer was charged. A stopped answer ends without `done`: the page
 * finds its settlement in the history, by the charge id the response names.
 */
export type ChatEvent =
  | { type: 'token'; text: string }
  | { type: 'done'; tokens: number; reserved: number; charged: number; balance: number }
  /** The answer was delivered but could not be settled now (database down); the kit's reconcile() settles it later. */
  | { type: 'error'; message: string };

/** The response header that names the usage entry of a chat answer: the page finds its settlement by it. */
export const CHARGE_ID_HEADER = 'x-chat-charge-id';
