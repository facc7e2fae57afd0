import { render, renderHook, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import type { ReactElement } from 'react';
import {
  BalanceBadge,
  BuyCreditsButton,
  BuyCreditsForm,
  CheckoutReturn,
  CreditHistory,
  CreditsProvider,
  EmbeddedCheckout,
  InsufficientCredits,
  useCheckout,
  useCheckoutReturn,
  useCreditHistory,
  useCredits,
  useCreditsFetch,
  usePricing,
  type FetchLike,
} from 'credit-kit/client';
import { newUser, renderKit } from '../test/render';
import { startTestServer, type TestServer } from '../test/server';

const WRAP = /must be used inside <CreditsProvider>: wrap your app .* in <CreditsProvider apiBase="\/api">/;

describe('outside <CreditsProvider>', () => {
  let consoleError: jest.SpyInstance;
  // React reports the thrown error to console.error as well; the assertion is on the error itself.
  beforeEach(() => {
    consoleError = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => consoleError.mockRestore());

  const hooks: Array<[string, () => unknown]> = [
    ['useCredits', useCredits],
    ['usePricing', usePricing],
    ['useCreditsFetch', useCreditsFetch],
    ['useCheckout', () => useCheckout()],
    ['useCheckoutReturn', () => useCheckoutReturn()],
    ['useCreditHistory', () => useCreditHistory()],
  ];
  it.each(hooks)('%s throws a message saying to wrap the tree in <CreditsProvider>', (name, hook) => {
    expect(() => renderHook(hook)).toThrow(new RegExp(`^${name} ${WRAP.source}`));
  });

  const components: Array<[string, ReactElement]> = [
    ['BalanceBadge', <BalanceBadge key="a" />],
    ['BuyCreditsButton', <BuyCreditsButton key="b" quantity={100} />],
    ['BuyCreditsForm', <BuyCreditsForm key="c" />],
    ['CreditHistory', <CreditHistory key="d" />],
    ['CheckoutReturn', <CheckoutReturn key="e" />],
    ['EmbeddedCheckout', <EmbeddedCheckout key="f" stripe={null} quantity={100} />],
    ['InsufficientCredits', <InsufficientCredits key="g" insufficient={null} />],
  ];
  it.each(components)('<%s> throws the same message', (_name, element) => {
    expect(() => render(element)).toThrow(WRAP);
  });
});

describe('<CreditsProvider>', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  }, 60_000);
  afterAll(() => server?.close());

  it('defaults apiBase to /api and sends every request through the app fetch', async () => {
    const user = newUser();
    await server.grant(user, 12);
    const seen: string[] = [];
    // An app whose fetch adds its auth header and talks to its own origin (here, the fixture's).
    const appFetch: FetchLike = (input, init = {}) => {
      seen.push(String(input));
      const headers = new Headers(init.headers);
      headers.set('x-test-user', user);
      return fetch(`${server.url}${String(input)}`, { ...init, headers });
    };
    render(
      <CreditsProvider fetch={appFetch} swr={{ provider: () => new Map() }}>
        <BalanceBadge />
      </CreditsProvider>,
    );
    expect(await screen.findByText('12 credits')).toBeInTheDocument();
    expect(seen).toEqual(['/api/credits/balance']);
  });

  it('accepts an apiBase with a trailing slash', async () => {
    const user = newUser();
    await server.grant(user, 3);
    renderKit(<BalanceBadge />, server, { user, apiBase: `${server.apiBase}/` });
    expect(await screen.findByText('3 credits')).toBeInTheDocument();
  });

  it('useCredits().refresh() asks the server again', async () => {
    const user = newUser();
    await server.grant(user, 7);
    function Balance() {
      const { balance, creditName, refresh } = useCredits();
      return (
        <>
          <span>{balance === undefined ? '…' : `${balance} ${creditName}`}</span>
          <button type="button" onClick={() => void refresh()}>
            Refresh
          </button>
        </>
      );
    }
    renderKit(<Balance />, server, { user });
    await screen.findByText('7 credits');
    await server.grant(user, 1);
    await userEvent.click(screen.getByRole('button', { name: 'Refresh' }));
    await waitFor(() => expect(screen.getByText('8 credits')).toBeInTheDocument());
  });
});
