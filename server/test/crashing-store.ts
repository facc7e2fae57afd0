/**
 * Crash injection for the kit's own tests, as a store decorator: the kit is given a store that fails at a
 * named point between the steps of a change, as the process or its connection would. It lives with the
 * tests and is not part of credit-kit/server; production code has no hook for it.
 *
 * Each point is a place in the conversation with the database:
 *   after-claim            an idempotency claim was inserted (insertClaim answered "inserted")
 *   reply-lost             an entry's update landed but its answer never arrived (applyEntry, or applyEntries
 *                          for spends batched together, a lost reply)
 *   after-apply            an entry's update landed, then the process died (applyEntry, applyEntries)
 *   before-move            journal entries were about to be written to the ledger (insertLedgerEntries)
 *   before-book            a move wrote its ledger entries, then stopped before it stored their grant books (writeBooks)
 *   after-book             a move stored its grant books, before it pulled their journals (writeBooks answered "stored")
 *   after-pull             a move pulled its journals, and the answer never arrived (pullJournals)
 *   after-purchase-update  a purchase's decision was written (replacePurchase answered "written")
 *
 * A plan says what happens when its point is reached: `throw` fails that one call (the rest of the process
 * goes on, as after a connection error), `die` also fails every later call made under the same plan, so
 * nothing the dead process still had queued (its give-backs, its retries) ever reaches the database; the
 * work is left to reconcile() on another instance, as after a real crash.
 */
import { decorateStore, type StoreMethod } from '../store/decorate';
import { MongoCreditStore } from '../store/mongo-store';
import type { CreditStore } from '../store/types';
import type { Connection } from 'mongoose';

export type CrashPoint = 'after-claim' | 'reply-lost' | 'after-apply' | 'before-move' | 'before-book' | 'after-book' | 'after-pull' | 'after-purchase-update';

export interface CrashPlan {
  point: CrashPoint;
  /** Default `throw`; `reply-lost` is always a lost reply only. */
  mode?: 'throw' | 'die';
  /** Set when the point was reached (a plan fires once). */
  fired?: boolean;
  /** Set when a `die` plan fired: every later call under this plan fails. */
  dead?: boolean;
}

export class InjectedCrash extends Error {
  override name = 'InjectedCrash';
}

/** Which call each point follows (or, for before-move, precedes), and when it counts as reached. */
const POINTS: Record<CrashPoint, { methods: StoreMethod[]; when: 'before' | 'after'; reached?: (result: unknown) => boolean }> = {
  'after-claim': { methods: ['insertClaim'], when: 'after', reached: (existing) => existing === null },
  'reply-lost': { methods: ['applyEntry', 'applyEntries'], when: 'after', reached: (snapshot) => snapshot !== null },
  'after-apply': { methods: ['applyEntry', 'applyEntries'], when: 'after', reached: (snapshot) => snapshot !== null },
  'before-move': { methods: ['insertLedgerEntries'], when: 'before' },
  'before-book': { methods: ['writeBooks'], when: 'before' },
  'after-book': { methods: ['writeBooks'], when: 'after', reached: (lost) => Array.isArray(lost) && lost.length === 0 },
  'after-pull': { methods: ['pullJournals'], when: 'after' },
  'after-purchase-update': { methods: ['replacePurchase'], when: 'after', reached: (written) => written === true },
};

/**
 * `inner` with crashes: `planOf()` is asked at every call for the plan in force (from an AsyncLocalStorage
 * for one request's plan, or a variable for a whole instance); undefined means no crash.
 */
export function crashingStore(inner: CreditStore, planOf: () => CrashPlan | undefined): CreditStore {
  return decorateStore(inner, async (name, call) => {
    const plan = planOf();
    if (plan?.dead) throw new InjectedCrash(`${name} after the process died at ${plan.point}`);
    const at = plan && !plan.fired ? POINTS[plan.point] : undefined;
    if (!plan || !at || !at.methods.includes(name)) return call();
    if (at.when === 'before') crash(plan);
    const result = await call();
    if (!at.reached || at.reached(result)) crash(plan);
    return result;
  });
}

/** The MongoDB store on `connection`, with crashes. */
export function crashingMongoStore(connection: Connection, planOf: () => CrashPlan | undefined): CreditStore {
  return crashingStore(new MongoCreditStore({ connection, collectionPrefix: 'credit_' }), planOf);
}

function crash(plan: CrashPlan): never {
  plan.fired = true;
  if (plan.point === 'reply-lost') throw new Error('connection reset after the update was sent (injected)');
  if (plan.mode === 'die') plan.dead = true;
  throw new InjectedCrash(`injected crash at ${plan.point}`);
}
