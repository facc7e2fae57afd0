/**
 * @jest-environment node
 */
/**
 * Server rendering (Next.js app router, Remix ...): the kit renders to HTML with no `window` at all, and
 * its entry carries the "use client" directive for React Server Components bundlers.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderToString } from 'react-dom/server';
import {
  BalanceBadge,
  BuyCreditsButton,
  BuyCreditsForm,
  CheckoutReturn,
  CreditHistory,
  CreditsProvider,
  EmbeddedCheckout,
  InsufficientCredits,
} from 'credit-kit/client';

describe('server rendering', () => {
  it('runs where there is no window', () => {
    expect(typeof window).toBe('undefined');
    expect(typeof document).toBe('undefined');
  });

  it('renders every component to HTML in its loading state, without touching window', () => {
    const html = renderToString(
      <CreditsProvider apiBase="/api">
        <BalanceBadge lowBalanceThreshold={5} />
        <BuyCreditsButton quantity={100} />
        <BuyCreditsForm />
        <CreditHistory />
        <CheckoutReturn />
        <EmbeddedCheckout stripe={null} quantity={100} />
        <InsufficientCredits insufficient={{ required: 10, balance: 2, message: '' }} />
      </CreditsProvider>,
    );
    expect(html).toContain('aria-live="polite"');
    expect(html).toContain('Loading credits…');
    expect(html).toContain('Buy 100 credits</button>');
    expect(html).toContain('Loading prices…');
    expect(html).toContain('Loading history…');
    expect(html).toContain('Loading checkout…');
    expect(html).toContain('This needs <!-- -->10<!-- --> <!-- -->credits');
    // CheckoutReturn reads the URL only in the browser; on the server it renders nothing.
    expect(html).not.toContain('ck-return');
  });

  it('marks the entry with "use client"', () => {
    const source = readFileSync(join(__dirname, '..', 'index.ts'), 'utf8');
    expect(source.startsWith("'use client';")).toBe(true);
  });
});
