/**
 * CheckoutReturn against the real session route (which retrieves the session, checks its owner and
 * credits it). Stripe is stripe-mock, which keeps no state; the server fixture lays over its answers
 * what Stripe would remember (see emulateCheckoutState in test/server-fixture.ts), and a test "pays" on
 * Stripe's behalf through the fixture's /test/pay route. Nothing of the kit's routes is stubbed.
 */
import { screen, waitFor } from '@testing-library/react';
import { axe } from 'jest-axe';
import { BalanceBadge, CheckoutReturn, type CheckoutSessionResult } from 'credit-kit/client';
import { heldFetch, newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());
afterEach(() => window.history.replaceState(null, '', '/'));

const returnTo = (id: string) => window.history.replaceState(null, '', `/success?session_id=${id}`);

describe('CheckoutReturn', () => {
  it('reads session_id from the URL, confirms the paid purchase, says how many credits were added and refreshes the balance', async () => {
    const user = newUser();
    await server.grant(user, 20);
    const id = await server.createSession(user, 100);
    await server.pay(id);
    returnTo(id);
    const onPaid = jest.fn<void, [CheckoutSessionResult]>();
    const held = heldFetch((url) => url.includes('/stripe/checkout/session/'));
    const { container } = renderKit(
      <>
        <BalanceBadge />
        <CheckoutReturn className="done" data-testid="return" onPaid={onPaid} />
      </>,
      server,
      { user, fetch: held.fetch },
    );

    expect(await screen.findByText('20 credits')).toBeInTheDocument();
    expect(screen.getByRole('status')).toHaveTextContent('Confirming your purchase…');
    expect(screen.getByTestId('return')).toHaveAttribute('data-state', 'loading');
    expect(await axe(container)).toHaveNoViolations();
    held.release();

    expect(await screen.findByText('100 credits added. Your balance is 120.')).toBeInTheDocument();
    expect(screen.getByTestId('return')).toHaveAttribute('data-state', 'paid');
    expect(screen.getByTestId('return')).toHaveClass('done', 'ck-return', 'ck-return--paid');
    expect(await screen.findByText('120 credits')).toBeInTheDocument();
    expect(onPaid).toHaveBeenCalledTimes(1);
    expect(onPaid.mock.calls[0]?.[0]).toMatchObject({ id, status: 'paid', credits: 100, creditsAdded: 100, balance: 120 });
    expect(held.requests.map((r) => r.url)).toContain(`${server.apiBase}/stripe/checkout/session/${id}`);
    expect(await axe(container)).toHaveNoViolations();
  });

  it('credits a purchase once: coming back to the page again adds nothing more', async () => {
    const user = newUser();
    const id = await server.createSession(user, 50);
    await server.pay(id);
    returnTo(id);
    const first = renderKit(<CheckoutReturn />, server, { user });
    expect(await screen.findByText('50 credits added. Your balance is 50.')).toBeInTheDocument();
    first.unmount();

    renderKit(<BalanceBadge />, server, { user });
    renderKit(<CheckoutReturn />, server, { user });
    expect(await screen.findByText('50 credits added. Your balance is 50.')).toBeInTheDocument();
    expect(await screen.findByText('50 credits')).toBeInTheDocument();
  });

  it('says the payment is processing while Stripe has not confirmed it', async () => {
    const user = newUser();
    const id = await server.createSession(user);
    await server.pay(id, 'processing');
    const { container } = renderKit(<CheckoutReturn sessionId={id} pollInterval={0} />, server, { user });
    const status = await screen.findByText('Your payment is processing; the credits are added as soon as it clears.');
    expect(status).toHaveAttribute('role', 'status');
    expect(await axe(container)).toHaveNoViolations();
  });

  it("shows an error state for another user's session (the server answers 404)", async () => {
    const owner = newUser();
    const id = await server.createSession(owner);
    await server.pay(id);
    returnTo(id);
    const intruder = newUser();
    const { container } = renderKit(
      <>
        <BalanceBadge />
        <CheckoutReturn data-testid="return" />
      </>,
      server,
      { user: intruder },
    );
    expect(await screen.findByRole('alert')).toHaveTextContent('We could not find this purchase for your account.');
    expect(screen.getByTestId('return')).toHaveAttribute('data-state', 'error');
    expect(await axe(container)).toHaveNoViolations();
    await waitFor(() => expect(screen.getByText('0 credits')).toBeInTheDocument());
  });

  it('shows the same error state for a session that has no owner at all (a bare stripe-mock session)', async () => {
    // Not created through the kit, so stripe-mock's fixture answers alone: no owner metadata, so 404.
    returnTo('cs_test_not_from_this_app');
    renderKit(<CheckoutReturn />, server, { user: newUser() });
    expect(await screen.findByRole('alert')).toHaveTextContent('We could not find this purchase for your account.');
  });

  it('renders nothing when the URL has no session_id', async () => {
    const held = heldFetch(() => false);
    const { container } = renderKit(<CheckoutReturn />, server, { user: newUser(), fetch: held.fetch });
    await new Promise((r) => setTimeout(r, 50));
    expect(container).toBeEmptyDOMElement();
    expect(held.requests.filter((r) => r.url.includes('/stripe/checkout/session/'))).toHaveLength(0);
  });

  it('shows the server message for a malformed session id', async () => {
    renderKit(<CheckoutReturn sessionId="not-a-session" />, server, { user: newUser() });
    expect(await screen.findByRole('alert')).toHaveTextContent('That is not a Checkout Session id (cs_…).');
  });

  it('asks a signed-out visitor to sign in', async () => {
    returnTo('cs_test_abc');
    renderKit(<CheckoutReturn />, server, { user: null });
    expect(await screen.findByRole('alert')).toHaveTextContent('Sign in to use credits.');
  });
});
