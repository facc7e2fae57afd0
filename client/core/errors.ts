import type { CreditsErrorCode, ErrorBody } from './types';

/**
 * What went wrong: one of the server's error codes, or one the client reports itself: `network_error`
 * (the server was not reached), `bad_response` (its answer was not the kit's), `stripe_unavailable` and
 * `stripe_error` (Stripe.js could not be loaded or could not show Embedded Checkout).
 */
export type CreditsRequestErrorCode = CreditsErrorCode | 'network_error' | 'bad_response' | 'stripe_unavailable' | 'stripe_error';

/**
 * Every failed request the kit makes becomes a CreditsRequestError carrying the server's stable error
 * `code` and extra fields (`details`), or `network_error` (status 0) when the server was not reached.
 */
export class CreditsRequestError extends Error {
  override name = 'CreditsRequestError';
  /** HTTP status; 0 when the request never got an answer. */
  readonly status: number;
  /** The server's error code (`unauthenticated`, `insufficient_credits`, ...), or one of the client's own. */
  readonly code: CreditsRequestErrorCode;
  readonly details: Record<string, unknown>;

  constructor(status: number, code: CreditsRequestErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Reads the ErrorBody (`{ error: { code, message, ...details } }`) of a failed response. */
export async function toRequestError(res: Response): Promise<CreditsRequestError> {
  // Read as the server's ErrorBody, but checked: a proxy or another app may have answered instead.
  const body = (await res.json().catch(() => null)) as Partial<ErrorBody> | null;
  const error: unknown = body?.error;
  if (error && typeof error === 'object') {
    const { code, message, ...details } = error as ErrorBody['error'];
    if (typeof code === 'string' && typeof message === 'string') return new CreditsRequestError(res.status, code, message, details);
  }
  return new CreditsRequestError(res.status, 'bad_response', `The server answered ${res.status}.`);
}
