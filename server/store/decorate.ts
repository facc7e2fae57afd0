/**
 * A store decorator's one piece of plumbing: a store whose every method is `around(name, call)`, where
 * `call()` invokes the wrapped store's method with the original arguments. Used by the fail-closed bound and
 * by the tests' crash injection.
 */
import type { CreditStore } from './types';

export type StoreMethod = keyof CreditStore;

export function decorateStore(
  store: CreditStore,
  around: (name: StoreMethod, call: () => Promise<unknown>) => Promise<unknown>,
): CreditStore {
  const wrapped: Partial<Record<StoreMethod, unknown>> = {};
  for (const name of methodNames(store)) {
    const method = store[name] as (...args: unknown[]) => Promise<unknown>;
    wrapped[name] = (...args: unknown[]) => around(name, () => method.apply(store, args));
  }
  return wrapped as CreditStore;
}

/** Own and inherited methods, so class-based and object-literal stores both work. */
function methodNames(store: CreditStore): StoreMethod[] {
  const names = new Set<string>();
  for (let o: object | null = store; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) {
      if (n !== 'constructor' && typeof Reflect.get(store, n) === 'function') names.add(n);
    }
  }
  return [...names] as StoreMethod[];
}
