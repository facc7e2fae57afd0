/**
 * CheckoutReturn against the real session route. stripe-mock answers every session retrieval with a
 * fixture that carries no credit-kit owner (no metadata, no client_reference_id), so the server's
 * ownership check answers 404 for any session id: that is the state tested here, honestly, as "a session
 * that is not yours". The paid path ("N credits added") needs a session Stripe really completed for
 * this user, which stripe-mock cannot produce; it is not faked here with a stubbed route.
 */
import { screen } from '@testing-library/react';
import { axe } from 'jest-axe';
import { CheckoutReturn } from 'credit-kit/client';
import { heldFetch, newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());
afterEach(() => window.history.replaceState(null, '', '/'));

/** A Checkout Session the server really created (at stripe-mock) for this user. */
async function createSession(user: string): Promise<string> {
  const res = await fetch(`${server.apiBase}/stripe/checkout/credits`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-test-user': user },
    body: JSON.stringify({ quantity: 100 }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

describe('CheckoutReturn', () => {
  it('reads session_id from the URL, shows a loading state, then an error for a session the server does not give this user', async () => {
    const user = newUser();
    const id = await createSession(user);
    expect(id).toMatch(/^cs_/);
    window.history.replaceState(null, '', `/success?session_id=${id}`);
    const held = heldFetch();
    const { container } = renderKit(<CheckoutReturn className="done" data-testid="return" />, server, { user, fetch: held.fetch });

    expect(await screen.findByRole('status')).toHaveTextContent('Confirming your purchase…');
    expect(screen.getByTestId('return')).toHaveAttribute('data-state', 'loading');
    expect(await axe(container)).toHaveNoViolations();
    held.release();

    expect(await screen.findByRole('alert')).toHaveTextContent('We could not find this purchase for your account.');
    expect(screen.getByTestId('return')).toHaveClass('done', 'ck-return');
    expect(screen.getByTestId('return')).toHaveAttribute('data-state', 'error');
    expect(held.requests.map((r) => r.url)).toContain(`${server.apiBase}/stripe/checkout/session/${id}`);
    expect(await axe(container)).toHaveNoViolations();
  });

  it('renders nothing when the URL has no session_id', async () => {
    const held = heldFetch();
    const { container } = renderKit(<CheckoutReturn />, server, { user: newUser(), fetch: held.fetch });
    await new Promise((r) => setTimeout(r, 50));
    expect(container).toBeEmptyDOMElement();
    expect(held.requests).toHaveLength(0);
  });

  it('takes an explicit session id and shows the server message for a malformed one', async () => {
    renderKit(<CheckoutReturn sessionId="not-a-session" />, server, { user: newUser() });
    expect(await screen.findByRole('alert')).toHaveTextContent('That is not a Checkout Session id (cs_…).');
  });

  it('asks a signed-out visitor to sign in', async () => {
    window.history.replaceState(null, '', '/success?session_id=cs_test_abc');
    renderKit(<CheckoutReturn />, server, { user: null });
    expect(await screen.findByRole('alert')).toHaveTextContent('Sign in to use credits.');
  });
});
