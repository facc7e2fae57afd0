/**
 * One error shape. Every failure the kit reports is a CreditsError with a stable `code` and the HTTP status
 * it maps to; raw MongoDB and Stripe errors stay in `cause` and never reach a client.
 */

export const ERROR_CODES = {
  invalid_request: 400,
  invalid_amount: 400,
  invalid_signature: 400,
  unauthenticated: 401,
  insufficient_credits: 402,
  not_found: 404,
  conflict: 409,
  reply_not_kept: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  rate_limited: 429,
  internal: 500,
  misconfigured: 500,
  not_configured: 501,
  payment_provider_error: 502,
  store_unavailable: 503,
} as const;

export type CreditsErrorCode = keyof typeof ERROR_CODES;

export interface CreditsErrorBody {
  error: { code: CreditsErrorCode; message: string } & Record<string, unknown>;
}

export class CreditsError extends Error {
  override name = 'CreditsError';
  readonly code: CreditsErrorCode;
  readonly status: number;
  /** Extra fields safe to show a client (for example `required` and `balance`). */
  readonly details: Record<string, unknown>;

  constructor(code: CreditsErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
  }

  toJSON(): CreditsErrorBody {
    return { error: { ...this.details, code: this.code, message: this.message } };
  }
}

/** Options given to createCredits are wrong; thrown at start-up, never per request. */
export class CreditsConfigError extends CreditsError {
  override name = 'CreditsConfigError';
  constructor(message: string) {
    super('misconfigured', message);
  }
}

export class InvalidRequestError extends CreditsError {
  override name = 'InvalidRequestError';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('invalid_request', message, details);
  }
}

/** An amount that is not a positive safe integer (0, negative, fractional, NaN, a string, an object). */
export class InvalidAmountError extends CreditsError {
  override name = 'InvalidAmountError';
  constructor(what: string, value: unknown) {
    super('invalid_amount', `${what} must be a positive safe integer, got ${describe(value)}.`);
  }
}

/** A model's token usage handed to `settleUsage` or `creditsForUsage` that is not one (nothing is settled). */
export class InvalidUsageError extends CreditsError {
  override name = 'InvalidUsageError';
  constructor(message: string) {
    super('invalid_amount', message);
  }
}

export class UnauthenticatedError extends CreditsError {
  override name = 'UnauthenticatedError';
  constructor() {
    super('unauthenticated', 'Sign in to use credits.');
  }
}

export class InsufficientCreditsError extends CreditsError {
  override name = 'InsufficientCreditsError';
  readonly required: number;
  readonly balance: number;
  constructor(required: number, balance: number) {
    super('insufficient_credits', `This action needs ${required} credits; the balance is ${balance}.`, {
      required,
      balance,
    });
    this.required = required;
    this.balance = balance;
  }
}

export class NotFoundError extends CreditsError {
  override name = 'NotFoundError';
  constructor(message: string) {
    super('not_found', message);
  }
}

/** The same idempotency key is being, or has been, used. */
export class ConflictError extends CreditsError {
  override name = 'ConflictError';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('conflict', message, details);
  }
}

/** The database did not answer in time or refused: the kit fails closed. */
export class StoreUnavailableError extends CreditsError {
  override name = 'StoreUnavailableError';
  constructor(cause: unknown) {
    super('store_unavailable', 'The credits database is unavailable; try again shortly.', {}, cause);
  }
}

export class SignatureError extends CreditsError {
  override name = 'SignatureError';
  constructor(message: string, cause?: unknown) {
    super('invalid_signature', message, {}, cause);
  }
}

export class PaymentProviderError extends CreditsError {
  override name = 'PaymentProviderError';
  constructor(cause: unknown) {
    super('payment_provider_error', 'The payment provider could not be reached; try again shortly.', {}, cause);
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  return `a value of type ${typeof value}`;
}

/** Turns anything thrown inside the kit into a CreditsError (unknown errors become `internal`). */
export function toCreditsError(err: unknown): CreditsError {
  if (err instanceof CreditsError) return err;
  return new CreditsError('internal', 'Something went wrong with credits.', {}, err);
}
