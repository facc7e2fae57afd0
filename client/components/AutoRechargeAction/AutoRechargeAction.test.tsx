import { act, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { AutoRechargeAction, type AutoRechargeStripe } from 'credit-kit/client';
import { newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

/** A FAKE Stripe.js: records the client secret it is handed and answers as Stripe.js does once the bank's step is done. */
function fakeStripe(error?: string): AutoRechargeStripe & { secrets: string[] } {
  const secrets: string[] = [];
  return {
    secrets,
    handleNextAction: async ({ clientSecret }) => {
      secrets.push(clientSecret);
      return error ? { error: { message: error } } : {};
    },
  };
}

async function needingAction(): Promise<string> {
  const user = newUser();
  await server.saveCard(user);
  await fetch(`${server.apiBase}/credits/auto-recharge`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-test-user': user },
    body: JSON.stringify({ enabled: true, threshold: 100, credits: 200 }),
  });
  await server.grant(user, 150);
  await server.spend(user, 100);
  await server.rechargeOutcome(user, 'failed', 'authentication_required');
  return user;
}

describe('AutoRechargeAction', () => {
  it('renders nothing while no top-up waits for the card holder', async () => {
    const user = newUser();
    const { container } = renderKit(<AutoRechargeAction stripe={fakeStripe()} data-testid="action" />, server, { user });
    await act(() => new Promise((r) => setTimeout(r, 300))); // the settings have answered: idle
    expect(container).toBeEmptyDOMElement();
  });

  it('lets the card holder confirm a top-up that needs authentication, with the client secret only they get', async () => {
    const user = await needingAction();
    const stripe = fakeStripe();
    const onComplete = jest.fn();
    const { container } = renderKit(<AutoRechargeAction stripe={Promise.resolve(stripe)} onComplete={onComplete} />, server, { user });
    expect(await screen.findByText('An automatic top-up of 200 credits for $20.00 needs you to confirm it with your bank.')).toBeInTheDocument();
    expect(await axe(container)).toHaveNoViolations();
    await userEvent.click(screen.getByRole('button', { name: 'Confirm payment' }));
    expect(await screen.findByRole('status')).toHaveTextContent('Payment confirmed: your credits arrive in a moment.');
    expect(stripe.secrets).toEqual([expect.stringMatching(/_secret_/)]);
    expect(onComplete).toHaveBeenCalledTimes(1);
  });

  it('announces a confirmation that failed, and can be tried again', async () => {
    const user = await needingAction();
    renderKit(<AutoRechargeAction stripe={fakeStripe('Authentication failed.')} />, server, { user });
    await userEvent.click(await screen.findByRole('button', { name: 'Confirm payment' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Authentication failed.');
    await waitFor(() => expect(screen.getByRole('button', { name: 'Confirm payment' })).toBeEnabled());
  });
});
