/**
 * Every failed request the kit makes becomes a CreditsRequestError carrying the server's stable error
 * `code` and extra fields (`details`), or `network_error` (status 0) when the server was not reached.
 */
export class CreditsRequestError extends Error {
  override name = 'CreditsRequestError';
  /** HTTP status; 0 when the request never got an answer. */
  readonly status: number;
  /** The server's error code (`unauthenticated`, `invalid_request`, ...), or `network_error` / `bad_response`. */
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Reads the `{ error: { code, message, ...details } }` body of a failed response. */
export async function toRequestError(res: Response): Promise<CreditsRequestError> {
  const body: unknown = await res.json().catch(() => null);
  const error = (body as { error?: unknown } | null)?.error;
  if (error && typeof error === 'object') {
    const { code, message, ...details } = error as Record<string, unknown>;
    if (typeof code === 'string' && typeof message === 'string') return new CreditsRequestError(res.status, code, message, details);
  }
  return new CreditsRequestError(res.status, 'bad_response', `The server answered ${res.status}.`);
}
