/**
 * Stripe.js cannot load in these tests (no network to js.stripe.com, no real browser), so each test hands
 * the component a hand-written stand-in for a Stripe.js instance: an object with the one method the
 * component calls, createEmbeddedCheckoutPage, shaped like the installed @stripe/stripe-js 10.2.1 types.
 * It calls the component's fetchClientSecret exactly as Stripe.js would, so the session is really
 * created by the server (at stripe-mock), and it records what was mounted and destroyed.
 * (stripe-mock leaves client_secret null; the server fixture fills one in, see server-fixture.ts.)
 */
import { screen, waitFor } from '@testing-library/react';
import { axe } from 'jest-axe';
import { StrictMode } from 'react';
import type { Stripe, StripeEmbeddedCheckout, StripeEmbeddedCheckoutOptions } from '@stripe/stripe-js';
import { EmbeddedCheckout, type CreditsRequestError, type EmbeddedCheckoutStripe } from 'credit-kit/client';
import { heldFetch, isPost, newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

// What loadStripe() resolves to fits the prop's type (the kit declares it without @stripe/stripe-js):
// the type-check fails the day it does not.
void (null as unknown as Stripe satisfies EmbeddedCheckoutStripe);

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

function stripeStandIn() {
  const calls = { secrets: [] as string[], mountedOn: [] as HTMLElement[], destroyed: 0, options: [] as StripeEmbeddedCheckoutOptions[] };
  let alive = 0;
  const stripe: EmbeddedCheckoutStripe = {
    async createEmbeddedCheckoutPage(options) {
      // Like Stripe.js: one Embedded Checkout at a time.
      if (alive > 0) throw new Error('You cannot have multiple Embedded Checkout objects.');
      alive++;
      calls.options.push(options);
      const secret = await options.fetchClientSecret?.();
      if (secret) calls.secrets.push(secret);
      const checkout: StripeEmbeddedCheckout = {
        mount(location) {
          if (typeof location === 'string') throw new Error('the component should mount on its element');
          const frame = document.createElement('iframe');
          frame.title = 'Secure checkout';
          location.append(frame);
          calls.mountedOn.push(location);
        },
        unmount() {},
        destroy() {
          calls.destroyed++;
          alive--;
        },
      };
      return checkout;
    },
  };
  return { stripe, calls };
}

describe('EmbeddedCheckout', () => {
  it('creates an embedded session, hands Stripe.js its client secret and mounts in its own element', async () => {
    const user = newUser();
    const { stripe, calls } = stripeStandIn();
    const held = heldFetch(isPost);
    const { container, unmount } = renderKit(<EmbeddedCheckout stripe={Promise.resolve(stripe)} quantity={100} className="pay" data-testid="co" />, server, {
      user,
      fetch: held.fetch,
    });

    const root = screen.getByTestId('co');
    expect(root).toHaveAttribute('aria-busy', 'true');
    expect(screen.getByText('Loading checkout…')).toBeInTheDocument();
    expect(await axe(container)).toHaveNoViolations();

    await waitFor(() => expect(held.requests.filter((r) => isPost(r.url, r.init))).toHaveLength(1));
    const post = held.requests.find((r) => isPost(r.url, r.init));
    expect(post?.init?.body).toBe(JSON.stringify({ quantity: 100, ui: 'embedded' }));
    expect(new Headers(post?.init?.headers).get('idempotency-key')).toBeTruthy();
    held.release();

    await waitFor(() => expect(root).toHaveAttribute('data-state', 'ready'));
    expect(calls.secrets).toHaveLength(1);
    expect(calls.secrets[0]).toMatch(/^cs_\w+_secret_\w+$/);
    expect(calls.mountedOn).toHaveLength(1);
    expect(root).toContainElement(calls.mountedOn[0]!);
    expect(root).toHaveClass('pay', 'ck-embedded');
    expect(root).not.toHaveAttribute('aria-busy');
    expect(screen.getByTitle('Secure checkout')).toBeInTheDocument();
    expect(await axe(container)).toHaveNoViolations();

    unmount();
    expect(calls.destroyed).toBe(1);
  });

  it("survives React's development double effects: one checkout at a time, one session", async () => {
    const user = newUser();
    const { stripe, calls } = stripeStandIn();
    const onError = jest.fn();
    renderKit(
      <StrictMode>
        <EmbeddedCheckout stripe={Promise.resolve(stripe)} quantity={100} onError={onError} data-testid="co" />
      </StrictMode>,
      server,
      { user },
    );
    await waitFor(() => expect(screen.getByTestId('co')).toHaveAttribute('data-state', 'ready'));
    expect(onError).not.toHaveBeenCalled();
    expect(calls.mountedOn).toHaveLength(1);
    // The first run was cancelled before it asked for a session: one session was created, not two.
    expect(calls.secrets).toHaveLength(1);
    expect(await server.checkoutPosts(user)).toBe(1);
  });

  it('buys a bundle', async () => {
    const { stripe, calls } = stripeStandIn();
    const held = heldFetch(() => false);
    renderKit(<EmbeddedCheckout stripe={stripe} bundle="starter" data-testid="co" />, server, { user: newUser(), fetch: held.fetch });
    await waitFor(() => expect(screen.getByTestId('co')).toHaveAttribute('data-state', 'ready'));
    expect(calls.secrets).toHaveLength(1);
    expect(held.requests.find((r) => isPost(r.url, r.init))?.init?.body).toBe(JSON.stringify({ bundle: 'starter', ui: 'embedded' }));
  });

  it('shows a failed session request with role="alert" and passes it to onError (signed out: 401)', async () => {
    const { stripe, calls } = stripeStandIn();
    const onError = jest.fn<void, [CreditsRequestError]>();
    const { container } = renderKit(<EmbeddedCheckout stripe={stripe} quantity={100} onError={onError} />, server, { user: null });
    expect(await screen.findByRole('alert')).toHaveTextContent('Sign in to use credits.');
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ status: 401, code: 'unauthenticated' }));
    expect(calls.mountedOn).toHaveLength(0);
    expect(await axe(container)).toHaveNoViolations();
  });

  it('says so when Stripe.js could not be loaded (loadStripe resolved null)', async () => {
    renderKit(<EmbeddedCheckout stripe={Promise.resolve(null)} quantity={100} />, server, { user: newUser() });
    expect(await screen.findByRole('alert')).toHaveTextContent('Stripe.js could not be loaded.');
  });
});
