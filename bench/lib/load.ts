/**
 * One load run: autocannon (programmatic API, in this process) against a loopback URL with a fixed number
 * of keep-alive connections, for a fixed duration or a fixed number of requests. Every response's status
 * and latency are recorded here, so that percentiles can be computed over several rounds pooled together.
 */
import autocannon from 'autocannon';

export interface RequestParts {
  headers: Record<string, string>;
  body?: string;
}

export interface LoadOptions {
  /** Origin and path, e.g. http://127.0.0.1:1234/run. */
  url: string;
  connections: number;
  /** Seconds to run; ignored when `amount` is given. */
  seconds?: number;
  /** Total number of requests to send, then stop. */
  amount?: number;
  /** Called for every request (a new user id, a newly signed event...). */
  request: () => RequestParts;
  /** Keep every latency (off for the soak, so the bench itself does not grow the heap it measures). */
  recordLatencies?: boolean;
}

export interface LoadResult {
  /** Responses received (any status). */
  responses: number;
  ok: number;
  /** Responses with a status outside 2xx, by status. */
  non2xx: Map<number, number>;
  /** Connection errors and timeouts, as autocannon counts them. */
  errors: number;
  timeouts: number;
  /** Wall time of the run, from start to the last response. */
  elapsedMs: number;
  /** Latency of every response, in milliseconds (empty unless recordLatencies). */
  latencies: number[];
}

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const url = new URL(options.url);
  const latencies: number[] = [];
  const non2xx = new Map<number, number>();
  let responses = 0;
  let ok = 0;
  const record = options.recordLatencies !== false;

  return new Promise<LoadResult>((resolve, reject) => {
    const started = process.hrtime.bigint();
    const instance = autocannon(
      {
        url: url.origin,
        connections: options.connections,
        pipelining: 1,
        timeout: 10,
        ...(options.amount !== undefined ? { amount: options.amount } : { duration: options.seconds ?? 1 }),
        requests: [
          {
            method: 'POST',
            path: url.pathname,
            // A fresh request each time: autocannon rebuilds the request bytes when setupRequest is present.
            setupRequest: (req) => {
              const parts = options.request();
              return { ...req, headers: parts.headers, ...(parts.body !== undefined ? { body: parts.body } : {}) };
            },
          },
        ],
      },
      (err, result) => {
        if (err) return reject(err instanceof Error ? err : new Error(String(err)));
        resolve({
          responses,
          ok,
          non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          elapsedMs: Number(process.hrtime.bigint() - started) / 1e6,
          latencies,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      responses++;
      if (statusCode >= 200 && statusCode < 300) ok++;
      else non2xx.set(statusCode, (non2xx.get(statusCode) ?? 0) + 1);
      if (record) latencies.push(responseTime);
    });
  });
}
