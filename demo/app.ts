/**
 * The demo's Express app: a signed-cookie sign-in, the kit's router, two AI routes guarded by credits, and
 * the React page. It uses credit-kit the way an application would, through `credit-kit/server` only.
 */
import cookieParser from 'cookie-parser';
import express, { type ErrorRequestHandler, type Express, type Request, type RequestHandler, type Router } from 'express';
import type { Credits } from 'credit-kit/server';
import { analyze, ModelFailure, summarize, thinking } from './ai';
import type { BuiltPage } from './build-page';
import {
  ANALYSIS_RESERVE,
  SUMMARY_COST,
  analysisCost,
  textProblem,
  type AnalysisResult,
  type DemoInfo,
  type DemoUser,
  type MonthPassed,
  type SummaryResult,
} from './shared';

export const SESSION_COOKIE = 'demo_user';

export interface DemoAppOptions {
  credits: Credits;
  /** Signs the session cookie. */
  sessionSecret: string;
  page: BuiltPage;
  info: DemoInfo;
  /** The Stripe simulator's checkout pages, when the demo runs without Stripe keys. */
  simulatorPages?: Router;
  /** The simulator's clock: a month passes for a user's subscription (the next invoice, or its end). */
  simulateMonth?: (userId: string) => Promise<{ now: Date; outcome: MonthPassed['outcome'] }>;
  secureCookies: boolean;
  log: (line: string) => void;
}

/** The signed-in user, from the signed session cookie. A tampered cookie reads as signed out. */
export function currentUser(req: Request): DemoUser | null {
  const signed: unknown = req.signedCookies;
  const name: unknown = typeof signed === 'object' && signed !== null ? (signed as Record<string, unknown>)[SESSION_COOKIE] : undefined;
  if (typeof name !== 'string' || cleanName(name) !== name) return null;
  return { id: userIdFor(name), name };
}

/** Demo users have no password: the same name is the same account. */
const userIdFor = (name: string) => `demo:${name.toLowerCase()}`;

/** A display name of 1-32 letters, digits, spaces and . ' -, or null. */
function cleanName(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const name = value.trim().replace(/\s+/g, ' ');
  return /^[\p{L}\p{N}][\p{L}\p{N} .'-]{0,31}$/u.test(name) ? name : null;
}

const jsonError = (code: string, message: string) => ({ error: { code, message } });

export function createDemoApp(options: DemoAppOptions): Express {
  const { credits, log } = options;
  const app = express();
  app.disable('x-powered-by');
  app.use(cookieParser(options.sessionSecret));

  // The kit's routes: balance, history, pricing, checkout, webhook, checkout session. Mounted before any
  // JSON parser, as the kit asks, so the webhook sees the raw body.
  app.use('/api', credits.router());

  const json = express.json({ limit: '32kb' });
  // JSON only: a cross-site form cannot send it without a CORS preflight (the sign-in's CSRF defence).
  const jsonOnly: RequestHandler = (req, res, next) => {
    if (!req.is('application/json')) {
      res.status(415).json(jsonError('unsupported_media_type', 'Send JSON.'));
      return;
    }
    next();
  };

  // ---- sign-in: a name, a signed cookie, no password ---------------------------------------------------

  app.get('/auth/me', (req, res) => {
    res.json({ user: currentUser(req) });
  });
  app.post('/auth/sign-in', jsonOnly, json, (req, res) => {
    const name = cleanName((req.body as { name?: unknown } | undefined)?.name);
    if (!name) {
      res.status(400).json(jsonError('invalid_name', "Use 1 to 32 letters, digits, spaces, dots, dashes or apostrophes."));
      return;
    }
    res.cookie(SESSION_COOKIE, name, {
      signed: true,
      httpOnly: true,
      sameSite: 'lax',
      secure: options.secureCookies,
      maxAge: 30 * 24 * 60 * 60 * 1000,
      path: '/',
    });
    const user: DemoUser = { id: userIdFor(name), name };
    log(`${user.id} signed in`);
    res.json({ user });
  });
  app.post('/auth/sign-out', jsonOnly, (_req, res) => {
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    res.json({ user: null });
  });

  // ---- the AI features, paid with credits ----------------------------------------------------------------

  /** Refuses a bad body before any credit is charged: a 4xx after the charge would not be refunded. */
  const validText: RequestHandler = (req, res, next) => {
    const problem = textProblem((req.body as { text?: unknown } | undefined)?.text);
    if (problem) {
      res.status(400).json(jsonError('invalid_text', problem));
      return;
    }
    next();
  };
  const textOf = (req: Request) => (req.body as { text: string }).text;
  const wantsFailure = (req: Request) => (req.body as { simulateFailure?: unknown }).simulateFailure === true;

  // A fixed price: requireCredits charges 20 credits, then runs the handler. If the handler throws or its
  // promise rejects, the answer is a 500 and the kit refunds the 20 credits (on Express 4 and 5 alike, since
  // the handler is passed to requireCredits).
  app.post('/api/ai/summarize', jsonOnly, json, validText, credits.requireCredits(SUMMARY_COST, async (req, res) => {
    await thinking();
    if (wantsFailure(req)) throw new ModelFailure('The summarizer model failed (simulated for the demo).');
    const summary = summarize(textOf(req));
    const ctx = req.credits!;
    log(`${ctx.userId}: summarized for ${ctx.charged} credits; balance ${ctx.balance}`);
    const body: SummaryResult = { summary, charged: ctx.charged, balance: ctx.balance };
    res.json(body);
  }));

  // Metered: reserve the most a request can cost, do the work, then settle what it really used. The
  // difference is refunded in the same step.
  app.post('/api/ai/analyze', jsonOnly, json, validText, credits.requireCredits(ANALYSIS_RESERVE, async (req, res) => {
    await thinking();
    if (wantsFailure(req)) throw new ModelFailure('The analyzer model failed (simulated for the demo).');
    const result = analyze(textOf(req));
    const ctx = req.credits!;
    const settled = await ctx.settle(analysisCost(result.words));
    log(`${ctx.userId}: analyzed ${result.words} words, reserved ${ANALYSIS_RESERVE}, settled ${settled.charged}; balance ${settled.balance}`);
    const body: AnalysisResult = { ...result, reserved: ANALYSIS_RESERVE, charged: settled.charged, balance: settled.balance };
    res.json(body);
  }));

  // The simulated clock: a month passes for the signed-in user's plan. The simulator invoices the next period
  // (or ends a cancelled plan), then the kit's expiry sweep runs at the simulated time: the last period's
  // unspent allowance expires, up to the plan's rollover cap is kept for one more period.
  app.post('/demo/month-passes', jsonOnly, async (req, res, next) => {
    const user = currentUser(req);
    if (!user) return void res.status(401).json(jsonError('unauthenticated', 'Sign in first.'));
    if (!options.simulateMonth) return void res.status(404).json(jsonError('not_simulated', 'Months pass by themselves in Stripe test mode.'));
    try {
      const { now, outcome } = await options.simulateMonth(user.id);
      const report = await credits.expireGrants({ now, userId: user.id });
      log(`${user.id}: a month passes (simulated clock ${now.toISOString().slice(0, 10)}): ${outcome}, ${report.creditsExpired} credits expired`);
      const body: MonthPassed = { now: now.toISOString(), outcome, creditsExpired: report.creditsExpired };
      res.json(body);
    } catch (err) {
      next(err);
    }
  });

  app.get('/demo/info', (_req, res) => {
    res.json(options.info);
  });

  // ---- the page -------------------------------------------------------------------------------------------

  if (options.simulatorPages) app.use('/simulated-checkout', options.simulatorPages);

  app.get('/assets/:file', (req, res, next) => {
    const file = options.page.files.get(req.params.file);
    if (!file) return next();
    res.type(file.type).set('cache-control', 'no-cache').send(Buffer.from(file.contents));
  });
  // One page: "/" and the two pages Checkout returns to (the kit's default success and cancel paths).
  app.get(['/', '/success', '/cancel', '/auto-recharge'], (_req, res) => {
    res.type('html').set('cache-control', 'no-store').send(options.page.html);
  });

  const errors: ErrorRequestHandler = (err: unknown, req, res, _next) => {
    const failure = err instanceof ModelFailure;
    if (failure) log(`${currentUser(req)?.id ?? 'someone'}: ${req.path} failed: ${err.message} → 500, the kit refunds the charge`);
    else console.error('[demo]', err);
    if (res.headersSent) return;
    res.status(500).json(jsonError(failure ? 'model_failed' : 'internal', failure ? err.message : 'Something went wrong.'));
  };
  app.use(errors);
  return app;
}

