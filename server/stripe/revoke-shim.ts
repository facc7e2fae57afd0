/**
 * TEMPORARY, until the ledger's own revokeGrant lands on main (branch ledger-rollover): takes a grant's
 * unspent rest once, under a key. Replaced by `core.revokeGrant` on rebase.
 */
import type { CreditsCore } from '../domain/core';
import type { Ledger } from '../ledger';

export async function revokeGrantShim(
  core: CreditsCore,
  ledger: Ledger,
  userId: string,
  grantId: string,
  options: { reason?: string; key?: string } = {},
): Promise<{ revoked: number; balance: number }> {
  const details = await core.getBalanceDetails(userId);
  const remaining = details.grants.find((g) => g.id === grantId)?.remaining ?? 0;
  const key = options.key ?? `revoke:${grantId}`;
  const outcome = await ledger.applyOnceSettled(
    userId,
    key,
    { kind: 'clawback', amount: -remaining, from: grantId, ...(options.reason ? { reason: options.reason } : {}) },
    { create: true },
  );
  return { revoked: outcome.status === 'applied' ? remaining : 0, balance: await ledger.getBalance(userId) };
}
