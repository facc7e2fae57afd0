/**
 * A React-only app, as the README writes one: tools/package.test.ts copies this file into a fresh app that
 * installed the packed credit-kit with react, react-dom and swr only (no express, no Stripe.js), compiles it
 * as an ES module and as CommonJS with tsc --strict, without skipLibCheck, and bundles it with esbuild.
 */
import { useState } from 'react';
import { createRoot } from 'react-dom/client';
import {
  BalanceBadge,
  BuyCreditsButton,
  CreditsProvider,
  EmbeddedCheckout,
  InsufficientCredits,
  useCredits,
  useCreditsFetch,
  type CreditsRequestError,
} from 'credit-kit/client';
import 'credit-kit/client/styles.css';

function Summarize() {
  const { fetch, insufficient, dismiss } = useCreditsFetch();
  const { balance } = useCredits();
  const [error, setError] = useState<CreditsRequestError | null>(null);
  return (
    <>
      <button onClick={() => void fetch('/api/summarize', { method: 'POST' })}>Summarize (5 of {balance ?? '…'} credits)</button>
      <InsufficientCredits insufficient={insufficient} onDismiss={dismiss} />
      {error && <p role="alert">{error.code === 'network_error' ? 'Offline' : error.message}</p>}
      <BuyCreditsButton quantity={100} onError={setError} />
    </>
  );
}

export function App() {
  return (
    <CreditsProvider apiBase="/api">
      <BalanceBadge lowBalanceThreshold={10} />
      <Summarize />
      <EmbeddedCheckout stripe={null} quantity={100} />
    </CreditsProvider>
  );
}

const root = typeof document === 'undefined' ? null : document.getElementById('root');
if (root) createRoot(root).render(<App />);
