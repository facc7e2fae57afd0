import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  ConflictError,
  CreditsConfigError,
  CreditsError,
  UnauthenticatedError,
  toCreditsError,
} from './errors';
import type { CreditsCore } from './core';
import { assertAmount, assertId, assertNonNegativeAmount } from './validate';

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
export async function resolveUserId(core: CreditsCore, req: Request): Promise<string> {
  const id = await core.options.getUserId(req);
  if (id === null || id === undefined || id === '') throw new UnauthenticatedError();
  if (typeof id !== 'string') {
    throw new CreditsError('misconfigured', 'getUserId(req) must return a string user id, or null when nobody is signed in.');
  }
  return assertId(id, 'user id');
}

export function sendError(res: Response, err: unknown): void {
  const e = toCreditsError(err);
  if (e.status >= 500 && e.code !== 'store_unavailable') console.error('[credit-kit]', e, e.cause ?? '');
  if (res.headersSent) return;
  res.status(e.status).json(e.toJSON());
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export function createRequireCredits(core: CreditsCore, limiter: RequestHandler | undefined) {
  return function requireCredits(cost: Cost): RequestHandler {
    // `app.post(path, credits.requireCredits, handler)`: Express calls the factory with (req, res, next).
    if (arguments.length === 3 || isRequest(cost)) {
      throw new CreditsConfigError(
        'credits.requireCredits was mounted without a cost. Call it: app.post(path, credits.requireCredits(5), handler).',
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
      try {
        userId = await resolveUserId(core, req);
        amount = typeof cost === 'function' ? await cost(req) : cost;
        if (typeof cost === 'function') assertAmount(amount, 'The cost of this request');
        const header = req.get('idempotency-key');
        if (header !== undefined) {
          if (!IDEMPOTENCY_KEY.test(header)) {
            throw new CreditsError('invalid_request', 'The Idempotency-Key header must be 1-255 visible ASCII characters.');
          }
          key = `request:${header}`;
        }
      } catch (err) {
        return sendError(res, err);
      }

      try {
        const charge = await core.charge(userId, amount, key, req.method + ' ' + (req.baseUrl + req.path));
        req.credits = createContext(core, userId, charge.entryId, amount, charge.balance);
      } catch (err) {
        return sendError(res, err);
      }

      refundBeforeFailedAnswer(core, res, req.credits);
      next();
    };

    if (!limiter) return guard;
    return (req, res, next) => limiter(req, res, () => void guard(req, res, next));
  };
}

function createContext(core: CreditsCore, userId: string, chargeId: string, reserved: number, balance: number): CreditsContext {
  let settling: Promise<{ charged: number; balance: number }> | undefined;
  const ctx: CreditsContext & { settling?: typeof settling } = {
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
      ctx.settling = settling;
      return settling;
    },
  };
  return ctx;
}

/**
 * Holds back the end of an answer the refund rule calls a failure (a thrown error and `next(err)` end as
 * 5xx too) until the refund is durable, so a client that reads its balance right after the error sees it.
 * A refund that cannot be written (database down) does not keep the answer back; it is logged.
 */
function refundBeforeFailedAnswer(core: CreditsCore, res: Response, ctx: CreditsContext): void {
  const end = res.end;
  res.end = function endAfterRefund(this: Response, ...args: unknown[]) {
    res.end = end;
    if (!core.options.refundOn({ status: res.statusCode })) return end.apply(this, args as Parameters<typeof end>);
    const refunded = refundFailedWork(core, ctx)
      .catch((err: unknown) => console.error('[credit-kit] refund after a failed request could not be written:', err))
      .then(() => end.apply(this, args as Parameters<typeof end>));
    core.track(refunded);
    return this;
  } as typeof res.end;
}

async function refundFailedWork(core: CreditsCore, ctx: CreditsContext & { settling?: Promise<unknown> }): Promise<void> {
  if (ctx.settling) await ctx.settling.catch(() => undefined);
  if (ctx.charged <= 0) return;
  await core.refund(ctx.userId, ctx.chargeId, ctx.charged);
}
