import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { axe } from 'jest-axe';
import { createRef } from 'react';
import { ManageBillingButton, PlanPicker, SubscribeButton, usePlan, type CreditsRequestError } from 'credit-kit/client';
import { heldFetch, newUser, renderKit } from '../../test/render';
import { startTestServer, type TestServer } from '../../test/server';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(() => server?.close());

const STRIPE_URL = /^https:\/\//;

function PlanName() {
  const { subscription } = usePlan();
  return <output>{subscription ? (subscription.plan ?? 'none') : 'loading'}</output>;
}

describe('SubscribeButton', () => {
  it('is a native button that starts a subscription checkout, busy until the page leaves', async () => {
    const ref = createRef<HTMLButtonElement>();
    const held = heldFetch();
    const redirect = jest.fn();
    const { container } = renderKit(<SubscribeButton plan="pro" ref={ref} className="cta" redirect={redirect} />, server, { user: newUser(), fetch: held.fetch });
    const button = screen.getByRole('button', { name: 'Subscribe' });
    expect(ref.current).toBe(button);
    expect(button).toHaveClass('cta', 'ck-button');
    await userEvent.dblClick(button);
    expect(button).toBeDisabled();
    expect(button).toHaveAttribute('aria-busy', 'true');
    expect(await axe(container)).toHaveNoViolations();
    const posts = held.requests.filter((r) => r.init?.method === 'POST');
    expect(posts).toHaveLength(1);
    expect(posts[0]!.url).toBe(`${server.apiBase}/credits/subscribe`);
    expect(posts[0]!.init?.body).toBe(JSON.stringify({ plan: 'pro' }));
    expect(new Headers(posts[0]!.init?.headers).get('idempotency-key')).toMatch(/\S{8,}/);
    held.release();
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    expect(redirect.mock.calls[0]?.[0]).toMatch(STRIPE_URL);
  });

  it('shows the server’s refusal of an unknown plan with role="alert" and can be tried again', async () => {
    const onError = jest.fn<void, [CreditsRequestError]>();
    renderKit(<SubscribeButton plan="gold" onError={onError}>Go gold</SubscribeButton>, server, { user: newUser() });
    const button = screen.getByRole('button', { name: 'Go gold' });
    await userEvent.click(button);
    expect(await screen.findByRole('alert')).toHaveTextContent('Unknown plan "gold". Known plans: pro, team.');
    expect(onError.mock.calls[0]?.[0]).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(button).toBeEnabled();
  });
});

describe('ManageBillingButton', () => {
  it('says so when the user has nothing to manage, and opens the portal once subscribed', async () => {
    const user = newUser();
    const redirect = jest.fn();
    renderKit(<ManageBillingButton redirect={redirect} />, server, { user });
    await userEvent.click(screen.getByRole('button', { name: 'Manage billing' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(/no subscription to manage/);
    expect(redirect).not.toHaveBeenCalled();

    await fetch(`${server.apiBase}/credits/subscribe`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-test-user': user }, body: JSON.stringify({ plan: 'pro' }) });
    await server.subscribed(user);
    await userEvent.click(screen.getByRole('button', { name: 'Manage billing' }));
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));
    expect(redirect.mock.calls[0]?.[0]).toMatch(STRIPE_URL);
  });
});

describe('PlanPicker', () => {
  it('lists the plans with their allowance and rollover, subscribes, and shows the current plan once paid', async () => {
    const user = newUser();
    const redirect = jest.fn();
    const { container, rerender } = renderKit(
      <>
        <PlanPicker redirect={redirect} />
        <PlanName />
      </>,
      server,
      { user },
    );
    const list = await screen.findByRole('region', { name: 'Plans' });
    const items = within(list).getAllByRole('listitem');
    expect(items).toHaveLength(2);
    expect(items[0]).toHaveTextContent(/Pro.*1,000 credits.*up to 200 roll over/);
    expect(items[1]).toHaveTextContent(/Team.*5,000 credits/);
    expect(await axe(container)).toHaveNoViolations();
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('none'));

    await userEvent.click(within(list).getByRole('button', { name: 'Subscribe to Pro' }));
    await waitFor(() => expect(redirect).toHaveBeenCalledTimes(1));

    // Stripe's page is paid; back in the app, the picker asks again (a fresh mount, as after the redirect back).
    await server.subscribed(user);
    rerender(
      <>
        <PlanPicker key="back" redirect={redirect} />
        <PlanName key="back-name" />
      </>,
    );
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('pro'));
    const current = await screen.findByText(/Current plan · renews/);
    expect(current.closest('li')).toHaveAttribute('aria-current', 'true');
    expect(screen.queryByRole('button', { name: /Subscribe to/ })).toBeNull();
    expect(screen.getByRole('button', { name: 'Manage billing' })).toBeEnabled();
    expect(await axe(container)).toHaveNoViolations();
  });
});
