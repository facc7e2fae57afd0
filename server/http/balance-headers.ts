/**
 * The balance travels with the answer: every guarded answer carries what the request was charged and the
 * balance right after it, and a 402 the balance it found, so a client updates what it shows without asking
 * again. One place for both adapters: the Express guard hooks the moment its headers go out, the Fetch
 * guard sets them on the Response it returns.
 *
 *   Credits-Charged: 20      what this request is charged (after a settle, the settled cost; 0 once refunded)
 *   Credits-Balance: 480     the balance right after that (after the settle, after the refund)
 */
import type { ServerResponse } from 'node:http';
import { InsufficientCreditsError } from '../errors';
import type { CreditsContext } from './guard';
import type { BalanceHeaderNames } from './wire';

export const CHARGED_HEADER: BalanceHeaderNames['charged'] = 'Credits-Charged';
export const BALANCE_HEADER: BalanceHeaderNames['balance'] = 'Credits-Balance';
/** Both names, for `Access-Control-Expose-Headers` when the API answers another origin. */
export const BALANCE_HEADERS = [CHARGED_HEADER, BALANCE_HEADER] as const;

type Pair = readonly [name: string, value: string];

const headersOf = (charged: number, balance: number): Pair[] => [
  [CHARGED_HEADER, String(charged)],
  [BALANCE_HEADER, String(balance)],
];

/** A give-back done before the answer: the request is charged nothing now, and the balance is the one after it. */
export function givenBack(credits: CreditsContext, balanceAfter: number | undefined): void {
  if (balanceAfter === undefined) return; // left to the background: the charge stands as the answer goes out
  credits.charged = 0;
  credits.balance = balanceAfter;
}

/**
 * Express (any node:http response): the headers are written from `credits` at the moment the head goes out,
 * so a settle or a give-back finished before then is in them, whatever the route set or an error handler cleared.
 */
export function sendBalanceHeaders(res: ServerResponse, credits: CreditsContext): void {
  const writeHead = res.writeHead;
  res.writeHead = function writeHeadWithBalance(this: ServerResponse, ...args: unknown[]) {
    res.writeHead = writeHead;
    for (const [name, value] of headersOf(credits.charged, credits.balance)) this.setHeader(name, value);
    return writeHead.apply(this, args as Parameters<typeof writeHead>);
  } as typeof res.writeHead;
}

/** A refusal's headers: a 402 carries the balance it found (and nothing charged); others carry none. */
export function refusalHeaders(err: unknown): Pair[] {
  return err instanceof InsufficientCreditsError ? headersOf(0, err.balance) : [];
}

/** Express: a refusal's headers, set before its error answer. */
export function setRefusalHeaders(res: ServerResponse, err: unknown): void {
  for (const [name, value] of refusalHeaders(err)) res.setHeader(name, value);
}

/** Fetch: the Response with the headers, itself when its headers can be changed, else a copy. */
export function withBalanceHeaders(response: Response, credits: CreditsContext | Pair[]): Response {
  const pairs = Array.isArray(credits) ? credits : headersOf(credits.charged, credits.balance);
  if (pairs.length === 0) return response;
  try {
    for (const [name, value] of pairs) response.headers.set(name, value);
    return response;
  } catch {
    // Immutable headers (a Response from fetch(), passed on): the same answer with a copy of them. An
    // opaque redirect (status 0) cannot be rebuilt, and goes out as it is.
    if (response.status < 200) return response;
    const headers = new Headers(response.headers);
    for (const [name, value] of pairs) headers.set(name, value);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  }
}
