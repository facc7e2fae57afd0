// The one page, on "/" and on the two pages Checkout returns to (the kit's default /success and /cancel).
// A server component: it reads the signed-in user from the cookie, so the first render already knows it.
import { cookies } from 'next/headers';
import { SESSION_COOKIE, userFromSession } from '@/lib/session';
import { Studio } from './Studio';

export async function Home({ returned }: { returned?: 'success' | 'cancel' }) {
  const user = userFromSession((await cookies()).get(SESSION_COOKIE)?.value);
  return <Studio user={user} returned={returned} />;
}
