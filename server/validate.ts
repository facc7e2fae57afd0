import { InvalidAmountError, InvalidRequestError, describe } from './errors';
import type { GrantTerms } from './domain/types';
import { DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY } from './ledger/grants';

/** Amounts of credits are positive safe integers, nothing else. */
export function assertAmount(value: unknown, what = 'amount'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new InvalidAmountError(what, value);
  return value;
}

/** Like assertAmount, but 0 is allowed (a metered call that used nothing). */
export function assertNonNegativeAmount(value: unknown, what: string): number {
  if (typeof value === 'number' && value === 0) return 0;
  return assertAmount(value, what);
}

const MAX_ID_LENGTH = 256;

/**
 * A user id or idempotency key is a non-empty string of printable characters. Anything else, above all an
 * object such as `{ "$ne": "" }`, is refused before it can reach a query.
 */
export function assertId(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH || /[\u0000-\u001f]/.test(value)) {
    throw new InvalidRequestError(`${what} must be a non-empty string of at most ${MAX_ID_LENGTH} printable characters, got ${describe(value)}.`);
  }
  return value;
}

/**
 * A grant's id as the kit makes it (`grant:<key>`, `checkout:<session>`, `rollover:<grant id>`): longer than
 * a key by its prefixes, otherwise the same rule.
 */
export function assertGrantId(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2 * MAX_ID_LENGTH || /[\u0000-\u001f]/.test(value)) {
    throw new InvalidRequestError(`grantId must be a non-empty string of at most ${2 * MAX_ID_LENGTH} printable characters (a grant's id, as listGrants shows it), got ${describe(value)}.`);
  }
  return value;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The `Idempotency-Key` header, the same rule on every route: absent, or 1-255 visible ASCII characters. */
export function parseIdempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) throw new InvalidRequestError('The Idempotency-Key header must be 1-255 visible ASCII characters.');
  return header;
}

/**
 * A page request of the ledger, the same rule for `listTransactions` and `GET /credits/transactions`: `limit`
 * a whole number from 1 to `maxLimit` (default 20), `cursor` the `nextCursor` of the previous page.
 */
export function parsePage(limit: unknown, cursor: unknown, maxLimit: number): { limit: number; cursor?: number } {
  const page: { limit: number; cursor?: number } = { limit: wholeNumber(limit, 'limit', 20, 1, maxLimit) };
  if (cursor !== undefined && cursor !== null) page.cursor = wholeNumber(cursor, 'cursor', 0, 1, Number.MAX_SAFE_INTEGER);
  return page;
}

function wholeNumber(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidRequestError(`"${name}" must be a whole number from ${min} to ${max}, got ${describe(value)}.`);
  }
  return n;
}

const SOURCE = /^[a-z][a-z0-9_.-]{0,39}$/;
/** The latest expiry a grant may have (BSON dates go further, JSON and people do not). */
const LATEST_EXPIRY = Date.UTC(9999, 11, 31);

/**
 * A grant's terms as `grantCredits` takes them: `source` (default `admin`; lower-case letters, digits,
 * `-`, `_`, `.`, at most 40, not `base`), `priority` (a whole number 0-100, default 50, lower is spent
 * first) and `expiresAt` (a Date or an ISO 8601 string naming a real calendar time; absent: never expires).
 * Whether the expiry is still ahead is asked apart (assertExpiryAhead): a retry of a grant already applied
 * is answered as one, even once its expiry has passed. `rollover` ({ max, expiresAt? }): at the grant's
 * expiry up to `max` (a non-negative safe integer) of its rest is kept, until `rollover.expiresAt` (after the
 * grant's own expiry; absent: never); only a grant that expires may roll over.
 */
export function parseGrantTerms(options: { source?: unknown; priority?: unknown; expiresAt?: unknown; rollover?: unknown }): GrantTerms {
  const source = options.source ?? 'admin';
  if (typeof source !== 'string' || !SOURCE.test(source) || source === 'base') {
    throw new InvalidRequestError(
      `source must be "purchase", "subscription", "promotion", "admin" or a name of your own (lower-case letters, digits, "-", "_", ".", at most 40; not "base"), got ${describe(source)}.`,
    );
  }
  const priority = options.priority ?? DEFAULT_PRIORITY;
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
    throw new InvalidRequestError(`priority must be a whole number from ${MIN_PRIORITY} to ${MAX_PRIORITY} (lower is spent first), got ${describe(priority)}.`);
  }
  const terms: GrantTerms = { source, priority };
  if (options.expiresAt !== undefined && options.expiresAt !== null) terms.expiresAt = parseExpiry(options.expiresAt, 'expiresAt');
  if (options.rollover !== undefined && options.rollover !== null) {
    const rollover = options.rollover as { max?: unknown; expiresAt?: unknown };
    if (typeof rollover !== 'object' || Array.isArray(rollover)) {
      throw new InvalidRequestError(`rollover must be an object { max, expiresAt? }, got ${describe(options.rollover)}.`);
    }
    // Only the two fields it has: a misspelt `expiresAt` ignored would keep the rolled-over credits for good.
    const unknown = Object.keys(rollover).filter((k) => k !== 'max' && k !== 'expiresAt');
    if (unknown.length > 0) {
      throw new InvalidRequestError(`rollover takes only { max, expiresAt? }, got ${unknown.map((k) => JSON.stringify(k)).join(', ')}.`);
    }
    if (!terms.expiresAt) {
      throw new InvalidRequestError('rollover needs the grant to expire: give expiresAt too (a grant that never expires has nothing to roll over).');
    }
    const max = rollover.max;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0) {
      throw new InvalidRequestError(`rollover.max must be a whole number of credits, 0 or more, got ${describe(max)}.`);
    }
    terms.rollover = { max };
    if (rollover.expiresAt !== undefined && rollover.expiresAt !== null) {
      const until = parseExpiry(rollover.expiresAt, 'rollover.expiresAt');
      if (until.getTime() <= terms.expiresAt.getTime()) {
        throw new InvalidRequestError(`rollover.expiresAt must be after the grant's expiresAt (${terms.expiresAt.toISOString()}), got ${until.toISOString()}.`);
      }
      terms.rollover.expiresAt = until;
    }
  }
  return terms;
}

function parseExpiry(raw: unknown, name: string): Date {
  const at = raw instanceof Date ? new Date(raw.getTime()) : typeof raw === 'string' && ISO_TIME.test(raw) ? new Date(raw) : null;
  if (!at || Number.isNaN(at.getTime()) || (typeof raw === 'string' && !namesRealTime(raw))) {
    throw new InvalidRequestError(`${name} must be a Date or an ISO 8601 time such as "2026-12-01T00:00:00Z" (a real calendar day, hours below 24), got ${describe(raw)}.`);
  }
  if (at.getTime() > LATEST_EXPIRY) throw new InvalidRequestError(`${name} must be before the year 10000, got ${describe(raw)}; leave it out for credits that never expire.`);
  return at;
}

/** A grant's expiry must be ahead of `now` when the grant is first applied. */
export function assertExpiryAhead(at: Date, now: Date): void {
  if (at.getTime() <= now.getTime()) {
    throw new InvalidRequestError(`expiresAt must be in the future, got ${at.toISOString()} (now is ${now.toISOString()}).`);
  }
}

/**
 * `new Date()` rolls an impossible time over ("2030-02-30" is March 2, "T24:00" the next day): the day and
 * time written must be the ones parsed. Checked in UTC, with the string's own offset applied.
 */
function namesRealTime(raw: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?/.exec(raw);
  if (!m) return false;
  const [, y, mo, d, h = '0', mi = '0', sec = '0'] = m;
  const t = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)));
  return (
    t.getUTCFullYear() === Number(y) &&
    t.getUTCMonth() === Number(mo) - 1 &&
    t.getUTCDate() === Number(d) &&
    t.getUTCHours() === Number(h) &&
    t.getUTCMinutes() === Number(mi) &&
    t.getUTCSeconds() === Number(sec)
  );
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;
