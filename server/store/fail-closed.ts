/**
 * The fail-closed decorator: every call of the wrapped store is bounded by `timeoutMs` and any failure
 * becomes a StoreUnavailableError (503). Wrapped once, around the whole store, so no call site can forget
 * it. A call that times out may still land at the database later; the ledger treats such a write as
 * uncertain and settles it by fencing and looking (ledger/apply-once.ts), never by trusting the timeout.
 */
import { CreditsError, StoreUnavailableError } from '../errors';
import type { CreditStore } from './types';

export class StoreTimeoutError extends Error {
  override name = 'StoreTimeoutError';
  constructor(method: string, ms: number) {
    super(`credit store: ${method} did not answer within ${ms} ms`);
  }
}

export function failClosed(store: CreditStore, timeoutMs: number): CreditStore {
  const wrapped: Partial<Record<keyof CreditStore, unknown>> = {};
  for (const name of methodNames(store)) {
    const method = store[name] as (...args: unknown[]) => Promise<unknown>;
    wrapped[name] = (...args: unknown[]) => bounded(name, () => method.apply(store, args), timeoutMs);
  }
  return wrapped as CreditStore;
}

function methodNames(store: CreditStore): Array<keyof CreditStore> {
  const names = new Set<string>();
  for (let o: object | null = store; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) {
      if (n !== 'constructor' && typeof (store as unknown as Record<string, unknown>)[n] === 'function') names.add(n);
    }
  }
  return [...names] as Array<keyof CreditStore>;
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
