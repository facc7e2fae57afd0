/**
 * The fail-closed decorator: every call of the wrapped store is bounded by `timeoutMs` and any failure
 * becomes a StoreUnavailableError (503). Wrapped once, around the whole store, so no call site can forget
 * it. A call that times out may still land at the database later; the ledger treats such a write as
 * uncertain and settles it by fencing and looking (ledger/changes.ts), never by trusting the timeout.
 */
import { CreditsError, StoreUnavailableError } from '../errors';
import { decorateStore } from './decorate';
import type { CreditStore } from './types';

export class StoreTimeoutError extends Error {
  override name = 'StoreTimeoutError';
  constructor(method: string, ms: number) {
    super(`credit store: ${method} did not answer within ${ms} ms`);
  }
}

export function failClosed(store: CreditStore, timeoutMs: number): CreditStore {
  return decorateStore(store, (name, call) => bounded(name, call, timeoutMs));
}

/**
 * The call, or a StoreUnavailableError after `ms`. Written with `await` (not callbacks) so that V8's async
 * stack traces run through it to the kit's caller, as tools and profilers that attribute database commands
 * to their callers need (bench/lib/measure.ts).
 */
export async function bounded<T>(name: string, call: () => Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailableError(new StoreTimeoutError(name, ms))), ms);
  });
  try {
    return await Promise.race([call(), deadline]);
  } catch (err) {
    throw err instanceof CreditsError ? err : new StoreUnavailableError(err);
  } finally {
    clearTimeout(timer);
  }
}
