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

function bounded<T>(name: string, call: () => Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new StoreUnavailableError(new StoreTimeoutError(name, ms))), ms);
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof CreditsError ? err : new StoreUnavailableError(err));
      },
    );
  });
}
