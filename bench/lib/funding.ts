/**
 * Funding the bench's accounts through the kit, shared by bench/run.ts and bench/db-profile.ts.
 */
import type { Credits } from 'credit-kit/server';

/** Runs `fn` over `items`, `width` at a time. */
export async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

/**
 * Gives each account `grantsEach` open promotion grants of `total / grantsEach` credits, each with its own
 * priority and expiry (a year away and later), so the book the mover folds over is that long. Grant k of
 * every account goes before grant k + 1 of any: each batch then writes 50 different accounts side by side,
 * where the grants of one account would wait for each other.
 */
export async function fundWithGrants(credits: Pick<Credits, 'grantCredits'>, users: string[], grantsEach: number, total: number): Promise<void> {
  const farOff = Date.now() + 365 * 86_400_000;
  await inBatches(
    Array.from({ length: grantsEach }, (_, k) => users.map((u) => [u, k] as const)).flat(),
    50,
    ([u, k]) =>
      credits.grantCredits(u, total / grantsEach, {
        idempotencyKey: `fund:${u}:${k}`,
        source: 'promotion',
        priority: (k % 5) * 10,
        expiresAt: new Date(farOff + k * 86_400_000),
        reason: 'bench funding',
      }),
  );
}
