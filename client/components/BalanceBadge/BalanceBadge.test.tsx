import { act, screen } from '@testing-library/react';
import { axe } from 'jest-axe';
import { createRef } from 'react';
import { BalanceBadge } from 'credit-kit/client';
import { heldFetch, newUser, renderKit, UNREACHABLE_API } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

describe('BalanceBadge', () => {
  it('shows a loading state, then the granted balance with the credit name, in a polite live region', async () => {
    const user = newUser();
    await server.grant(user, 250);
    const held = heldFetch();
    const { container } = renderKit(<BalanceBadge data-testid="badge" />, server, { user, fetch: held.fetch });

    const badge = screen.getByTestId('badge');
    expect(badge).toHaveTextContent('Loading credits…');
    expect(badge).toHaveAttribute('aria-live', 'polite');
    expect(badge).toHaveAttribute('data-state', 'loading');
    expect(await axe(container)).toHaveNoViolations();

    held.release();
    expect(await screen.findByText('250 credits')).toBe(badge);
    expect(badge).toHaveAttribute('data-state', 'ok');
    expect(badge).not.toHaveAttribute('aria-busy');
    expect(await axe(container)).toHaveNoViolations();
  });

  it('says what expires next with showExpiry, and nothing more when nothing expires', async () => {
    const user = newUser();
    const dec1 = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 11, 1, 12));
    await server.grant(user, 80);
    await server.grant(user, 40, { expiresAt: dec1.toISOString(), source: 'promotion' });
    const { container } = renderKit(<BalanceBadge showExpiry data-testid="badge" />, server, { user });
    const label = dec1.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
    expect(await screen.findByText(`120 credits, 40 expire on ${label}`)).toBe(screen.getByTestId('badge'));
    expect(await axe(container)).toHaveNoViolations();

    const other = newUser();
    await server.grant(other, 7);
    renderKit(<BalanceBadge showExpiry />, server, { user: other });
    expect(await screen.findByText('7 credits')).toBeInTheDocument();
  });

  it('changes its look and text at or below the low-balance threshold', async () => {
    const user = newUser();
    await server.grant(user, 5);
    const { container } = renderKit(<BalanceBadge lowBalanceThreshold={10} />, server, { user });
    const badge = await screen.findByText('5 credits (low balance)');
    expect(badge).toHaveAttribute('data-state', 'low');
    expect(badge).toHaveClass('ck-badge', 'ck-badge--low');
    expect(await axe(container)).toHaveNoViolations();
  });

  it('asks a signed-out visitor to sign in (the server answers 401)', async () => {
    const { container } = renderKit(<BalanceBadge />, server, { user: null });
    const badge = await screen.findByText('Sign in to see your credits');
    expect(badge).toHaveAttribute('data-state', 'error');
    expect(await axe(container)).toHaveNoViolations();
  });

  it('says the balance could not be loaded when the server is unreachable', async () => {
    const { container } = renderKit(<BalanceBadge />, server, { user: newUser(), apiBase: UNREACHABLE_API });
    expect(await screen.findByText('Could not load your credits')).toHaveAttribute('data-state', 'error');
    expect(await axe(container)).toHaveNoViolations();
  });

  it('revalidates when the window regains focus', async () => {
    const user = newUser();
    await server.grant(user, 40);
    renderKit(<BalanceBadge />, server, { user });
    await screen.findByText('40 credits');
    await server.grant(user, 2);
    act(() => {
      window.dispatchEvent(new Event('focus'));
    });
    expect(await screen.findByText('42 credits')).toBeInTheDocument();
  });

  it('forwards its ref, className and native props', async () => {
    const ref = createRef<HTMLSpanElement>();
    renderKit(<BalanceBadge ref={ref} className="mine" title="Your balance" id="b" />, server, { user: newUser() });
    const badge = await screen.findByText('0 credits');
    expect(ref.current).toBe(badge);
    expect(badge).toHaveClass('mine', 'ck-badge');
    expect(badge).toHaveAttribute('title', 'Your balance');
    expect(badge.id).toBe('b');
  });
});
