/**
 * The guarded request, framework-neutral: who is asking, the charge bounded by timeoutMs, the context a
 * guarded route sees, and the give-back of a failed request. The Express guard (middleware.ts) and the
 * Fetch guard (server/fetch) are thin adapters over these.
 */
import { ConflictError, CreditsConfigError, CreditsError, StoreUnavailableError, UnauthenticatedError, toCreditsError, type CreditsErrorBody } from '../errors';
import type { CreditsCore, Settlement } from '../domain/core';
import { requestKey } from '../domain/keys';
import type { KeptReply, RequestFingerprint } from '../domain/types';
import { creditsForUsage, tokenPriceFor, type TokenUsage } from '../domain/prices';
import { logFailure, type Log } from '../log';
import type { ResolvedCost } from '../options';
import { assertAmount, assertId, assertNonNegativeAmount, parseIdempotencyKey } from '../validate';
import { givenBack } from './balance-headers';
import { Answer } from './stream';

/** What a guarded route sees: `req.credits` on Express, `context.credits` on the Fetch side. */
export interface CreditsContext {
  userId: string;
  /** Credits this request has been charged so far (after `settle`, the settled cost; 0 once given back). */
  charged: number;
  /** The balance right after the charge (after `settle`, after the settlement; after a give-back, after it). */
  balance: number;
  /** Id of the usage ledger entry; refunds and settlements link to it. */
  chargeId: string;
  /**
   * Metered work: the route reserved `cost` up front; report what it really used. Less refunds the rest,
   * more charges the difference atomically (subject to the `overage` policy). Once per request.
   */
  settle(actualCost: number): Promise<{ charged: number; balance: number }>;
  /**
   * `settle` by a model call's token usage (`{ promptTokens, completionTokens }`, `{ inputTokens, outputTokens }`,
   * `{ prompt_tokens, completion_tokens }` or `{ input_tokens, output_tokens }`), priced by the `model`'s entry
   * in the route's named cost (`perModel`). Usage that is not a token count (InvalidUsageError) or a model
   * without a price (400) is refused, and the reservation is given back. See creditsForUsage for the rounding rule.
   */
  settleUsage(usage: TokenUsage, model: string): Promise<{ charged: number; balance: number }>;
  /**
   * Aborted when the client goes away before the answer has ended (Express: the response closed before it
   * finished; Fetch: `request.signal`, or the response body cancelled by its reader). Pass it on to the
   * model call (`fetch(url, { signal })`, the SDKs' `{ signal }` option) and settle what was delivered.
   */
  signal: AbortSignal;
}

/** A status and a JSON body, for an adapter to send. */
export interface Reply<T = unknown> {
  status: number;
  body: T;
}

/** The kit's error shape for a failure, logged when it is not an expected one (server/log.ts). */
export function errorReply(err: unknown, log: Log, where: string): Reply<CreditsErrorBody> {
  const e = toCreditsError(err);
  logFailure(log, err, where);
  return { status: e.status, body: e.toJSON() };
}

/** Signed-in user's id, or an error to send. */
export async function resolveUserId<Req>(
  getUserId: (req: Req) => string | null | undefined | Promise<string | null | undefined>,
  req: Req,
): Promise<string> {
  const id = await getUserId(req);
  if (id === null || id === undefined || id === '') throw new UnauthenticatedError();
  if (typeof id !== 'string') {
    throw new CreditsError('misconfigured', 'getUserId(req) must return a string user id, or null when nobody is signed in.');
  }
  return assertId(id, 'user id');
}

/** A fixed cost is checked when the guard is created, not per request. */
export function assertFixedCost(cost: unknown, call: string, example: string): void {
  if (typeof cost === 'function') return;
  try {
    assertAmount(cost, `${call}(cost)`);
  } catch (err) {
    throw new CreditsConfigError(`${(err as Error).message} Pass a positive integer such as ${example}, or a function (req) => number.`);
  }
}

/** The second argument of `requireCredits(cost, options)` and `withCredits(cost, options, handler)`. */
export interface GuardOptions {
  /**
   * The cost is a reservation that only `credits.settle(actual)` turns into a charge: a reservation nobody
   * settles within `settleWithinMs` (the process died or stalled mid-answer, or the route never settled) is
   * given back whole by `reconcile()`, once, and a settle that comes after that changes nothing. For
   * streamed AI answers priced by what they used. Default false: the cost stands unless settled.
   */
  metered?: boolean;
}

/** Guard options checked when the guard is created. */
export function resolveGuardOptions(options: unknown, call: string): Required<GuardOptions> {
  if (options === undefined) return { metered: false };
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new CreditsConfigError(`${call}: the options must be an object such as { metered: true }.`);
  }
  const unknown = Object.keys(options).filter((k) => k !== 'metered');
  if (unknown.length > 0) throw new CreditsConfigError(`${call}: unknown option \`${unknown[0]}\`; the one option is \`metered\`.`);
  const metered: unknown = Reflect.get(options, 'metered') ?? false;
  if (typeof metered !== 'boolean') throw new CreditsConfigError(`${call}: \`metered\` must be true or false.`);
  return { metered };
}

/** What a guarded request is let in with, whatever the framework. */
export type Admission =
  /** Refused before the route runs (401, 402, 409, 422, 503, bad input): the error to answer with. */
  | { refused: unknown }
  /** A retry of a finished request: its first answer, to send again; nothing charged. */
  | { replay: KeptReply }
  /**
   * Charged: the route may run. `key` is the request key when an Idempotency-Key came with it; `answer` is
   * what the adapter reports the answer's progress to (server/http/stream.ts).
   */
  | { userId: string; amount: number; key: string | undefined; credits: CreditsContext; answer: Answer };

/**
 * The guard's steps before a route runs, shared by both adapters: who is asking, what it costs, the
 * Idempotency-Key (and, with one, the request's fingerprint), then the charge bounded by `timeoutMs`.
 */
export async function admit<Req>(
  core: CreditsCore,
  options: { getUserId: (req: Req) => string | null | undefined | Promise<string | null | undefined>; timeoutMs: number; settleWithinMs: number; logger: Log },
  req: Req,
  cost: number | ((req: Req) => number | Promise<number>),
  request: {
    route: string;
    idempotencyKey: string | undefined;
    fingerprint: () => RequestFingerprint | Promise<RequestFingerprint>;
    named?: ResolvedCost | undefined;
    /** requireCredits(cost, { metered: true }); a named cost that is metered is one too. */
    metered: boolean;
  },
): Promise<Admission> {
  let userId: string;
  let amount: number;
  let key: string | undefined;
  let fp: RequestFingerprint | undefined;
  try {
    userId = await resolveUserId(options.getUserId, req);
    amount = typeof cost === 'function' ? await cost(req) : cost;
    if (typeof cost === 'function') assertAmount(amount, 'The cost of this request');
    const header = parseIdempotencyKey(request.idempotencyKey);
    if (header !== undefined) {
      key = requestKey(header);
      fp = await request.fingerprint();
    }
    const metered = request.metered || request.named?.metered === true;
    const settleBy = metered ? new Date(Date.now() + options.settleWithinMs) : undefined;
    const charge = await withinDeadline(core, options.timeoutMs, userId, amount, core.charge(userId, amount, key, request.route, fp, request.named, settleBy));
    if ('replay' in charge) return { replay: charge.replay };
    const answer = new Answer(core, options.logger, { userId, chargeId: charge.entryId, reserved: amount });
    const charged = { userId, chargeId: charge.entryId, reserved: amount, balance: charge.balance, metered };
    return { userId, amount, key, answer, credits: createContext(core, charged, request.named, answer) };
  } catch (err) {
    return { refused: err };
  }
}

/**
 * Bounds the whole charge (a keyed one is three calls) by `timeoutMs`: past it the request is refused with
 * 503 and never runs, and a charge that completes afterwards is given back.
 */
function withinDeadline<T extends { entryId: string } | { replay: unknown }>(core: CreditsCore, timeoutMs: number, userId: string, amount: number, charge: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new StoreUnavailableError(new Error(`the charge took longer than timeoutMs (${timeoutMs} ms)`)));
      // Retried from the background queue until the database takes it (a lone attempt could meet the same
      // stall that made the charge late); once its first write lands it is durable, and reconcile() finishes it.
      void charge.then(
        (late) => {
          if (!('entryId' in late)) return; // a replay: nothing was charged
          core.later(
            () => core.giveBack(userId, late.entryId, amount, 'The request was refused: its charge landed after the time limit'),
            `giving back ${amount} credits to user ${userId} for the refused request charged by entry ${late.entryId}`,
          );
        },
        () => undefined, // refused or failed: nothing was charged, or the ledger gives it back itself
      );
    }, timeoutMs);
  });
  return Promise.race([charge, deadline]).finally(() => clearTimeout(timer));
}

function createContext(
  core: CreditsCore,
  { userId, chargeId, reserved, balance, metered }: { userId: string; chargeId: string; reserved: number; balance: number; metered: boolean },
  named: ResolvedCost | undefined,
  answer: Answer,
): CreditsContext {
  let settling: Promise<Settlement> | undefined;
  const ctx: CreditsContext = {
    userId,
    charged: reserved,
    balance,
    chargeId,
    signal: answer.signal,
    settle(actualCost: number) {
      if (settling) return Promise.reject(new ConflictError('settle() was already called for this request.'));
      const actual = assertNonNegativeAmount(actualCost, 'settle(actualCost)');
      const settle = () => core.settle(userId, chargeId, reserved, actual, named, metered);
      settling = settle().then(
        (r) => {
          ctx.charged = r.charged;
          ctx.balance = r.balance;
          return r;
        },
        (err: unknown) => {
          // The database did not take it (at the end of a stream, typically): the route hears 503, and the
          // settlement is not lost but retried in the background under its key, so it lands at most once;
          // a give-back or reconcile() that closes the charge first makes the retry change nothing.
          if (err instanceof StoreUnavailableError) {
            const again = () => settle().catch((e: unknown) => {
              if (!(e instanceof ConflictError)) throw e; // settled already: the first attempt landed after all
            });
            core.later(again, `settling the charge ${chargeId} of user ${userId} at ${actual} credits (reserved ${reserved})`);
          }
          throw err;
        },
      );
      return settling;
    },
    async settleUsage(usage, model) {
      let actual: number;
      try {
        actual = creditsForUsage(usage, tokenPriceFor(named, model));
      } catch (err) {
        // Usage that is not a token count, or a model without a price: refused with its error, and, as for
        // any failed request, given back whole (a later settle() finds the charge closed). Check the model
        // before calling it, so that such a request is refused before it runs.
        if (!settling) {
          settling = answer.failed().then((after) => {
            givenBack(ctx, after); // the headers show the charge as it stands when the give-back is queued
            return { charged: ctx.charged, balance: ctx.balance };
          });
          await settling;
        }
        throw err;
      }
      return ctx.settle(actual);
    },
  };
  return ctx;
}

/**
 * The app's refund rule, asked about one answer. A rule that throws is the app's bug: it is logged, and the
 * default rule (any 5xx is a failure) decides, so a failed request is never charged because of it.
 */
export function failedByRule(refundOn: (outcome: { status: number }) => boolean, status: number, logger: Log): boolean {
  try {
    return refundOn({ status }) === true;
  } catch (err) {
    logFailure(logger, new CreditsConfigError(`refundOn threw (${err instanceof Error ? err.message : String(err)}); the default rule decided: a 5xx is refunded.`), 'refundOn');
    return status >= 500;
  }
}
