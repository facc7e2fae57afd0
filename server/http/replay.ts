/**
 * Idempotent replay on guarded routes, the HTTP side. A request sent with an Idempotency-Key claims the key
 * with its fingerprint (route, query and body) in the claim the charge makes anyway; once the route has
 * answered, the answer is recorded and kept with the claim from the background queue, after the answer has
 * gone out. A retry finds the claim taken and, when the answer was kept, gets it again here: same status,
 * Content-Type and bytes, plus `Idempotent-Replayed: true`. The decision is in domain/core.ts (`repeated`).
 */
import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import type { KeptReply, RequestFingerprint, StoredReply } from '../domain/types';

/** The largest body kept for a replay; a larger answer is recorded as not kept (409 `reply_not_kept`). */
export const REPLY_LIMIT_BYTES = 64 * 1024;

/**
 * What the request is, for telling a retry from another request under the same key: its route (method
 * and path) and a digest of route, query string and body. The body counts as parsed by a body parser that
 * ran before the guard (`app.use(express.json())`), with object keys in sorted order; a body nobody has
 * parsed yet is not read here (that would take it from the route) and counts as absent.
 */
export function fingerprintOf(req: Request, route: string): RequestFingerprint {
  const query = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
  const body: unknown = req.body;
  return fingerprint(route, query, body === undefined ? undefined : Buffer.isBuffer(body) ? body : typeof body === 'string' ? { text: body } : { json: body });
}

/**
 * The fingerprint of a request from its parts, whatever the framework: the route, the query string and the
 * body as bytes (the Fetch side reads them), text, a parsed JSON value, or absent.
 */
export function fingerprint(route: string, query: string, body: Uint8Array | { text: string } | { json: unknown } | undefined): RequestFingerprint {
  const hash = createHash('sha256').update(route).update('\n').update(query).update('\n');
  if (body === undefined) hash.update('none');
  else if (body instanceof Uint8Array) hash.update('bytes\n').update(body);
  else if ('text' in body) hash.update('text\n').update(body.text);
  else hash.update('json\n').update(JSON.stringify(body.json, sortedKeys) ?? 'undefined');
  return { route, digest: hash.digest('hex') };
}

function sortedKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) return value;
  const obj = value as Record<string, unknown>;
  return Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));
}

/**
 * Records the answer as the route ends it: its status, Content-Type and body bytes (up to the bound), and
 * hands it to `keep` once. Installed before the give-back wrapper, so it sees the answer as finally sent.
 */
export function recordReply(res: Response, keep: (reply: StoredReply) => void): void {
  const recorder = new ReplyRecorder();
  const take = (chunk: unknown, encoding: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : chunk instanceof Uint8Array
          ? Buffer.from(chunk)
          : undefined;
    if (buf) recorder.take(buf);
  };
  const write = res.write;
  const end = res.end;
  res.write = function recordWrite(this: Response, ...args: unknown[]) {
    take(args[0], args[1]);
    return write.apply(this, args as Parameters<typeof write>);
  } as typeof res.write;
  res.end = function recordEnd(this: Response, ...args: unknown[]) {
    res.write = write;
    res.end = end;
    take(args[0], args[1]);
    keep(recorder.reply(res.statusCode, res.getHeader('content-type')));
    return end.apply(this, args as Parameters<typeof end>);
  } as typeof res.end;
}

/** The bytes of an answer as they go out, up to the bound, and what is kept of it once it has ended. */
export class ReplyRecorder {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  take(chunk: Uint8Array): void {
    this.size += chunk.length;
    if (this.size <= REPLY_LIMIT_BYTES) this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    else this.chunks.length = 0;
  }

  reply(status: number, contentType: unknown): StoredReply {
    return replyOf(status, contentType, this.size, this.chunks);
  }
}

function replyOf(status: number, contentType: unknown, size: number, chunks: Buffer[]): StoredReply {
  if (size > REPLY_LIMIT_BYTES) return { kept: false, status, reason: 'too_large' };
  const type = Array.isArray(contentType) ? contentType.join(', ') : contentType === undefined ? undefined : String(contentType);
  if (size === 0) return { kept: true, status, body: '', ...(type ? { contentType: type } : {}) };
  const bytes = Buffer.concat(chunks);
  const body = bytes.toString('utf8');
  // JSON text is UTF-8; bytes that are not would not come back the same, so they are not kept either.
  const json = !!type && /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type) && Buffer.from(body, 'utf8').equals(bytes) && isJson(body);
  if (!json) return { kept: false, status, reason: 'not_json' };
  return { kept: true, status, contentType: type, body };
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Answers a retry with the first request's kept answer. The route does not run; nothing is charged. */
export function sendReplay(res: Response, reply: KeptReply): void {
  res.status(reply.status);
  res.setHeader('Idempotent-Replayed', 'true');
  if (reply.contentType) res.setHeader('Content-Type', reply.contentType);
  res.end(reply.body);
}
