import { act, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { createRef } from 'react';
import { BuyCreditsButton, type CreditsRequestError, type FetchLike } from 'credit-kit/client';
import { heldFetch, newUser, renderKit, UNREACHABLE_API } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

const STRIPE_URL = /^https:\/\/checkout\.stripe\.com\//;

describe('BuyCreditsButton', () => {
  it('is a native button with a default label that the app can replace', async () => {
    const ref = createRef<HTMLButtonElement>();
    const { rerender, container } = renderKit(<BuyCreditsButton quantity={100} ref={ref} className="cta" />, server, { user: newUser() });
    const button = screen.getByRole('button', { name: 'Buy 100 credits' });
    expect(await axe(container)).toHaveNoViolations();
    expect(ref.current).toBe(button);
    expect(button).toHaveAttribute('type', 'button');
    expect(button).toHaveClass('cta', 'ck-button');
    rerender(<BuyCreditsButton quantity={100}>Top up</BuyCreditsButton>);
    expect(screen.getByRole('button', { name: 'Top up' })).toBeEnabled();
  });

  it('is disabled and aria-busy while the session is created, then redirects to Stripe', async () => {
    const user = newUser();
    const held = heldFetch();
    const redirect = jest.fn();
    const { container } = renderKit(<BuyCreditsButton quantity={100} redirect={redirect} />, server, { user, fetch: held.fetch });
    const button = screen.getByRole('button', { name: 'Buy 100 credits' });

    await userEvent.click(button);
    expect(button).toBeDisabled();
    expect(button).toHaveAttribute('aria-busy', 'true');
    expect(await axe(container)).toHaveNoViolations();

    const post = held.requests.find((r) => r.init?.method === 'POST');
    expect(post?.url).toBe(`${server.apiBase}/stripe/checkout/credits`);
    const headers = new Headers(post?.init?.headers);
    expect(headers.get('content-type')).toBe('application/json');
    expect(headers.get('idempotency-key')).toMatch(/\S{8,}/);
    expect(post?.init?.body).toBe(JSON.stringify({ quantity: 100 }));

    held.release();
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    expect(redirect.mock.calls[0]?.[0]).toMatch(STRIPE_URL);
    // The page is leaving: the button stays busy so nothing is bought twice meanwhile...
    expect(button).toHaveAttribute('aria-busy', 'true');
    // ...until the Back button brings the page back from the back-forward cache.
    act(() => {
      window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true }));
    });
    expect(button).toBeEnabled();
    expect(button).not.toHaveAttribute('aria-busy');
  });

  it('creates one session for a double click', async () => {
    const user = newUser();
    const redirect = jest.fn();
    renderKit(<BuyCreditsButton quantity={50} redirect={redirect} />, server, { user });
    await userEvent.dblClick(screen.getByRole('button', { name: 'Buy 50 credits' }));
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    // Give a second request, had one been sent, time to arrive before counting.
    await new Promise((r) => setTimeout(r, 200));
    expect(redirect).toHaveBeenCalledTimes(1);
    expect(await server.checkoutPosts(user)).toBe(1);
  });

  it('buys a bundle by id', async () => {
    const redirect = jest.fn();
    renderKit(<BuyCreditsButton bundle="starter" redirect={redirect}>Starter pack</BuyCreditsButton>, server, { user: newUser() });
    await userEvent.click(screen.getByRole('button', { name: 'Starter pack' }));
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    expect(redirect.mock.calls[0]?.[0]).toMatch(STRIPE_URL);
  });

  const failures: Array<[string, { user: string | null; quantity: number; apiBase?: (s: TestServer) => string }, { status: number; code: string; message: RegExp }]> = [
    ['401 when signed out', { user: null, quantity: 100 }, { status: 401, code: 'unauthenticated', message: /sign in/i }],
    ['400 below the minimum charge', { user: 'someone', quantity: 1 }, { status: 400, code: 'invalid_request', message: /buy at least 5/ }],
    ['500 from the server', { user: 'someone', quantity: 100, apiBase: (s) => `${s.url}/test/broken` }, { status: 500, code: 'internal', message: /failed on purpose/ }],
    ['a network failure', { user: 'someone', quantity: 100, apiBase: () => UNREACHABLE_API }, { status: 0, code: 'network_error', message: /could not reach/i }],
  ];
  it.each(failures)('shows %s with role="alert", passes it to onError and can be tried again', async (_name, setup, expected) => {
    const onError = jest.fn<void, [CreditsRequestError]>();
    const redirect = jest.fn();
    const { container } = renderKit(<BuyCreditsButton quantity={setup.quantity} onError={onError} redirect={redirect} />, server, {
      user: setup.user,
      ...(setup.apiBase ? { apiBase: setup.apiBase(server) } : {}),
    });
    const button = screen.getByRole('button');
    await userEvent.click(button);

    expect(await screen.findByRole('alert')).toHaveTextContent(expected.message);
    expect(onError).toHaveBeenCalledTimes(1);
    expect(onError.mock.calls[0]?.[0]).toMatchObject({ name: 'CreditsRequestError', status: expected.status, code: expected.code });
    expect(redirect).not.toHaveBeenCalled();
    expect(button).toBeEnabled();
    expect(button).not.toHaveAttribute('aria-busy');
    expect(await axe(container)).toHaveNoViolations();
  });

  it('runs the app onClick first and lets it cancel the purchase', async () => {
    const user = newUser();
    const redirect = jest.fn();
    const counting: FetchLike = (input, init) => fetch(input, init);
    renderKit(<BuyCreditsButton quantity={100} redirect={redirect} onClick={(e) => e.preventDefault()} />, server, { user, fetch: counting });
    await userEvent.click(screen.getByRole('button'));
    await new Promise((r) => setTimeout(r, 100));
    expect(redirect).not.toHaveBeenCalled();
    expect(await server.checkoutPosts(user)).toBe(0);
  });
});
