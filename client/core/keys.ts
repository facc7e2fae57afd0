/**
 * Every SWR key the kit uses, in one place. A key is a tuple `['credit-kit', apiBase, what, ...args]`, so
 * two providers with different API bases never share an entry, and a revalidation can pick the kit's keys
 * by what they hold rather than by matching paths.
 */
import { unstable_serialize as serializeKey, type Cache, type ScopedMutator } from 'swr';
import { unstable_serialize } from 'swr/infinite';
import type { Balance, TransactionPage } from './types';

const KIT = 'credit-kit';
const BALANCE = 'balance';
const GRANTS = 'grants';
const PRICING = 'pricing';
const SESSION = 'session';
const TRANSACTIONS = 'transactions';
/** usePlan's key: `['credit-kit', apiBase, 'plan']` (client/hooks/use-plans.ts). */
export const PLAN = 'plan';
const AUTO_RECHARGE = 'auto-recharge';

export type BalanceKey = readonly [typeof KIT, string, typeof BALANCE];
export type GrantsKey = readonly [typeof KIT, string, typeof GRANTS];
export type PricingKey = readonly [typeof KIT, string, typeof PRICING];
export type SessionKey = readonly [typeof KIT, string, typeof SESSION, string];
/** One page of the history: `limit` entries before `cursor` (null: the newest). */
export type HistoryPageKey = readonly [typeof KIT, string, typeof TRANSACTIONS, number, string | null];

export const balanceKey = (base: string): BalanceKey => [KIT, base, BALANCE];
export type AutoRechargeKey = readonly [typeof KIT, string, typeof AUTO_RECHARGE];
export const autoRechargeKey = (base: string): AutoRechargeKey => [KIT, base, AUTO_RECHARGE];
export const grantsKey = (base: string): GrantsKey => [KIT, base, GRANTS];
export const pricingKey = (base: string): PricingKey => [KIT, base, PRICING];
export const sessionKey = (base: string, id: string | null): SessionKey | null => (id ? [KIT, base, SESSION, id] : null);

/** useSWRInfinite's getKey for the history: each page starts at the cursor the previous one handed out. */
export const historyPageKey =
  (base: string, limit: number) =>
  (index: number, previous: TransactionPage | null): HistoryPageKey | null =>
    index === 0 ? [KIT, base, TRANSACTIONS, limit, null] : previous?.nextCursor ? [KIT, base, TRANSACTIONS, limit, previous.nextCursor] : null;

const isKit = (key: unknown, base: string): key is readonly [typeof KIT, string, string, ...unknown[]] =>
  Array.isArray(key) && key[0] === KIT && key[1] === base;

/** useSWRInfinite's own key for a history (its page size's), as `mutate` takes it. */
export const historyKey = (base: string, limit: number): string => unstable_serialize(historyPageKey(base, limit));

/**
 * Revalidates what a spend or a purchase changes under `base` (not pricing, not a checkout session's own
 * status): the balance, its breakdown and every history. SWR's mutate filter skips infinite keys, so each history is found
 * by the page keys it has stored, then revalidated by its own key.
 *
 * With `told`, a balance the server just sent (a guarded answer's Credits-Balance header, a 402's body),
 * the cached balance is set to it without asking again, and only the histories are revalidated. With no
 * balance cached yet (nothing shown, or its first request still out) it is asked for as usual.
 */
export async function revalidateBalance(mutate: ScopedMutator, base: string, told?: { cache: Cache; balance: number }): Promise<void> {
  const key = balanceKey(base);
  const current = told?.cache.get(serializeKey(key))?.data as Balance | undefined;
  const histories = new Set<string>();
  await mutate((k) => {
    if (!isKit(k, base)) return false;
    if (k[2] === TRANSACTIONS) histories.add(historyKey(base, k[3] as number));
    // The breakdown is always asked again: the header tells the balance, not which grants it came from. The
    // user's plan (usePlan) changes with purchases and renewals: asked again too.
    return (!current && k[2] === BALANCE) || k[2] === GRANTS || k[2] === PLAN;
  });
  await Promise.all([...[...histories].map((k) => mutate(k)), current && mutate(key, { ...current, balance: told!.balance }, { revalidate: false })]);
}
