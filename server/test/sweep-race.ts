/**
 * The race grants.test.ts and grants-rollover.test.ts run on an expiry: two instances sweep one user over and
 * over while many one-credit spends, alternating between them, land meanwhile.
 */
import type { Credits } from 'credit-kit/server';

/**
 * Each of `a` and `b` sweeps `userId`'s grants as of `now` (at least once, 5 ms apart) until `count` spends
 * of 1 credit (odd ones through `a`, even ones through `b`) have all answered. How many grants each sweeper
 * expired, and each spend's answer.
 */
export async function sweepsRacingSpends(a: Credits, b: Credits, userId: string, now: Date, count = 300): Promise<{ expiredBy: number[]; spends: boolean[] }> {
  let sweeping = true;
  const sweeps = [a, b].map(async (c) => {
    let expired = 0;
    for (let i = 0; sweeping || i === 0; i++) {
      expired += (await c.expireGrants({ userId, now })).grantsExpired;
      await new Promise((r) => setTimeout(r, 5));
    }
    return expired;
  });
  const spends = await Promise.all(Array.from({ length: count }, (_, i) => (i % 2 ? a : b).deductCredits(userId, 1)));
  sweeping = false;
  return { expiredBy: await Promise.all(sweeps), spends };
}
