import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { useState } from 'react';
import { BalanceBadge, InsufficientCredits, useCreditsFetch } from 'credit-kit/client';
import { newUser, renderKit } from '../test/render';
import { startTestServer, type TestServer } from '../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

/** An app page: a guarded "Ask" action (POST /api/ai, requireCredits(10)) next to the balance. */
function AskPage({ url, redirect }: { url: string; redirect?: (url: string) => void }) {
  const { fetch, insufficient, dismiss } = useCreditsFetch();
  const [answer, setAnswer] = useState<string>('');
  return (
    <main>
      <BalanceBadge />
      <button
        type="button"
        onClick={async () => {
          const res = await fetch(`${url}/api/ai`, { method: 'POST' });
          setAnswer(res.ok ? `answer ${((await res.json()) as { answer: number }).answer}` : `status ${res.status}`);
        }}
      >
        Ask
      </button>
      <output>{answer}</output>
      <InsufficientCredits insufficient={insufficient} onDismiss={dismiss} redirect={redirect} />
    </main>
  );
}

describe('useCreditsFetch', () => {
  it('lowers the balance shown after a spend, without a reload', async () => {
    const user = newUser();
    await server.grant(user, 30);
    renderKit(<AskPage url={server.url} />, server, { user });
    await screen.findByText('30 credits');

    await userEvent.click(screen.getByRole('button', { name: 'Ask' }));
    expect(await screen.findByText('answer 42')).toBeInTheDocument();
    expect(await screen.findByText('20 credits')).toBeInTheDocument();
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('shows the insufficient-credits state on a 402, with a buy action, and clears it on dismiss', async () => {
    const user = newUser();
    await server.grant(user, 3);
    const redirect = jest.fn();
    const { container } = renderKit(<AskPage url={server.url} redirect={redirect} />, server, { user });
    await screen.findByText('3 credits');

    await userEvent.click(screen.getByRole('button', { name: 'Ask' }));
    expect(await screen.findByText('status 402')).toBeInTheDocument();
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('This needs 10 credits; your balance is 3.');
    expect(await axe(container)).toHaveNoViolations();

    // The shortfall is 7 credits, which is above the server's minimum purchase of 5.
    await userEvent.click(screen.getByRole('button', { name: 'Buy 7 credits' }));
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    expect(redirect.mock.calls[0]?.[0]).toMatch(/^https:\/\/checkout\.stripe\.com\//);

    await userEvent.click(screen.getByRole('button', { name: 'Dismiss' }));
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
    expect(screen.getByText('3 credits')).toBeInTheDocument();
  });

  it('offers at least the minimum purchase when the shortfall is smaller, and clears the state after a success', async () => {
    const user = newUser();
    await server.grant(user, 8);
    renderKit(<AskPage url={server.url} />, server, { user });
    await screen.findByText('8 credits');

    await userEvent.click(screen.getByRole('button', { name: 'Ask' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('This needs 10 credits; your balance is 8.');
    expect(screen.getByRole('button', { name: 'Buy 5 credits' })).toBeInTheDocument();

    await server.grant(user, 10);
    await userEvent.click(screen.getByRole('button', { name: 'Ask' }));
    expect(await screen.findByText('answer 42')).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByRole('alert')).not.toBeInTheDocument());
    expect(await screen.findByText('8 credits')).toBeInTheDocument();
  });
});
