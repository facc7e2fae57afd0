/**
 * The example's sign-in: a name in a signed cookie, no password (as in the Express demo). Server-only:
 * it signs with EXAMPLE_SESSION_SECRET, which the launcher sets.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = 'example_user';

export interface ExampleUser {
  id: string;
  name: string;
}

function secret(): string {
  const value = process.env.EXAMPLE_SESSION_SECRET;
  if (!value) throw new Error('EXAMPLE_SESSION_SECRET is not set: start the example with `npm start` (launch.ts), which sets it.');
  return value;
}

const signature = (name: string) => createHmac('sha256', secret()).update(name).digest('base64url');

/** A display name of 1-32 letters, digits, spaces and . ' -, or null. */
export function cleanName(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const name = value.trim().replace(/\s+/g, ' ');
  return /^[\p{L}\p{N}][\p{L}\p{N} .'-]{0,31}$/u.test(name) ? name : null;
}

/** The cookie's value for a signed-in name. */
export function sessionValue(name: string): string {
  return `${encodeURIComponent(name)}.${signature(name)}`;
}

/** The user a cookie value names, or null when it is missing or tampered with. */
export function userFromSession(value: string | undefined): ExampleUser | null {
  if (!value) return null;
  const dot = value.lastIndexOf('.');
  if (dot < 0) return null;
  let name: string;
  try {
    name = decodeURIComponent(value.slice(0, dot));
  } catch {
    return null;
  }
  const given = Buffer.from(value.slice(dot + 1));
  const expected = Buffer.from(signature(name));
  if (given.length !== expected.length || !timingSafeEqual(given, expected) || cleanName(name) !== name) return null;
  return { id: `example:${name.toLowerCase()}`, name };
}

/** The signed-in user of a Fetch `Request` (its Cookie header). */
export function userFromRequest(request: Request): ExampleUser | null {
  const cookies = request.headers.get('cookie') ?? '';
  for (const part of cookies.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return userFromSession(part.slice(eq + 1).trim());
  }
  return null;
}
