/**
 * Crash injection for the kit's own tests: named points between the steps of a change, where a test makes
 * the process "die" by throwing. Not public API: it is not exported from credit-kit/server, and a test passes
 * its injector with `injectFaults(options, fault)` under a symbol the options check does not see.
 */

export type FaultPoint =
  | 'after-claim' // a key's claim is inserted; its change not yet applied
  | 'reply-lost' // the update landed but its answer never reached us, as when a connection drops
  | 'after-apply' // the change is applied; the claim not yet marked
  | 'before-move' // a batch of journal entries is about to be moved to the ledger
  | 'after-purchase-update'; // a purchase's decision is recorded; its ledger change not yet applied

export type FaultInjector = (point: FaultPoint) => void | Promise<void>;

export const FAULTS = Symbol.for('credit-kit.test-faults');

/** The options with a fault injector attached (tests only). */
export function injectFaults<T extends object>(options: T, fault: FaultInjector): T {
  return { ...options, [FAULTS]: fault };
}

export function faultsOf(options: object): FaultInjector | undefined {
  return (options as { [FAULTS]?: FaultInjector })[FAULTS];
}
