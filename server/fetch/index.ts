/**
 * credit-kit/fetch: the kit on the Web Fetch API (`Request` → `Response`), for Next.js App Router route
 * handlers, Hono, Remix and any other Fetch-based framework. The same core as credit-kit/server (one
 * assembly, one set of routes in server/http/handlers.ts); nothing here imports Express.
 *
 *   // lib/credits.ts
 *   export const credits = createFetchCredits({ connection: mongoose.connection, getUserId: (request) => userIdFrom(request) });
 *   // app/api/summarize/route.ts
 *   export const POST = credits.withCredits(5, async (request, { credits: c }) => Response.json({ summary: '…', creditsLeft: c.balance }));
 *   // app/api/[...credit]/route.ts: checkout, webhook, session, balance, transactions, pricing
 *   export const { GET, POST } = credits.routes;
 */
import { assemble, type CreditsBase } from '../assemble';
import { costOf } from '../domain/prices';
import type { KeptReply, StoredReply } from '../domain/types';
import { CreditsConfigError, CreditsError, NotFoundError } from '../errors';
import { admit, assertFixedCost, errorReply, failedByRule, resolveGuardOptions, resolveUserId, type CreditsContext, type GuardOptions, type Reply } from '../http/guard';
import { givenBack, refusalHeaders, withBalanceHeaders } from '../http/balance-headers';
import { bodyError, createRoutes, WEBHOOK_BODY_LIMIT, type RouteInput } from '../http/handlers';
import { fixedWindow, rateLimitedError, rateLimitKey } from '../http/rate-limit';
import { fingerprint, ReplyRecorder } from '../http/replay';
import { watchBody, type Answer } from '../http/stream';
import { resolveOptions, type CreditsOptions, type NamedCosts } from '../options';
import { createRechargeRoutes } from '../stripe/recharge-routes';

/**
 * createFetchCredits' options: createCredits' options with `getUserId(request)` reading a Fetch `Request`,
 * `basePath` for `routes`, and `getClientAddress` for rate limits on signed-out requests.
 */
export type FetchCreditsOptions = CreditsOptions<Request> & {
  /** Where `routes` is mounted: the path before `/stripe/…` and `/credits/…`. Default `/api`. */
  basePath?: string;
  /**
   * With `rateLimit`: the client's address, for the requests of nobody signed in (a Fetch `Request` carries
   * none; Next.js: the `x-forwarded-for` your own proxy sets, never one a client could send past it).
   * Signed-in requests count per user. Without it, signed-out requests share one window (they are refused
   * 401 anyway, and charge nothing).
   */
  getClientAddress?: (request: Request) => string | null | undefined;
};

/**
 * A positive integer, the name of one of the `costs` (`Name`: their names, so a misspelt one does not
 * compile), or a function of the request that returns a positive integer (may be async).
 */
export type FetchCost<Name extends string = string> = number | Name | ((request: Request) => number | Promise<number>);

/** A route handler of the kit: a Fetch `Request` in, a `Response` out. */
export type FetchRouteHandler = (request: Request) => Promise<Response>;

/** The handler a guard wraps: it gets the framework's context (Next.js: `{ params }`) with `credits` added. */
export type GuardedFetchHandler<C extends object = object> = (
  request: Request,
  context: C & { credits: CreditsContext },
) => Response | Promise<Response>;

/** What createFetchCredits returns; `Name` is the names of its `costs`, as on `Credits`. */
export interface FetchCredits<Name extends string = string> extends CreditsBase {
  /**
   * The guarded route: charges `cost`, then runs `handler` with `context.credits` (the same CreditsContext
   * as Express's `req.credits`). A handler that throws, or answers with a status the `refundOn` rule calls a
   * failure (default: 5xx), has its charge given back once, before the answer goes out.
   */
  withCredits<C extends object = object>(cost: FetchCost<Name>, handler: GuardedFetchHandler<C>): (request: Request, context?: Omit<C, 'credits'>) => Promise<Response>;
  /**
   * With options: `withCredits(50, { metered: true }, handler)` reserves 50 that only `credits.settle(used)`
   * turns into a charge; unsettled after `settleWithinMs`, `reconcile()` gives the reservation back. A named
   * cost that is metered (`costs`) is a metered guard without it.
   */
  withCredits<C extends object = object>(cost: FetchCost<Name>, options: GuardOptions, handler: GuardedFetchHandler<C>): (request: Request, context?: Omit<C, 'credits'>) => Promise<Response>;
  /** The kit's routes one by one, for a route file each (`export const POST = credits.handlers.checkout`). */
  handlers: {
    /** POST /stripe/checkout/credits */
    checkout: FetchRouteHandler;
    /** POST /stripe/webhook: reads the raw body itself and verifies its Stripe-Signature. */
    webhook: FetchRouteHandler;
    /** GET, the success page: the session id from `?session_id=`, else the path's last segment (`…/session/cs_…`). */
    session: FetchRouteHandler;
    /** GET /credits/balance */
    balance: FetchRouteHandler;
    /** GET /credits/transactions?limit&cursor */
    transactions: FetchRouteHandler;
    /** GET /credits/grants: the balance by grant and source, and what expires next */
    grants: FetchRouteHandler;
    /** GET /credits/pricing (public) */
    pricing: FetchRouteHandler;
    /** POST /credits/subscribe { plan } */
    subscribe: FetchRouteHandler;
    /** POST /credits/portal */
    portal: FetchRouteHandler;
    /** GET /credits/plans (public) */
    plans: FetchRouteHandler;
    /** GET /credits/plan */
    plan: FetchRouteHandler;
    /** GET /credits/auto-recharge: settings, card on file, state, last result */
    autoRecharge: FetchRouteHandler;
    /** PUT /credits/auto-recharge { enabled?, threshold?, bundle? | credits? } */
    updateAutoRecharge: FetchRouteHandler;
    /** DELETE /credits/auto-recharge: turns it off */
    disableAutoRecharge: FetchRouteHandler;
    /** POST /credits/auto-recharge/card: a setup-mode Checkout Session that saves a card */
    saveCard: FetchRouteHandler;
    /** DELETE /credits/auto-recharge/card */
    removeCard: FetchRouteHandler;
    /** GET /credits/auto-recharge/action: the client secret of a payment that needs authentication */
    rechargeAction: FetchRouteHandler;
  };
  /**
   * All of them, dispatched by the path after `basePath`: `export const { GET, POST, PUT, DELETE } = credits.routes`
   * in `app/api/[...credit]/route.ts` (PUT and DELETE are auto-recharge's).
   */
  routes: { GET: FetchRouteHandler; POST: FetchRouteHandler; PUT: FetchRouteHandler; DELETE: FetchRouteHandler };
}

export function createFetchCredits<Costs extends NamedCosts = NamedCosts>(options: FetchCreditsOptions & { costs?: Costs }): FetchCredits<Extract<keyof Costs, string>> {
  const given = typeof options === 'object' && options !== null && !Array.isArray(options);
  // `basePath` and `getClientAddress` are the Fetch side's own; everything else is createCredits' options,
  // checked the same way (something that is not an options object goes through too, to be refused there).
  const { basePath: rawBase, getClientAddress, ...shared } = given ? options : ({} as FetchCreditsOptions);
  if (getClientAddress !== undefined && typeof getClientAddress !== 'function') {
    throw new CreditsConfigError('createFetchCredits: `getClientAddress` must be a function (request) => string | null, the address of the client.');
  }
  const resolved = resolveOptions<Request>(given ? shared : options);
  const basePath = resolveBasePath(rawBase);
  const bodyLimitBytes = sizeInBytes(resolved.bodyLimit);
  const webhookLimitBytes = sizeInBytes(WEBHOOK_BODY_LIMIT);
  const { core, purchases, subscriptions, recharge, base } = assemble(resolved);
  const routes = createRoutes({ core, purchases, subscriptions, options: resolved, recharge });
  const rechargeRoutes = createRechargeRoutes(recharge, resolved, async (u) => (await base.store.getAccount(u))?.count ?? 0);
  const { logger } = resolved;

  const respond = (reply: Reply): Response => Response.json(reply.body, { status: reply.status });
  const where = (request: Request, url: URL) => `${request.method} ${url.pathname}`;
  const inputOf = (request: Request, url: URL, body?: unknown): RouteInput => ({
    query: queryOf(url.searchParams),
    header: (name) => request.headers.get(name) ?? undefined,
    user: () => resolveUserId(resolved.getUserId, request),
    body,
  });
  /** Runs a route and answers its reply, or its failure in the kit's error shape. */
  const route =
    (fn: (request: Request, url: URL) => Reply | Promise<Reply>): FetchRouteHandler =>
    async (request) => {
      const url = new URL(request.url);
      try {
        return respond(await fn(request, url));
      } catch (err) {
        return respond(errorReply(err, logger, where(request, url)));
      }
    };

  /**
   * The `rateLimit` option on the Fetch side: the same fixed window as Express's (server/http/rate-limit.ts),
   * per signed-in user, else per `getClientAddress(request)`. A refused request gets 429 with `Retry-After`
   * and never reaches the handler; every answer carries the RateLimit fields. Fails closed: a `getUserId`
   * that throws is answered, never run.
   */
  const limited = <A extends unknown[]>(limit: number | undefined, handler: (request: Request, ...rest: A) => Promise<Response>) => {
    const rl = resolved.rateLimit;
    if (!rl || limit === undefined || limit >= Number.MAX_SAFE_INTEGER) return handler;
    const hit = fixedWindow({ windowMs: rl.windowMs, limit });
    return async (request: Request, ...rest: A): Promise<Response> => {
      let counted: ReturnType<typeof hit>;
      try {
        counted = hit(rateLimitKey(await resolved.getUserId(request), getClientAddress?.(request)));
      } catch (err) {
        return respond(errorReply(err, logger, where(request, new URL(request.url))));
      }
      if (counted.refused) return withBalanceHeaders(respond(errorReply(rateLimitedError(), logger, where(request, new URL(request.url)))), counted.headers);
      return withBalanceHeaders(await handler(request, ...rest), counted.headers);
    };
  };

  const handlers: FetchCredits['handlers'] = {
    checkout: limited(resolved.rateLimit?.checkout, route(async (request, url) => routes.checkout(inputOf(request, url, await readJson(request, bodyLimitBytes, resolved.bodyLimit))))),
    async webhook(request) {
      const url = new URL(request.url);
      let raw: Buffer;
      try {
        raw = await readBytes(request, webhookLimitBytes, WEBHOOK_BODY_LIMIT);
      } catch (err) {
        return respond(errorReply(err, logger, where(request, url)));
      }
      const { reply, report } = await routes.webhook(() => raw, request.headers.get('stripe-signature') ?? undefined, where(request, url));
      const response = respond(reply);
      report();
      return response;
    },
    session: route((request, url) => routes.session(inputOf(request, url), url.searchParams.get('session_id') ?? lastSegment(url.pathname))),
    balance: route((request, url) => routes.balance(inputOf(request, url))),
    transactions: route((request, url) => routes.transactions(inputOf(request, url))),
    grants: route((request, url) => routes.grants(inputOf(request, url))),
    pricing: route(() => routes.pricing()),
    subscribe: limited(resolved.rateLimit?.checkout, route(async (request, url) => routes.subscribe(inputOf(request, url, await readJson(request, bodyLimitBytes, resolved.bodyLimit))))),
    portal: limited(resolved.rateLimit?.checkout, route((request, url) => routes.portal(inputOf(request, url)))),
    plans: route((request, url) => routes.plans(inputOf(request, url))),
    plan: route((request, url) => routes.plan(inputOf(request, url))),
    autoRecharge: route((request, url) => rechargeRoutes.get(inputOf(request, url))),
    updateAutoRecharge: route(async (request, url) => rechargeRoutes.put(inputOf(request, url, await readJson(request, bodyLimitBytes, resolved.bodyLimit)))),
    disableAutoRecharge: route((request, url) => rechargeRoutes.disable(inputOf(request, url))),
    saveCard: route(async (request, url) => rechargeRoutes.saveCard(inputOf(request, url, await readJson(request, bodyLimitBytes, resolved.bodyLimit)))),
    removeCard: route((request, url) => rechargeRoutes.removeCard(inputOf(request, url))),
    rechargeAction: route((request, url) => rechargeRoutes.action(inputOf(request, url))),
  };

  const table: Record<'GET' | 'POST' | 'PUT' | 'DELETE', Array<[RegExp, FetchRouteHandler]>> = {
    POST: [
      [/^\/stripe\/checkout\/credits$/, handlers.checkout],
      [/^\/stripe\/webhook$/, handlers.webhook],
      [/^\/credits\/subscribe$/, handlers.subscribe],
      [/^\/credits\/portal$/, handlers.portal],
      [/^\/credits\/auto-recharge\/card$/, handlers.saveCard],
    ],
    PUT: [[/^\/credits\/auto-recharge$/, handlers.updateAutoRecharge]],
    DELETE: [
      [/^\/credits\/auto-recharge$/, handlers.disableAutoRecharge],
      [/^\/credits\/auto-recharge\/card$/, handlers.removeCard],
    ],
    GET: [
      [/^\/stripe\/checkout\/session\/[^/]+$/, handlers.session],
      [/^\/stripe\/session$/, handlers.session],
      [/^\/credits\/balance$/, handlers.balance],
      [/^\/credits\/transactions$/, handlers.transactions],
      [/^\/credits\/grants$/, handlers.grants],
      [/^\/credits\/pricing$/, handlers.pricing],
      [/^\/credits\/plans$/, handlers.plans],
      [/^\/credits\/plan$/, handlers.plan],
      [/^\/credits\/auto-recharge$/, handlers.autoRecharge],
      [/^\/credits\/auto-recharge\/action$/, handlers.rechargeAction],
    ],
  };
  const dispatch =
    (method: 'GET' | 'POST' | 'PUT' | 'DELETE'): FetchRouteHandler =>
    async (request) => {
      const url = new URL(request.url);
      const path = url.pathname.startsWith(basePath + '/') ? url.pathname.slice(basePath.length) : undefined;
      const found = path === undefined ? undefined : table[method].find(([pattern]) => pattern.test(path));
      if (!found) return respond(errorReply(new NotFoundError(`No credit-kit route ${method} ${url.pathname.slice(0, 200)}.`), logger, where(request, url)));
      return found[1](request);
    };

  function withCredits<C extends object = object>(
    cost: FetchCost,
    second: GuardedFetchHandler<C> | GuardOptions,
    third?: GuardedFetchHandler<C>,
  ): (request: Request, context?: Omit<C, 'credits'>) => Promise<Response> {
    if (isRequest(cost)) {
      throw new CreditsConfigError('credits.withCredits was used as a route handler without a cost. Call it: export const POST = credits.withCredits(5, handler).');
    }
    const handler = typeof second === 'function' ? second : third;
    if (typeof handler !== 'function') {
      throw new CreditsConfigError('withCredits(cost, handler): the handler must be a function (request, context) => Response.');
    }
    const { amount: charge, named } = costOf(resolved.costs, cost, 'withCredits');
    assertFixedCost(charge, 'withCredits', 'withCredits(5, handler)');
    const { metered } = resolveGuardOptions(typeof second === 'function' ? undefined : second, 'withCredits(cost, options, handler)');

    return limited(resolved.rateLimit?.guarded, async (request: Request, context?: Omit<C, 'credits'>) => {
      const url = new URL(request.url);
      const name = where(request, url);
      const admitted = await admit(core, resolved, request, charge, {
        route: name,
        named,
        idempotencyKey: request.headers.get('idempotency-key') ?? undefined,
        // The body as sent, read from a clone so that the handler still has it.
        fingerprint: async () =>
          fingerprint(name, url.search.slice(1), request.body === null ? undefined : new Uint8Array(await request.clone().arrayBuffer())),
        metered,
      });
      if ('refused' in admitted) return withBalanceHeaders(respond(errorReply(admitted.refused, logger, name)), refusalHeaders(admitted.refused));
      if ('replay' in admitted) return replayed(admitted.replay);
      const { userId, key, credits, answer } = admitted;
      // The client going away (Next.js aborts `request.signal` when the connection closes) is the route's signal.
      answer.follow(request.signal);

      let response: Response;
      try {
        const out: unknown = await handler(request, { ...(context ?? {}), credits } as C & { credits: CreditsContext });
        if (!isResponse(out)) {
          throw new CreditsError('misconfigured', 'A withCredits handler must return a Response, for example Response.json({ ... }).');
        }
        response = out;
      } catch (err) {
        // Answered here in the kit's error shape (500 `internal` for an unexpected error, logged with its stack).
        response = respond(errorReply(err, logger, name));
      }

      if (failedByRule(resolved.refundOn, response.status, logger)) givenBack(credits, await answer.failed());
      response = withBalanceHeaders(response, credits);
      // A keyed request's answer is kept for its retries, once it has gone out (server/http/replay.ts).
      const chargeId = credits.chargeId;
      const keep = key === undefined ? undefined : (reply: StoredReply) => core.later(() => core.keepReply(userId, key, chargeId, reply));
      return watched(response, answer, keep);
    });
  }

  return { ...base, withCredits, handlers, routes: { GET: dispatch('GET'), POST: dispatch('POST'), PUT: dispatch('PUT'), DELETE: dispatch('DELETE') } };
}

/** Answers a retry with the first request's kept answer. The route does not run; nothing is charged. */
function replayed(reply: KeptReply): Response {
  const headers = new Headers({ 'Idempotent-Replayed': 'true' });
  if (reply.contentType) headers.set('Content-Type', reply.contentType);
  return new Response(reply.status === 204 || reply.status === 304 || reply.body === '' ? null : reply.body, { status: reply.status, headers });
}

/**
 * The answer as it goes out, through one pipe: each chunk the server reads from it is reported to the guard
 * (server/http/stream.ts: delivered, ended, or cut short by an error or by its reader cancelling it), and,
 * for a keyed request, recorded up to the bound; `keep` gets what is kept once the body has been read to
 * its end (an answer whose reader stops early is not kept: a retry gets 409).
 */
function watched(response: Response, answer: Answer, keep: ((reply: StoredReply) => void) | undefined): Response {
  const recorder = keep && new ReplyRecorder();
  const contentType = response.headers.get('content-type') ?? undefined;
  const ended = () => {
    answer.ended();
    if (recorder) keep(recorder.reply(response.status, contentType));
  };
  if (response.body === null) {
    // Nothing to deliver: over as it is returned (a client already gone was reported by its signal).
    ended();
    return response;
  }
  const body = watchBody(response.body, {
    chunk(chunk) {
      answer.wrote(chunk.byteLength);
      recorder?.take(chunk);
    },
    end: ended,
    cut: () => answer.cut(),
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/** The body's bytes, refused past `limit` (413) without reading further. */
async function readBytes(request: Request, limit: number, limitText: string): Promise<Buffer> {
  const declared = Number(request.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw bodyError.tooLarge(limitText);
  if (request.body === null) return Buffer.alloc(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let next: ReadableStreamReadResult<Uint8Array>;
    try {
      next = await reader.read();
    } catch {
      throw bodyError.unreadable();
    }
    if (next.done) break;
    size += next.value.length;
    if (size > limit) {
      // Not read further; the rest is left to the server (cancelling could drop the connection before the answer).
      reader.releaseLock();
      throw bodyError.tooLarge(limitText);
    }
    chunks.push(next.value);
  }
  return Buffer.concat(chunks);
}

/**
 * A JSON body, read the way the Express side's `express.json({ strict: true })` does: Content-Type
 * `application/json` (else 415, the checkout route's CSRF defence), a UTF charset, at most `bodyLimit`
 * (else 413), an object or array at the top (else 400); an empty body is `{}`.
 */
async function readJson(request: Request, limit: number, limitText: string): Promise<unknown> {
  const type = request.headers.get('content-type') ?? '';
  const [mime, ...params] = type.split(';').map((part) => part.trim().toLowerCase());
  if (mime !== 'application/json' || request.body === null) throw bodyError.notJson();
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/^"|"$/g, '');
  if (charset !== undefined && !charset.startsWith('utf-')) throw bodyError.unreadable();
  const bytes = await readBytes(request, limit, limitText);
  if (bytes.length === 0) return {};
  const text = bytes.toString('utf8');
  const first = /^[\x20\x09\x0a\x0d]*(.)/s.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw bodyError.badJson();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw bodyError.badJson();
  }
}

/** The query as the Express side sees it with its simple parser: a string each, an array when repeated. */
function queryOf(params: URLSearchParams): Record<string, unknown> {
  const query: Record<string, unknown> = {};
  for (const key of new Set(params.keys())) {
    const values = params.getAll(key);
    query[key] = values.length === 1 ? values[0] : values;
  }
  return query;
}

function lastSegment(pathname: string): string {
  const segment = pathname.slice(pathname.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** `16kb` → 16384: the units of `bodyLimit` (options.ts), 1024-based as express.json counts them. */
function sizeInBytes(size: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(size)!;
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Math.floor(Number(m[1]) * unit);
}

function resolveBasePath(value: unknown): string {
  if (value === undefined) return '/api';
  if (typeof value !== 'string' || (value !== '' && !/^(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+\/?$/.test(value))) {
    throw new CreditsConfigError(`createFetchCredits: \`basePath\` must be a path such as '/api' (or '' for the root), got ${JSON.stringify(value)}.`);
  }
  return value.replace(/\/$/, '');
}

function isRequest(value: unknown): boolean {
  return typeof Request !== 'undefined' && value instanceof Request;
}

function isResponse(value: unknown): value is Response {
  if (value instanceof Response) return true;
  const r = value as Partial<Response> | null;
  return typeof r === 'object' && r !== null && typeof r.status === 'number' && typeof r.headers?.get === 'function' && 'body' in r;
}

export * from '../public-api';
