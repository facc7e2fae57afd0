/**
 * The `rateLimit` option's limiter: a fixed window per key, counted in this process's memory.
 *
 * Each key's window opens at its first request and lasts `windowMs`; every request in it counts, and those
 * past `limit` are refused. Windows that have ended are dropped at most once a window, so memory holds only
 * the keys seen in about the last two windows. The answers carry the IETF RateLimit header fields (draft 8:
 * `RateLimit-Policy`, `RateLimit`) and, when refused, `Retry-After`.
 *
 * Kept inside the kit (no limiter package) so that the server entry depends on nothing but its peers.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Request, RequestHandler, Response } from 'express';
import { CreditsError } from '../errors';

export interface FixedWindowOptions {
  windowMs: number;
  limit: number;
  /** The key a request counts against; may be async. A rejection is passed to `next(err)`. */
  key: (req: Request) => string | Promise<string>;
  /** Answers a refused request (the headers are already set). */
  refuse: (req: Request, res: Response) => void;
  /** The clock, in ms. Default `Date.now`. */
  now?: () => number;
}

interface Window {
  hits: number;
  resetAt: number;
}

/** What one request met: whether it is refused, and the RateLimit header fields to answer with. */
export interface WindowHit {
  refused: boolean;
  headers: Array<readonly [name: string, value: string]>;
}

/** The counting, framework-neutral: `hit(key)` counts one request against the key's window. */
export function fixedWindow({ windowMs, limit, now = Date.now }: Pick<FixedWindowOptions, 'windowMs' | 'limit' | 'now'>): (key: string) => WindowHit {
  const windows = new Map<string, Window>();
  const windowSeconds = Math.ceil(windowMs / 1000);
  const policy = `"${limit}-in-${windowSeconds}sec"`;
  let nextSweep = now() + windowMs;

  return (k) => {
    const t = now();
    if (t >= nextSweep) {
      for (const [name, w] of windows) if (w.resetAt <= t) windows.delete(name);
      nextSweep = t + windowMs;
    }
    let w = windows.get(k);
    if (!w || w.resetAt <= t) {
      w = { hits: 0, resetAt: t + windowMs };
      windows.set(k, w);
    }
    w.hits++;
    const resetSeconds = Math.max(0, Math.ceil((w.resetAt - now()) / 1000));
    const headers: WindowHit['headers'] = [
      ['RateLimit-Policy', `${policy}; q=${limit}; w=${windowSeconds}`],
      ['RateLimit', `${policy}; r=${Math.max(0, limit - w.hits)}; t=${resetSeconds}`],
    ];
    const refused = w.hits > limit;
    if (refused) headers.push(['Retry-After', String(resetSeconds)]);
    return { refused, headers };
  };
}

export function fixedWindowLimiter({ windowMs, limit, key, refuse, now = Date.now }: FixedWindowOptions): RequestHandler {
  const hit = fixedWindow({ windowMs, limit, now });
  return (req, res, next) => {
    Promise.resolve()
      .then(() => key(req))
      .then((k) => {
        const h = hit(k);
        for (const [name, value] of h.headers) res.setHeader(name, value);
        if (h.refused) {
          refuse(req, res);
          return;
        }
        next();
      })
      .catch(next);
  };
}

/**
 * The key a request counts against, on both adapters: its signed-in user, else its client's address (see
 * addressKey); requests with neither share one window.
 */
export function rateLimitKey(user: unknown, address: string | null | undefined): string {
  if (typeof user === 'string' && user) return `user:${user}`;
  return typeof address === 'string' && address ? `ip:${addressKey(address)}` : 'anonymous';
}

/** The answer to a request past its limit (429). */
export function rateLimitedError(): CreditsError {
  return new CreditsError('rate_limited', 'Too many requests; slow down and try again shortly.');
}

/**
 * The key of a request from an address: IPv4 as is, IPv6 by its /56 network (one subscriber's usual
 * allocation, so that rotating addresses within it does not escape the limit). IPv4-mapped IPv6 counts as IPv4.
 */
export function addressKey(ip: string): string {
  const address = ip.replace(/%.*$/, ''); // zone id
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address) || !isIPv6(address)) return address;
  const groups = ipv6Groups(address);
  return `${groups.slice(0, 3).map(hex).join(':')}:${hex(groups[3]! & 0xff00)}::/56`;
}

function hex(n: number): string {
  return n.toString(16);
}

/** The eight 16-bit groups of a valid IPv6 address (with `::` and an embedded IPv4 tail expanded). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${hex((a << 8) | b)}:${hex((c << 8) | d)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}
