import { CreditsRequestError, toRequestError } from './errors';

/** The subset of `fetch` the kit uses; an app can pass its own (to add auth headers, for instance). */
export type FetchLike = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

export interface Requester {
  readonly base: string;
  /** Plain fetch with the app's fetch, for routes outside the kit (no error parsing). */
  fetch: FetchLike;
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body: unknown, headers?: Record<string, string>): Promise<T>;
  /** Any method, with a JSON body when given (PUT and DELETE of the auto-recharge routes). */
  send<T>(method: string, path: string, body?: unknown): Promise<T>;
}

const networkError = (cause: unknown) =>
  new CreditsRequestError(0, 'network_error', 'Could not reach the server. Check your connection and try again.', {}, cause);

/**
 * `getFetch` is read on every call: the app's fetch may change between renders, and on the server (or in
 * tests that install fetch late) the global fetch is looked up only when a request is made.
 */
export function createRequester(apiBase: string, getFetch: () => FetchLike | undefined): Requester {
  const base = apiBase.replace(/\/+$/, '');
  const fetch: FetchLike = (input, init) => (getFetch() ?? globalThis.fetch)(input, init);

  async function call<T>(path: string, init: RequestInit): Promise<T> {
    let res: Response;
    try {
      res = await fetch(base + path, { credentials: 'same-origin', ...init });
    } catch (err) {
      throw networkError(err);
    }
    if (!res.ok) throw await toRequestError(res);
    try {
      return (await res.json()) as T;
    } catch (err) {
      throw new CreditsRequestError(res.status, 'bad_response', 'The server answered with something other than JSON.', {}, err);
    }
  }

  const send = <T,>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    call<T>(path, {
      method,
      headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  return {
    base,
    fetch,
    get: (path) => call(path, { headers: { accept: 'application/json' } }),
    post: (path, body, headers) => send('POST', path, body, headers),
    send: (method, path, body) => send(method, path, body),
  };
}

/** A key unique enough for one click's intent (Idempotency-Key), with or without crypto.randomUUID. */
export function intentKey(): string {
  const c = globalThis.crypto;
  return c && typeof c.randomUUID === 'function' ? c.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
