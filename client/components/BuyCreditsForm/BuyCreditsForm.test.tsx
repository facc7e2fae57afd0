import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { createRef } from 'react';
import { BuyCreditsForm } from 'credit-kit/client';
import { heldFetch, isPost, newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

describe('BuyCreditsForm', () => {
  it('shows a loading state, then the total at the server price (10 cents a credit by default)', async () => {
    const held = heldFetch();
    const ref = createRef<HTMLFormElement>();
    const { container } = renderKit(<BuyCreditsForm ref={ref} className="buy" aria-label="Buy credits" />, server, {
      user: newUser(),
      fetch: held.fetch,
    });
    expect(screen.getByText('Loading prices…')).toBeInTheDocument();
    expect(ref.current).toHaveAttribute('data-state', 'loading');
    expect(await axe(container)).toHaveNoViolations();

    held.release();
    const input = await screen.findByRole('spinbutton', { name: 'Number of credits' });
    expect(input).toHaveValue(100);
    expect(input).toHaveAttribute('min', '5');
    expect(screen.getByRole('status')).toHaveTextContent('Total: $10.00');
    expect(ref.current).toHaveClass('buy', 'ck-form');
    expect(await axe(container)).toHaveNoViolations();

    await userEvent.clear(input);
    await userEvent.type(input, '250');
    expect(screen.getByRole('status')).toHaveTextContent('Total: $25.00');
    expect(screen.getByRole('button', { name: 'Buy 250 credits' })).toBeEnabled();
  });

  it('refuses a quantity outside the server limits', async () => {
    const { container } = renderKit(<BuyCreditsForm />, server, { user: newUser() });
    const input = await screen.findByRole('spinbutton', { name: 'Number of credits' });
    await userEvent.clear(input);
    await userEvent.type(input, '2');
    expect(input).toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByRole('status')).toHaveTextContent('Enter a whole number from 5 to 100,000.');
    expect(screen.getByRole('button', { name: 'Buy credits' })).toBeDisabled();
    expect(await axe(container)).toHaveNoViolations();
  });

  it('submits the quantity: pending (disabled, aria-busy), then redirected to Stripe', async () => {
    const user = newUser();
    const redirect = jest.fn();
    const held = heldFetch(isPost);
    const { container } = renderKit(<BuyCreditsForm defaultQuantity={40} redirect={redirect} />, server, { user, fetch: held.fetch });
    const button = await screen.findByRole('button', { name: 'Buy 40 credits' });
    expect(screen.getByRole('status')).toHaveTextContent('Total: $4.00');
    await userEvent.click(button);
    expect(button).toBeDisabled();
    expect(button).toHaveAttribute('aria-busy', 'true');
    expect(await axe(container)).toHaveNoViolations();
    expect(held.requests.find((r) => isPost(r.url, r.init))?.init?.body).toBe(JSON.stringify({ quantity: 40 }));
    held.release();
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    expect(redirect.mock.calls[0]?.[0]).toMatch(/^https:\/\/checkout\.stripe\.com\//);
    expect(await server.checkoutPosts(user)).toBe(1);
  });

  it('shows the checkout error with role="alert" (signed out: 401)', async () => {
    const onError = jest.fn();
    const { container } = renderKit(<BuyCreditsForm onError={onError} />, server, { user: null });
    await userEvent.click(await screen.findByRole('button', { name: 'Buy 100 credits' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Sign in to use credits.');
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ status: 401 }));
    expect(await axe(container)).toHaveNoViolations();
  });

  it('shows an error state when prices cannot be loaded', async () => {
    const { container } = renderKit(<BuyCreditsForm aria-label="Buy credits" />, server, { user: newUser(), apiBase: `${server.url}/test/broken` });
    expect(await screen.findByRole('alert')).toHaveTextContent('Prices could not be loaded: The server failed on purpose.');
    expect(await axe(container)).toHaveNoViolations();
  });
});
