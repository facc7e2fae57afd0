/**
 * The Fetch side over real HTTP: node:http serves a Fetch handler through a small bridge (IncomingMessage →
 * Request, Response → ServerResponse, as Next.js and Hono's Node adapters do), against the embedded
 * database. Nothing of Express is on this path.
 */
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import type { Connection } from 'mongoose';
import { createFetchCredits, type FetchCredits, type FetchCreditsOptions } from 'credit-kit/fetch';
import { connect, served } from './helpers';

export type FetchHandler = (request: Request) => Promise<Response> | Response;

/** Serves `handler` on a loopback port: each request becomes a Fetch Request, its Response is streamed back. */
export async function serveFetch(handler: FetchHandler): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    void (async () => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (Array.isArray(value)) for (const v of value) headers.append(name, v);
        else if (value !== undefined) headers.set(name, value);
      }
      // The client going away aborts the request's signal and cancels the body, as Next.js's Node server does.
      const abort = new AbortController();
      let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
      res.on('close', () => {
        if (res.writableFinished) return;
        abort.abort();
        void reader?.cancel().catch(() => undefined);
      });
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
      const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers,
        signal: abort.signal,
        ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
      } as RequestInit);
      const response = await handler(request);
      res.statusCode = response.status;
      // A body left unread (refused as too large) is not drained: the connection closes after the answer.
      if (hasBody && !req.complete) res.setHeader('connection', 'close');
      response.headers.forEach((value, name) => res.setHeader(name, value));
      if (response.body) {
        reader = response.body.getReader();
        res.flushHeaders(); // the status and headers go out before the body, as a streamed answer's do
        try {
          // Each chunk handed to the socket before the next is read, with the backpressure a real server applies.
          for (let next = await reader.read(); !next.done; next = await reader.read()) await new Promise((written) => res.write(next.value, written));
        } catch (err) {
          // A body that errors mid-answer: the connection is cut, as Next.js does (the status is already sent).
          res.destroy(err as Error);
          return;
        }
      }
      res.end();
    })().catch((err: unknown) => {
      // The bridge itself failed (a handler must always answer): visible in the test as a plain-text 599.
      if (!res.headersSent) res.statusCode = 599;
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return served(server);
}

/** Test sign-in on the Fetch side: the user id from the `x-test-user` header. */
export const fetchHeaderUser = (request: Request) => request.headers.get('x-test-user');

export interface FetchHarness {
  connection: Connection;
  credits: FetchCredits;
  url: string;
  close(): Promise<void>;
}

/**
 * A Fetch app: `credits.routes` under /api, and the guarded routes `setup` returns by `METHOD /path`,
 * served on loopback as a Next.js app would serve its route handlers.
 */
export async function fetchHarness(
  setup: (credits: FetchCredits) => Record<string, (request: Request, context?: never) => Promise<Response>> = () => ({}),
  options: Partial<FetchCreditsOptions> = {},
): Promise<FetchHarness> {
  const connection = await connect();
  const credits = createFetchCredits({ connection, getUserId: fetchHeaderUser, timeoutMs: 20_000, claimLeaseMs: 60_000, ...options });
  await credits.init();
  const guarded = setup(credits);
  const server = await serveFetch((request) => {
    const { pathname } = new URL(request.url);
    const route = guarded[`${request.method} ${pathname}`];
    if (route) return route(request);
    if (request.method === 'GET' || request.method === 'POST') return credits.routes[request.method](request);
    return new Response(null, { status: 405 });
  });
  return {
    connection,
    credits,
    url: server.url,
    async close() {
      await credits.flush();
      await server.close();
      await connection.close();
    },
  };
}
