/**
 * reconcile(): finishes what a crash, a stall or a lost reply left half done. Claims past their lease are
 * decided (fence, look, then applied, completed or released: see changes.ts), journals older than the
 * lease are moved to the ledger, metered reservations past their settle-by time are decided, and request
 * keys past their expiry are deleted (MongoDB's TTL index does that too; servers without TTL rely on this).
 * Every item is tried on its own: one that fails is counted and reported, and the pass goes on with the
 * rest. Safe to run at once on any number of instances.
 */
import type { LedgerEntry } from '../domain/types';
import type { CreditStore } from '../store/types';
import type { LowBalanceAlerts } from './alerts';
import type { Changes } from './changes';
import type { JournalMover } from './journal-mover';

export interface ReconcileReport {
  claimsResolved: number;
  claimsReleased: number;
  accountsMoved: number;
  /** Guarded requests' Idempotency-Keys (and their answers) past `idempotencyKeyTtlMs`, deleted. */
  keysExpired: number;
  /** Low-balance alerts recorded but not delivered (their hook threw, or their instance stopped), delivered now. */
  alertsDelivered: number;
  /** Metered reservations nobody settled within `settleWithinMs`, given back whole by this pass. */
  reservationsGivenBack: number;
  /** Items that could not be repaired in this pass (reported to onBackgroundError); the next pass retries them. */
  errors: number;
}

/**
 * How a metered reservation past its settle-by time is decided (the core's give-back, unless settled): true
 * when this call gave it back. Keyed, so however many instances decide one at once, it happens once.
 */
export type DecideReservation = (charge: LedgerEntry) => Promise<boolean>;

export async function reconcileLedger(
  deps: {
    store: CreditStore;
    changes: Changes;
    mover: JournalMover;
    alerts: LowBalanceAlerts | undefined;
    olderThanMs: number;
    decideReservation: DecideReservation | undefined;
    onError: (err: unknown) => void;
  },
  batch: number,
): Promise<ReconcileReport> {
  const { store, changes, mover, alerts, olderThanMs, decideReservation, onError } = deps;
  const report: ReconcileReport = { claimsResolved: 0, claimsReleased: 0, accountsMoved: 0, keysExpired: 0, alertsDelivered: 0, reservationsGivenBack: 0, errors: 0 };
  const failed = (err: unknown) => {
    report.errors++;
    onError(err);
  };

  const stale = await store.pendingClaimsBefore(new Date(Date.now() - olderThanMs), batch);
  for (const claim of stale) {
    try {
      const decision = await changes.decide(claim);
      if (decision === 'applied') report.claimsResolved++;
      else if (decision === 'released') report.claimsReleased++;
    } catch (err) {
      failed(err);
    }
  }

  for (const userId of await store.accountsWithJournal(new Date(Date.now() - olderThanMs), batch)) {
    try {
      const account = await store.getAccount(userId);
      if (account && account.journal.length > 0) {
        await mover.moveNow(account);
        report.accountsMoved++;
      }
    } catch (err) {
      failed(err);
    }
  }

  if (alerts) {
    // After the journals: a crossing in a journal moved just now is recorded and delivered by that move.
    try {
      report.alertsDelivered = await alerts.reconcile(olderThanMs, batch, failed);
    } catch (err) {
      failed(err);
    }
  }

  // After the journals have moved: a metered charge is found in the ledger collection. A reservation is
  // closed only once decided, so one whose decision failed comes back in the next pass.
  if (decideReservation) {
    try {
      const now = new Date();
      for (let round = 0; round < 100; round++) {
        const due = await store.openReservationsBefore(now, batch);
        let closed = 0;
        for (const charge of due) {
          try {
            if (await decideReservation(charge)) report.reservationsGivenBack++;
            await store.closeReservation(charge.id);
            closed++;
          } catch (err) {
            failed(err);
          }
        }
        if (due.length < batch || closed === 0) break;
      }
    } catch (err) {
      failed(err);
    }
  }

  try {
    // Batch after batch until one comes back short (bounded: FerretDB has no TTL index, this is its only sweep).
    const now = new Date();
    for (let round = 0; round < 100; round++) {
      const deleted = await store.deleteExpiredClaims(now, batch);
      report.keysExpired += deleted;
      if (deleted < batch) break;
    }
  } catch (err) {
    failed(err);
  }
  return report;
}
