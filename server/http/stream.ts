/**
 * A guarded answer as it goes out, whatever the framework: whether a byte of its body has been delivered,
 * whether the client went away before it ended (the route's `credits.signal`), and what that means for the
 * charge. The Express guard (middleware.ts) and the Fetch guard (server/fetch) only report what they see:
 * a body chunk handed to the connection, the end of the answer, or the answer cut short.
 *
 * The rule, the same on both sides (README "Streaming AI routes"):
 * - an answer whose status the `refundOn` rule calls a failure is given back whole (as before);
 * - an answer cut short (the route threw or errored its stream after the headers, the connection was
 *   destroyed, the client went away) before its first body byte is given back whole: nothing was delivered;
 * - once a byte has been delivered the guard gives nothing back by itself, whatever happens next: what the
 *   route settles is charged, and without a settle the reservation stands. The route knows what it
 *   delivered (tokens, not bytes) and learns of a client that left from `credits.signal`; a refund of every
 *   stream cut short would make an answer read to its last token and then aborted free.
 */
import type { CreditsCore } from '../domain/core';
import { logFailure, type Log } from '../log';

/** One guarded request's answer, as its adapter reports it. */
export class Answer {
  private readonly controller = new AbortController();
  private delivered = false;
  private over = false;

  constructor(
    private readonly core: CreditsCore,
    private readonly logger: Log,
    private readonly charge: { userId: string; chargeId: string; reserved: number },
  ) {}

  /** Aborted when the client goes away (or the connection is destroyed) before the answer has ended. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Follows the framework's own signal (a Fetch `request.signal`): its abort is the client going away. */
  follow(outside: AbortSignal | undefined): void {
    if (!outside) return;
    if (outside.aborted) this.cut();
    else outside.addEventListener('abort', () => this.cut(), { once: true });
  }

  /** A body chunk was handed to the connection. */
  wrote(bytes: number): void {
    if (bytes > 0 && !this.over) this.delivered = true;
  }

  /**
   * The route's answer failed by the `refundOn` rule: given back whole before it goes out. Resolves with the
   * balance once the give-back is durable, or undefined when the database refused it and it is queued (see
   * giveBackFailed).
   */
  failed(): Promise<number | undefined> {
    this.over = true;
    return giveBackFailed(this.core, this.logger, this.charge.userId, this.charge.chargeId, this.charge.reserved);
  }

  /** The answer went out to its end, with the client still there. */
  ended(): void {
    this.over = true;
  }

  /**
   * The answer was cut short: the client went away, the route failed after its headers, the body stream
   * errored or was cancelled. Given back whole when nothing was delivered; once, whoever reports it first.
   */
  cut(): void {
    if (this.over) return;
    // The give-back is tracked before the route hears of the abort, so a flush() it triggers waits for it.
    if (!this.delivered) void this.failed();
    this.over = true;
    this.controller.abort();
  }
}

/**
 * A Fetch body as it is read: `on.chunk` sees each chunk as the reader takes it (so a chunk counts as
 * delivered only once the server pulled it for the connection), `on.end` the end of the body, and `on.cut`
 * a body that errored or whose reader cancelled it (the client went away). Pulled one chunk at a time, so
 * nothing is read from the route's stream ahead of the connection.
 */
export function watchBody(
  body: ReadableStream<Uint8Array>,
  on: { chunk(chunk: Uint8Array): void; end(): void; cut(): void },
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          on.cut();
          controller.error(err);
          return;
        }
        if (next.done) {
          on.end();
          controller.close();
          return;
        }
        on.chunk(next.value);
        controller.enqueue(next.value);
      },
      cancel(reason) {
        on.cut();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Gives back what a failed guarded request was charged, before its answer goes out, so a client that reads
 * its balance right after the error sees it. A give-back that cannot be written now (database down) does
 * not keep the answer back: it is retried in the background and, once recorded, finished by reconcile()
 * after a restart. Resolves either way; `core.track` lets flush() wait for it.
 */
export function giveBackFailed(core: CreditsCore, logger: Log, userId: string, chargeId: string, reserved: number): Promise<number | undefined> {
  const giveBack = () => core.giveBack(userId, chargeId, reserved, 'The guarded request failed');
  // Resolves with the balance after the give-back, or undefined when it is left to the background.
  const done = giveBack().catch((err: unknown) => {
    logFailure(logger, err, 'giving back a failed request, retried in the background');
    core.later(giveBack, `giving back ${reserved} credits to user ${userId} for the failed request charged by entry ${chargeId}`);
    return undefined;
  });
  core.track(done);
  return done;
}
