import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { useState } from 'react';
import { BalanceBadge, CreditHistory, InsufficientCredits, useCreditsFetch, type FetchLike } from 'credit-kit/client';
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

/** The app's fetch, counting what reaches the server; with `strip`, guarded answers lose the balance headers (a cross-origin API that does not expose them). */
function watched(strip = false, slowFirst = false): { fetch: FetchLike; balanceReads: () => number } {
  const urls: string[] = [];
  return {
    balanceReads: () => urls.filter((u) => u.endsWith('/credits/balance')).length,
    fetch: async (input, init) => {
      urls.push(String(input));
      const res = await fetch(input, init);
      // The first guarded answer arrives after the ones sent after it.
      if (slowFirst && init?.method === 'POST' && urls.filter((u) => u.includes('/api/summarize')).length === 1) await new Promise((r) => setTimeout(r, 300));
      if (!strip || !res.headers.has('credits-balance')) return res;
      const headers = new Headers(res.headers);
      headers.delete('credits-balance');
      headers.delete('credits-charged');
      return new Response(await res.arrayBuffer(), { status: res.status, headers });
    },
  };
}

/** A page with guarded actions, the balance and the history. */
function SpendPage({ url }: { url: string }) {
  const { fetch } = useCreditsFetch();
  const [status, setStatus] = useState('');
  const call = (path: string) => async () => setStatus(`${path} ${(await fetch(`${url}${path}`, { method: 'POST' })).status}`);
  const twice = async () => {
    await Promise.all([fetch(`${url}/api/summarize`, { method: 'POST' }), fetch(`${url}/api/summarize`, { method: 'POST' })]);
    setStatus('both answered');
  };
  return (
    <main>
      <BalanceBadge />
      <button type="button" onClick={call('/api/summarize')}>Summarize</button>
      <button type="button" onClick={call('/api/chat?used=7')}>Chat</button>
      <button type="button" onClick={call('/api/chat?fail=1')}>Chat fails</button>
      <button type="button" onClick={twice}>Summarize twice</button>
      <output>{status}</output>
      <CreditHistory />
    </main>
  );
}

const historyLabels = () => within(screen.getByRole('table')).getAllByRole('row').slice(1).map((r) => within(r).getAllByRole('cell')[1]!.textContent);

describe('useCreditsFetch and the balance headers', () => {
  /** A user holding `balance`, on the page (its balance shown), and how many balance reads that took. */
  const open = async (balance: number, strip = false, slowFirst = false) => {
    const user = newUser();
    await server.grant(user, balance);
    const app = watched(strip, slowFirst);
    renderKit(<SpendPage url={server.url} />, server, { user, fetch: app.fetch });
    await screen.findByText(`${balance} credits`);
    return { user, app };
  };
  /** A spend the page does not see: another tab, another device. */
  const elsewhere = (user: string) => fetch(`${server.url}/api/ai`, { method: 'POST', headers: { 'x-test-user': user } });

  it('shows the balance a guarded answer carries, without asking the balance route again, and the label in the history', async () => {
    const { app } = await open(30);
    await screen.findByRole('table');
    const reads = app.balanceReads();

    await userEvent.click(screen.getByRole('button', { name: 'Summarize' }));
    expect(await screen.findByText('/api/summarize 200')).toBeInTheDocument();
    expect(await screen.findByText('25 credits')).toBeInTheDocument();
    await waitFor(() => expect(historyLabels()).toEqual(['Summarize', 'Grant']));

    // Metered: reserved 20, settled at 7 before the answer; the header says 25 - 7 = 18.
    await userEvent.click(screen.getByRole('button', { name: 'Chat' }));
    expect(await screen.findByText('18 credits')).toBeInTheDocument();
    await waitFor(() => expect(historyLabels()).toEqual(['Adjustment for Chat', 'Chat', 'Summarize', 'Grant']));
    expect(app.balanceReads()).toBe(reads);
  });

  it('shows the balance after the give-back of a failed answer, spends elsewhere included', async () => {
    const { user, app } = await open(30);
    const reads = app.balanceReads();
    expect((await elsewhere(user)).status).toBe(200); // 20 left on the server; the page still shows 30

    await userEvent.click(screen.getByRole('button', { name: 'Chat fails' }));
    expect(await screen.findByText('/api/chat?fail=1 500')).toBeInTheDocument();
    expect(await screen.findByText('20 credits')).toBeInTheDocument();
    expect(app.balanceReads()).toBe(reads);
  });

  it("takes a 402 body's balance when the headers do not come through", async () => {
    const { user, app } = await open(12, true);
    const reads = app.balanceReads();
    expect((await elsewhere(user)).status).toBe(200); // 2 left

    await userEvent.click(screen.getByRole('button', { name: 'Summarize' }));
    expect(await screen.findByText('/api/summarize 402')).toBeInTheDocument();
    expect(await screen.findByText('2 credits')).toBeInTheDocument();
    expect(app.balanceReads()).toBe(reads);
  });

  it('asks once more after calls that overlapped, so an answer that came late does not leave its older balance shown', async () => {
    const { app } = await open(30, false, true);
    const reads = app.balanceReads();
    await userEvent.click(screen.getByRole('button', { name: 'Summarize twice' }));
    expect(await screen.findByText('both answered')).toBeInTheDocument();
    await waitFor(() => expect(app.balanceReads()).toBe(reads + 1));
    expect(await screen.findByText('20 credits')).toBeInTheDocument();
  });

  it('asks the balance route again when an answer carries no balance at all', async () => {
    const { app } = await open(30, true);
    const reads = app.balanceReads();

    await userEvent.click(screen.getByRole('button', { name: 'Summarize' }));
    expect(await screen.findByText('25 credits')).toBeInTheDocument();
    expect(app.balanceReads()).toBe(reads + 1);
  });
});
