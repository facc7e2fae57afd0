import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { createRef } from 'react';
import { AutoRechargeSettings, BalanceBadge } from 'credit-kit/client';
import { newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

const settingsOf = async (user: string) => (await fetch(`${server.apiBase}/credits/auto-recharge`, { headers: { 'x-test-user': user } })).json();

describe('AutoRechargeSettings', () => {
  it('offers to save a card, sending the browser to the setup page the server created', async () => {
    const user = newUser();
    const redirect = jest.fn();
    const ref = createRef<HTMLFormElement>();
    const { container } = renderKit(<AutoRechargeSettings ref={ref} redirect={redirect} aria-label="Auto-recharge" />, server, { user });
    expect(await screen.findByText(/No card on file\./)).toBeInTheDocument();
    expect(ref.current).toHaveAttribute('data-state', 'idle');
    expect(screen.getByRole('status')).toHaveTextContent('No automatic top-up yet. This month: 0 of 1,000 credits.');
    expect(await axe(container)).toHaveNoViolations();
    await userEvent.click(screen.getByRole('button', { name: 'Save a card' }));
    await waitFor(() => expect(redirect).toHaveBeenCalledWith(expect.stringMatching(/^https:\/\//)));
  });

  it('saves the settings, announces a refusal with nothing changed, and shows a top-up once it happened', async () => {
    const user = newUser();
    await server.saveCard(user);
    await server.grant(user, 300);
    const { container } = renderKit(<AutoRechargeSettings />, server, { user });
    expect(await screen.findByText(/Card on file: visa ending 4242/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('checkbox', { name: 'Top up automatically' }));
    const threshold = screen.getByRole('spinbutton', { name: /When my balance falls below/ });
    await userEvent.type(threshold, '250');
    // 2 credits cost 20 cents, below the minimum charge: the server refuses, and says why.
    await userEvent.type(screen.getByRole('spinbutton', { name: /Credits to buy/ }), '2');
    await userEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('"credits" must be a whole number from 5 to 1000');
    expect(await settingsOf(user)).toMatchObject({ enabled: false, threshold: null, topUp: null });

    await userEvent.selectOptions(screen.getByRole('combobox', { name: /Top up with/ }), 'starter');
    await userEvent.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(async () => expect(await settingsOf(user)).toMatchObject({ enabled: true, threshold: 250, topUp: { bundle: 'starter', credits: 100, amount: 900 } }));
    await waitFor(() => expect(screen.getByRole('button', { name: 'Save' })).toBeEnabled());
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
    expect(await axe(container)).toHaveNoViolations();

    // A spend through the threshold starts the payment; Stripe's verified event brings the credits.
    await server.spend(user, 100);
    await server.rechargeOutcome(user, 'succeeded');
    expect(await settingsOf(user)).toMatchObject({ state: 'idle', lastResult: { status: 'succeeded', credits: 100 } });
  });

  it('shows the last top-up, and the badge is low below the user\'s own threshold while auto-recharge is on', async () => {
    const user = newUser();
    await server.saveCard(user);
    await fetch(`${server.apiBase}/credits/auto-recharge`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-test-user': user },
      body: JSON.stringify({ enabled: true, threshold: 250, bundle: 'starter' }),
    });
    await server.grant(user, 300);
    await server.spend(user, 100); // 200: below 250, a top-up of 100 starts
    await server.rechargeOutcome(user, 'succeeded'); // 300
    await server.spend(user, 60); // 240: below again, within the month's cap: another one starts
    renderKit(
      <>
        <BalanceBadge lowBalanceThreshold="auto-recharge" data-testid="badge" />
        <AutoRechargeSettings />
      </>,
      server,
      { user },
    );
    const badge = screen.getByTestId('badge');
    await waitFor(() => expect(badge).toHaveTextContent('240 credits (low balance)'));
    expect(badge).toHaveAttribute('data-state', 'low');
    expect(await screen.findByRole('status')).toHaveTextContent('Last top-up: 100 credits for $9.00. This month: 200 of 1,000 credits.');
  });
});
