// Sign-in by name (a signed cookie, no password), as in the Express demo: POST { name } signs in, DELETE signs out.
import { cookies } from 'next/headers';
import { cleanName, SESSION_COOKIE, sessionValue } from '@/lib/session';

export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

const jsonError = (status: number, code: string, message: string) => Response.json({ error: { code, message } }, { status });

export async function POST(request: Request): Promise<Response> {
  // JSON only: a cross-site form cannot send it without a CORS preflight (the sign-in's CSRF defence).
  if (!(request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json')) return jsonError(415, 'unsupported_media_type', 'Send JSON.');
  const body = (await request.json().catch(() => null)) as { name?: unknown } | null;
  const name = cleanName(body?.name);
  if (!name) return jsonError(400, 'invalid_name', 'Use 1 to 32 letters, digits, spaces, dots, dashes or apostrophes.');
  (await cookies()).set(SESSION_COOKIE, sessionValue(name), {
    httpOnly: true,
    sameSite: 'lax',
    secure: (process.env.EXAMPLE_PUBLIC_URL ?? '').startsWith('https:'),
    maxAge: 30 * 24 * 60 * 60,
    path: '/',
  });
  console.log(`[example] example:${name.toLowerCase()} signed in`);
  return Response.json({ user: { id: `example:${name.toLowerCase()}`, name } });
}

export async function DELETE(): Promise<Response> {
  (await cookies()).delete(SESSION_COOKIE);
  return Response.json({ user: null });
}
