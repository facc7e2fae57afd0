import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { CreditsConfigError } from '../errors';
import type { CreditsCore } from '../domain/core';
import type { Log } from '../log';
import type { ResolvedOptions } from '../options';
import { costOf } from '../domain/prices';
import { givenBack, sendBalanceHeaders, setRefusalHeaders } from './balance-headers';
import { fingerprintOf, recordReply, sendReplay } from './replay';
import { admit, assertFixedCost, errorReply, failedByRule, resolveGuardOptions, type CreditsContext, type GuardOptions } from './guard';
import type { Answer } from './stream';

export type { CreditsContext, GuardOptions } from './guard';
export { resolveUserId } from './guard';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by credit-kit's requireCredits on guarded routes. */
      credits?: CreditsContext;
    }
  }
}

/**
 * A positive integer, the name of one of createCredits' `costs` (`Name`: their names, so a misspelt one does
 * not compile), or a function of the request that returns a positive integer.
 */
export type Cost<Name extends string = string> = number | Name | ((req: Request) => number | Promise<number>);

function isRequest(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'method' in value && 'headers' in value && 'url' in value;
}

/** Answers a failure in the kit's error shape, and logs it when it is not an expected one (server/log.ts). */
export function sendError(res: Response, err: unknown, log: Log): void {
  const { status, body } = errorReply(err, log, `${res.req.method} ${res.req.originalUrl.split('?')[0]}`);
  if (res.headersSent) return;
  setRefusalHeaders(res, err);
  res.status(status).json(body);
}

export function createRequireCredits(core: CreditsCore, options: ResolvedOptions<Request>, limiter: RequestHandler | undefined) {
  function requireCredits(cost: Cost, handler?: RequestHandler): RequestHandler;
  function requireCredits(cost: Cost, options: GuardOptions, handler?: RequestHandler): RequestHandler;
  function requireCredits(cost: Cost, second?: RequestHandler | GuardOptions, third?: RequestHandler): RequestHandler {
    // `app.post(path, credits.requireCredits, handler)`: Express calls the factory with (req, res, next).
    if (isRequest(cost) || (arguments.length === 3 && isRequest(Reflect.get(Object(second), 'req')))) {
      throw new CreditsConfigError(
        'credits.requireCredits was mounted without a cost. Call it: app.post(path, credits.requireCredits(5), handler).',
      );
    }
    const handler = typeof second === 'function' ? second : third;
    if (handler !== undefined && typeof handler !== 'function') {
      throw new CreditsConfigError(
        'requireCredits(cost, handler): the handler must be a function (req, res, next), or leave it out and mount requireCredits(cost) before the route.',
      );
    }
    const { amount: charge, named } = costOf(options.costs, cost, 'requireCredits');
    assertFixedCost(charge, 'requireCredits', 'requireCredits(5)');
    const { metered } = resolveGuardOptions(typeof second === 'function' ? undefined : second, 'requireCredits(cost, options)');

    const guard = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
      const route = req.method + ' ' + (req.baseUrl + req.path);
      const admitted = await admit(core, options, req, charge, {
        route,
        named,
        idempotencyKey: req.get('idempotency-key'),
        fingerprint: () => fingerprintOf(req, route),
        metered,
      });
      if ('refused' in admitted) return sendError(res, admitted.refused, options.logger);
      if ('replay' in admitted) return sendReplay(res, admitted.replay);
      const { userId, key, credits, answer } = admitted;
      req.credits = credits;
      sendBalanceHeaders(res, credits);

      // A keyed request's answer is kept for its retries, after it has gone out (server/http/replay.ts).
      const chargeId = credits.chargeId;
      if (key !== undefined) recordReply(res, (reply) => core.later(() => core.keepReply(userId, key, chargeId, reply)));
      watchAnswer(core, options, res, credits, answer);
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
  }
  return requireCredits;
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
 * Reports the answer to the guard's rule (server/http/stream.ts) as Express sends it: each body chunk
 * written, its end, or a response closed before it finished (the client went away, or the route failed after
 * its headers and Express destroyed the connection, or the route called `res.destroy()`).
 *
 * The end of an answer the refund rule calls a failure (a thrown error and `next(err)` end as 5xx too) is
 * held back until the give-back is durable, so a client that reads its balance right after the error sees
 * it. A give-back that cannot be written now (database down) does not keep the answer back; it is retried
 * in the background and, once recorded, finished by reconcile() after a restart.
 */
function watchAnswer(
  core: CreditsCore,
  { refundOn, logger }: Pick<ResolvedOptions, 'refundOn' | 'logger'>,
  res: Response,
  credits: CreditsContext,
  answer: Answer,
): void {
  const write = res.write;
  const end = res.end;
  res.write = function watchWrite(this: Response, ...args: unknown[]) {
    // A chunk counts once the connection has taken it (its callback without an error): data still buffered
    // when Express destroys the connection after a failure never reaches the client.
    const bytes = byteLength(args[0], args[1]);
    const last = args.length - 1;
    const callback = typeof args[last] === 'function' ? (args[last] as (err?: Error | null) => void) : undefined;
    const taken = (err?: Error | null) => {
      if (!err) answer.wrote(bytes);
      callback?.(err);
    };
    if (callback) args[last] = taken;
    else args.push(taken);
    return write.apply(this, args as Parameters<typeof write>);
  } as typeof res.write;
  res.end = function endAfterGiveBack(this: Response, ...args: unknown[]) {
    res.end = end;
    if (!failedByRule(refundOn, res.statusCode, logger)) {
      answer.wrote(byteLength(args[0], args[1]));
      return end.apply(this, args as Parameters<typeof end>);
    }
    core.track(
      answer.failed().then((after) => {
        givenBack(credits, after);
        end.apply(this, args as Parameters<typeof end>);
      }),
    );
    return this;
  } as typeof res.end;
  res.once('close', () => {
    if (res.writableFinished) answer.ended();
    else answer.cut();
  });
  // A client that left while the charge was on its way (or waiting for its account's update) closed the
  // connection before the listener above was there: the answer is cut already.
  if (!res.writableFinished && (res.destroyed || res.socket?.destroyed)) answer.cut();
}

/** The bytes of a chunk as `res.write(chunk, encoding)` takes it; 0 for none (or a callback in its place). */
function byteLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}
