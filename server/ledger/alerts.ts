/**
 * Low-balance alerts: the app is told once when a user's balance falls below a level it set, and again only
 * after the balance has been back at the level or above.
 *
 * A crossing is a fact of the ledger, not of a request: the entry that took the balance from `level` or more
 * to below it. So it is found where every entry passes exactly in `seq` order with its balance after: when
 * the journal mover writes entries to the ledger collection (or reconcile() moves a journal a crashed
 * instance left). The crossings are recorded as alert documents *before* those entries leave their
 * journal, so a crash at any point leaves either the entries journalled (the next move finds the crossing
 * again) or the alert recorded (reconcile() delivers it). Two instances that move the same entries record
 * the same alert id; only the one whose insert recorded it delivers it. Nothing of this is on the request
 * path: a guarded spend stays one update.
 *
 * Delivery is at least once, with a stable `alert.id`: the hook is called, then the alert is marked
 * delivered. A hook that throws is retried with backoff (on its own queue, so a slow or failing hook never
 * delays the money work of the ledger's background queue), and past that by reconcile(). An instance that
 * dies between the hook's return and the mark makes reconcile() call it again with the same id.
 */
import type { AlertRecord, LedgerEntry, LowBalanceAlert } from '../domain/types';
import type { CreditStore } from '../store/types';
import { Background, MAX_ATTEMPTS } from './background';

export interface LowBalanceWatch {
  /** Ascending, distinct positive integers. */
  levels: readonly number[];
  onLowBalance: (alert: LowBalanceAlert) => void | Promise<void>;
}

/** The crossings among entries of one or more accounts (each account's entries in `seq` order). */
export function crossingsOf(entries: readonly LedgerEntry[], levels: readonly number[]): LowBalanceAlert[] {
  const out: LowBalanceAlert[] = [];
  for (const e of entries) {
    if (e.amount >= 0) continue;
    const before = e.balanceAfter - e.amount;
    for (const level of levels) {
      if (before >= level && e.balanceAfter < level) {
        out.push({ id: `${e.seq}:${level}:${e.userId}`, userId: e.userId, level, balance: e.balanceAfter, entryId: e.id, seq: e.seq, at: e.at });
      }
    }
  }
  return out;
}

export class LowBalanceAlerts {
  /** Delivery has its own queue: the app's hook must never hold up give-backs and claim decisions. */
  readonly background: Background;
  /**
   * Alerts this process is delivering, from the moment a delivery is queued until it succeeds or is given
   * up: reconcile() leaves them to it (one queued but not yet started would otherwise be delivered twice).
   */
  private readonly inFlight = new Set<string>();
  /** Alerts whose insert failed with an unknown outcome: the next move that finds them delivers them. */
  private readonly uncertain = new Set<string>();

  constructor(
    private readonly store: CreditStore,
    private readonly watch: LowBalanceWatch,
    private readonly onError: (err: unknown) => void,
  ) {
    this.background = new Background(onError);
  }

  /**
   * Records the crossings among entries just written to the ledger, before they leave their journals (the
   * mover calls it between the two), and delivers those this call recorded. Throws if the record fails:
   * the mover then leaves the journal as it is, to be moved, and looked at, again.
   */
  async record(entries: readonly LedgerEntry[]): Promise<void> {
    const crossings = crossingsOf(entries, this.watch.levels);
    if (crossings.length === 0) return;
    const createdAt = new Date();
    let recorded: Set<string>;
    try {
      recorded = new Set(await this.store.insertAlerts(crossings.map((a) => ({ ...a, state: 'pending', createdAt }))));
    } catch (err) {
      // The insert may have landed with its reply lost: the next move of these entries would then find them
      // recorded already and leave them to reconcile(). Remembered here, they are delivered by that move.
      for (const alert of crossings) this.uncertain.add(alert.id);
      if (this.uncertain.size > 10_000) this.uncertain.clear(); // only a shortcut: reconcile() delivers the rest
      throw err;
    }
    for (const alert of crossings) {
      if (recorded.has(alert.id) || this.uncertain.delete(alert.id)) this.deliverLater(alert);
    }
  }

  /** Delivers alerts recorded before `olderThanMs` ago and still not delivered; how many it delivered. */
  async reconcile(olderThanMs: number, batch: number, failed: (err: unknown) => void): Promise<number> {
    let delivered = 0;
    for (const record of await this.store.pendingAlertsBefore(new Date(Date.now() - olderThanMs), batch)) {
      if (this.inFlight.has(record.id)) continue;
      this.inFlight.add(record.id);
      try {
        await this.deliver(toAlert(record));
        delivered++;
      } catch (err) {
        failed(err);
      } finally {
        this.inFlight.delete(record.id);
      }
    }
    return delivered;
  }

  flush(): Promise<void> {
    return this.background.flush();
  }

  private deliverLater(alert: LowBalanceAlert): void {
    let attempt = 0;
    this.inFlight.add(alert.id);
    this.background.retry(async () => {
      try {
        await this.deliver(alert);
        this.inFlight.delete(alert.id);
      } catch (err) {
        // The first failure is reported at once (it is most likely the app's hook); the last one as given up,
        // after which reconcile() may deliver it.
        if (attempt++ === 0) this.onError(err);
        if (attempt >= MAX_ATTEMPTS) this.inFlight.delete(alert.id);
        throw err;
      }
    }, `telling the app (lowBalance.onLowBalance) that user ${alert.userId}'s balance fell below ${alert.level} (alert ${alert.id})`);
  }

  private async deliver(alert: LowBalanceAlert): Promise<void> {
    try {
      await this.watch.onLowBalance(alert);
    } catch (err) {
      throw new LowBalanceHookError(alert, err);
    }
    await this.store.markAlertDelivered(alert.id);
  }
}

/** The app's `onLowBalance` threw: the alert stays pending and is delivered again. */
export class LowBalanceHookError extends Error {
  override name = 'LowBalanceHookError';
  constructor(alert: LowBalanceAlert, cause: unknown) {
    super(`lowBalance.onLowBalance threw for alert ${alert.id} (${cause instanceof Error ? cause.message : String(cause)}); it is delivered again later.`, { cause });
  }
}

function toAlert(record: AlertRecord): LowBalanceAlert {
  const { id, userId, level, balance, entryId, seq, at } = record;
  return { id, userId, level, balance, entryId, seq, at };
}
