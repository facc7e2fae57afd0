import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { createRef } from 'react';
import { CreditHistory, useCreditsFetch } from 'credit-kit/client';
import { heldFetch, newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

const rows = () => within(screen.getByRole('table')).getAllByRole('row').slice(1);
const cells = (row: HTMLElement) => within(row).getAllByRole('cell').map((c) => c.textContent);

describe('CreditHistory', () => {
  it('lists the ledger newest first, page by page, with a Load more button while older entries remain', async () => {
    const user = newUser();
    for (const amount of [10, 20, 30, 40, 50]) await server.grant(user, amount);
    const held = heldFetch();
    const ref = createRef<HTMLDivElement>();
    const { container } = renderKit(<CreditHistory pageSize={2} ref={ref} className="mine" />, server, { user, fetch: held.fetch });

    expect(screen.getByText('Loading history…')).toBeInTheDocument();
    expect(ref.current).toHaveAttribute('aria-busy', 'true');
    expect(await axe(container)).toHaveNoViolations();
    held.release();

    expect(await screen.findByRole('table', { name: 'Credit history' })).toBeInTheDocument();
    expect(ref.current).toHaveClass('mine', 'ck-history');
    expect(rows()).toHaveLength(2);
    const [newest, second] = rows();
    expect(cells(newest!).slice(1)).toEqual(['Grant', '+50', '150']);
    expect(cells(second!).slice(1)).toEqual(['Grant', '+40', '100']);
    const time = within(newest!).getByText((_, el) => el?.tagName === 'TIME');
    expect(new Date(time.getAttribute('datetime') ?? '').getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(await axe(container)).toHaveNoViolations();

    await userEvent.click(screen.getByRole('button', { name: 'Load more' }));
    await waitFor(() => expect(rows()).toHaveLength(4));
    await userEvent.click(screen.getByRole('button', { name: 'Load more' }));
    await waitFor(() => expect(rows()).toHaveLength(5));
    expect(rows().map((r) => cells(r)[2])).toEqual(['+50', '+40', '+30', '+20', '+10']);
    expect(rows().map((r) => cells(r)[3])).toEqual(['150', '100', '60', '30', '10']);
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();

    // Every request asked for pages of two, and the older ones with the cursor the server handed out.
    const urls = held.requests.map((r) => r.url).filter((u) => u.includes('/credits/transactions'));
    expect(urls.every((u) => u.includes('limit=2'))).toBe(true);
    expect(urls.some((u) => /cursor=\d+/.test(u))).toBe(true);
  });

  it('shows a spend made through useCreditsFetch on top, without a reload', async () => {
    const user = newUser();
    await server.grant(user, 25);
    function Page() {
      const { fetch } = useCreditsFetch();
      return (
        <>
          <button type="button" onClick={() => void fetch(`${server.url}/api/ai`, { method: 'POST' })}>
            Ask
          </button>
          <CreditHistory />
        </>
      );
    }
    renderKit(<Page />, server, { user });
    await waitFor(() => expect(rows()).toHaveLength(1));
    await userEvent.click(screen.getByRole('button', { name: 'Ask' }));
    await waitFor(() => expect(rows()).toHaveLength(2));
    expect(cells(rows()[0]!).slice(1)).toEqual(['Usage', '−10', '15']);
  });

  it('says so when there is nothing yet', async () => {
    const { container } = renderKit(<CreditHistory />, server, { user: newUser() });
    expect(await screen.findByText('No transactions yet.')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();
    expect(await axe(container)).toHaveNoViolations();
  });

  it('shows an error with role="alert" (signed out: 401)', async () => {
    const { container } = renderKit(<CreditHistory />, server, { user: null });
    expect(await screen.findByRole('alert')).toHaveTextContent('Sign in to use credits.');
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
    expect(await axe(container)).toHaveNoViolations();
  });
});
