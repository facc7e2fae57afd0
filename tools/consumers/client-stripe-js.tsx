/**
 * The React app once @stripe/stripe-js is installed: what loadStripe() resolves to fits EmbeddedCheckout.
 */
import { loadStripe } from '@stripe/stripe-js';
import { CreditsProvider, EmbeddedCheckout } from 'credit-kit/client';

const stripe = loadStripe('pk_test_placeholder');

export function Pay() {
  return (
    <CreditsProvider>
      <EmbeddedCheckout stripe={stripe} bundle="starter" onComplete={() => console.log('paid')} />
    </CreditsProvider>
  );
}
