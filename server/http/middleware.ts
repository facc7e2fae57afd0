import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  ConflictError,
  CreditsConfigError,
  CreditsError,
  StoreUnavailableError,
  UnauthenticatedError,
  toCreditsError,
} from '../errors';
import type { CreditsCore, Settlement } from '../domain/core';
import { logFailure, type Log } from '../log';
import type { ResolvedOptions } from '../options';
import { requestKey } from '../domain/keys';
import type { RequestFingerprint } from '../domain/types';
import { fingerprintOf, recordReply, sendReplay } from './replay';
import { assertAmount, assertId, assertNonNegativeAmount, parseIdempotencyKey } from '../validate';

/** What a guarded route sees as `req.credits`. */
export interface CreditsContext {
  userId: string;
  /** Credits this request has been charged so far (after `settle`, the settled cost). */
  charged: number;
  /** The balance right after the charge (after `settle`, after the settlement). */
  balance: number;
  /** Id of the usage ledger entry; refunds and settlements link to it. */
  chargeId: string;
  /**
   * Metered work: the route reserved `cost` up front; report what it really used. Less refunds the rest,
   * more charges the difference atomically (subject to the `overage` policy). Once per request.
   */
  settle(actualCost: number): Promise<{ charged: number; balance: number }>;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by credit-kit's requireCredits on guarded routes. */
      credits?: CreditsContext;
    }
  }
}

export type Cost = number | ((req: Request) => number | Promise<number>);

function isRequest(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'method' in value && 'headers' in value && 'url' in value;
}

/** Signed-in user's id, or an error to send. */
export async function resolveUserId(getUserId: ResolvedOptions['getUserId'], req: Request): Promise<string> {
  const id = await getUserId(req);
  if (id === null || id === undefined || id === '') throw new UnauthenticatedError();
  if (typeof id !== 'string') {
    throw new CreditsError('misconfigured', 'getUserId(req) must return a string user id, or null when nobody is signed in.');
  }
  return assertId(id, 'user id');
}

/** Answers a failure in the kit's error shape, and logs it when it is not an expected one (server/log.ts). */
export function sendError(res: Response, err: unknown, log: Log): void {
  const e = toCreditsError(err);
  logFailure(log, err, `${res.req.method} ${res.req.originalUrl.split('?')[0]}`);
  if (res.headersSent) return;
  res.status(e.status).json(e.toJSON());
}

export function createRequireCredits(core: CreditsCore, options: ResolvedOptions, limiter: RequestHandler | undefined) {
  return function requireCredits(cost: Cost, handler?: RequestHandler): RequestHandler {
    // `app.post(path, credits.requireCredits, handler)`: Express calls the factory with (req, res, next).
    if (arguments.length === 3 || isRequest(cost)) {
      throw new CreditsConfigError(
        'credits.requireCredits was mounted without a cost. Call it: app.post(path, credits.requireCredits(5), handler).',
      );
    }
    if (handler !== undefined && typeof handler !== 'function') {
      throw new CreditsConfigError(
        'requireCredits(cost, handler): the handler must be a function (req, res, next), or leave it out and mount requireCredits(cost) before the route.',
      );
    }
    if (typeof cost !== 'function') {
      try {
        assertAmount(cost, 'requireCredits(cost)');
      } catch (err) {
        throw new CreditsConfigError(
          `${(err as Error).message} Pass a positive integer such as requireCredits(5), or a function (req) => number.`,
        );
      }
    }

    const guard = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
      let userId: string;
      let amount: number;
      let key: string | undefined;
      let request: RequestFingerprint | undefined;
      const route = req.method + ' ' + (req.baseUrl + req.path);
      try {
        userId = await resolveUserId(options.getUserId, req);
        amount = typeof cost === 'function' ? await cost(req) : cost;
        if (typeof cost === 'function') assertAmount(amount, 'The cost of this request');
        const header = parseIdempotencyKey(req.get('idempotency-key'));
        if (header !== undefined) {
          key = requestKey(header);
          request = fingerprintOf(req, route);
        }
      } catch (err) {
        return sendError(res, err, options.logger);
      }

      try {
        const charge = await withinDeadline(core, options.timeoutMs, userId, amount, core.charge(userId, amount, key, route, request));
        if ('replay' in charge) return sendReplay(res, charge.replay);
        req.credits = createContext(core, userId, charge.entryId, amount, charge.balance);
      } catch (err) {
        return sendError(res, err, options.logger);
      }

      // A keyed request's answer is kept for its retries, after it has gone out (server/http/replay.ts).
      const keyed = key;
      const chargeId = req.credits.chargeId;
      if (keyed !== undefined) recordReply(res, (reply) => core.later(() => core.keepReply(userId, keyed, chargeId, reply)));
      giveBackBeforeFailedAnswer(core, options, res, userId, req.credits.chargeId, amount);
      next();
    };

    // The limiter fails closed: an error inside it (getUserId threw, its store failed) answers, never runs.
    const middleware: RequestHandler = !limiter
      ? guard
      : (req, res, next) =>
          limiter(req, res, (err?: unknown) => {
            if (err) return sendError(res, err, options.logger);
            void guard(req, res, next);
          });
    if (!handler) return middleware;
    // requireCredits(cost, handler): the guard runs the handler itself, once the charge is made, so that a
    // rejected promise reaches next(err) on every Express version (see runHandler).
    return (req, res, next) => {
      void middleware(req, res, () => runHandler(handler, req, res, next));
    };
  };
}

/**
 * Runs a guarded route's handler and sends what it throws, or the reason of the promise it returns if that
 * rejects, to next(err), the way Express 5 does for every handler. Express 4 ignores a returned promise: a
 * rejected one is never answered (and, with Node's default, ends the process), so the failed answer the
 * give-back waits for never comes. Through next(err) the app's error handler answers (5xx), and the charge
 * is given back as for any failed request. Nothing is returned, so Express 5 does not watch the promise too.
 */
function runHandler(handler: RequestHandler, req: Request, res: Response, next: NextFunction): void {
  let result: unknown;
  try {
    result = handler(req, res, next);
  } catch (err) {
    next(err);
    return;
  }
  if (isThenable(result)) {
    result.then(undefined, (err: unknown) => next(err || new Error('Rejected promise')));
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
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

function createContext(core: CreditsCore, userId: string, chargeId: string, reserved: number, balance: number): CreditsContext {
  let settling: Promise<Settlement> | undefined;
  const ctx: CreditsContext = {
    userId,
    charged: reserved,
    balance,
    chargeId,
    settle(actualCost: number) {
      if (settling) return Promise.reject(new ConflictError('settle() was already called for this request.'));
      const actual = assertNonNegativeAmount(actualCost, 'settle(actualCost)');
      settling = core.settle(userId, chargeId, reserved, actual).then((r) => {
        ctx.charged = r.charged;
        ctx.balance = r.balance;
        return r;
      });
      return settling;
    },
  };
  return ctx;
}

/**
 * Holds back the end of an answer the refund rule calls a failure (a thrown error and `next(err)` end as
 * 5xx too) until the give-back is durable, so a client that reads its balance right after the error sees it.
 * A give-back that cannot be written now (database down) does not keep the answer back; it is retried in
 * the background and, once recorded, finished by reconcile() after a restart.
 */
/**
 * The app's refund rule, asked about one answer. A rule that throws is the app's bug: it is logged, and the
 * default rule (any 5xx is a failure) decides, so a failed request is never charged because of it.
 */
function failedByRule(refundOn: ResolvedOptions['refundOn'], status: number, logger: ResolvedOptions['logger']): boolean {
  try {
    return refundOn({ status }) === true;
  } catch (err) {
    logFailure(logger, new CreditsConfigError(`refundOn threw (${err instanceof Error ? err.message : String(err)}); the default rule decided: a 5xx is refunded.`), 'refundOn');
    return status >= 500;
  }
}

function giveBackBeforeFailedAnswer(
  core: CreditsCore,
  { refundOn, logger }: Pick<ResolvedOptions, 'refundOn' | 'logger'>,
  res: Response,
  userId: string,
  chargeId: string,
  reserved: number,
): void {
  const end = res.end;
  res.end = function endAfterGiveBack(this: Response, ...args: unknown[]) {
    res.end = end;
    if (!failedByRule(refundOn, res.statusCode, logger)) return end.apply(this, args as Parameters<typeof end>);
    const giveBack = () => core.giveBack(userId, chargeId, reserved, 'The guarded request failed');
    const done = giveBack()
      .catch((err: unknown) => {
        logFailure(logger, err, 'giving back a failed request, retried in the background');
        core.later(giveBack, `giving back ${reserved} credits to user ${userId} for the failed request charged by entry ${chargeId}`);
      })
      .then(() => end.apply(this, args as Parameters<typeof end>));
    core.track(done);
    return this;
  } as typeof res.end;
}
