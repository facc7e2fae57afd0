/**
 * Background work the kit owes after an answer has gone out (deciding a claim whose holder gave up, giving
 * back a refused request's charge). Tasks wait in one queue and run a few at a time, so that after an
 * outage the work owed for hundreds of refused requests does not flood the database that just came back;
 * a task that fails is retried with backoff. Every timer is unref'd and tracked. flush() runs waiting tasks
 * at once and resolves when nothing is left in flight, or, while the database refuses, after a few tries
 * (what is still owed then keeps its place and backoff).
 */

const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 30_000;
/** Tries of a task before it is given up (exported for queues that must know when that happens). */
export const MAX_ATTEMPTS = 16;
/** Tasks run at once; the rest wait their turn. */
const CONCURRENCY = 4;

interface Task {
  run: () => Promise<void>;
  /** What the task owes, for the error if it is given up. */
  what: string | undefined;
  attempt: number;
  notBefore: number;
}

/** Work the kit owed after an answer and stopped retrying: whatever it was may need a hand (or reconcile()). */
export class GaveUpError extends Error {
  override name = 'GaveUpError';
  constructor(what: string | undefined, attempts: number, cause: unknown) {
    super(
      `credit-kit gave up after ${attempts} tries on ${what ?? 'work owed after an answer'}: ` +
        `reconcile() finishes it if the database recorded its claim, otherwise it must be done by hand ` +
        `(last error: ${cause instanceof Error ? cause.message : String(cause)})`,
      { cause },
    );
  }
}

export class Background {
  private readonly queue: Task[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly tracked = new Set<Promise<void>>();
  private idle: Array<() => void> = [];

  constructor(private readonly onError: (err: unknown) => void) {}

  /**
   * Runs `run` soon, and again after failures, up to MAX_ATTEMPTS. Given up, it is reported as a GaveUpError
   * naming `what` it owed, an error (never quieted as an outage warning), since that work may now be lost.
   */
  retry(run: () => Promise<void>, what?: string): void {
    this.queue.push({ run, what, attempt: 0, notBefore: 0 });
    this.pump();
  }

  /** Keeps a promise that must finish before flush() resolves (it is not retried). */
  track(work: Promise<unknown>): void {
    const done: Promise<void> = work.then(
      () => undefined,
      (err: unknown) => this.onError(err),
    );
    const t = done.finally(() => this.tracked.delete(t));
    this.tracked.add(t);
  }

  /**
   * Runs every waiting task now and resolves when none is left. A task that keeps failing (the database is
   * down) is tried a few more times, then left queued with its backoff: flush() does not wait out an outage.
   */
  async flush(): Promise<void> {
    for (let round = 0; ; round++) {
      if (this.tracked.size > 0) {
        await Promise.allSettled([...this.tracked]);
        continue;
      }
      if (this.queue.length === 0 && this.running === 0) return;
      if (round >= 3 && this.running === 0) return; // the rest keep their backoff
      for (const task of this.queue) task.notBefore = 0;
      await new Promise<void>((resolve) => {
        this.idle.push(resolve);
        this.pump();
      });
    }
  }

  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const now = Date.now();
    while (this.running < CONCURRENCY) {
      const i = this.queue.findIndex((t) => t.notBefore <= now);
      if (i < 0) break;
      const [task] = this.queue.splice(i, 1);
      this.running++;
      void this.runOne(task!);
    }
    if (this.running === 0 && (this.queue.length === 0 || this.idle.length > 0)) {
      // Idle, or (for flush) every queued task has had its turn and is backing off.
      const waiting = this.idle;
      this.idle = [];
      for (const resolve of waiting) resolve();
      if (this.queue.length === 0) return;
    }
    if (this.running < CONCURRENCY && this.queue.length > 0) {
      const next = Math.min(...this.queue.map((t) => t.notBefore));
      this.timer = setTimeout(() => this.pump(), Math.max(0, next - now));
      this.timer.unref();
    }
  }

  private async runOne(task: Task): Promise<void> {
    try {
      await task.run();
    } catch (err) {
      task.attempt++;
      if (task.attempt >= MAX_ATTEMPTS) this.onError(new GaveUpError(task.what, task.attempt, err));
      else {
        task.notBefore = Date.now() + Math.min(FIRST_DELAY_MS * 2 ** (task.attempt - 1), MAX_DELAY_MS);
        this.queue.push(task);
      }
    } finally {
      this.running--;
      this.pump();
    }
  }
}
