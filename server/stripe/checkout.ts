/**
 * Creating Checkout Sessions for credit bundles. The price is computed here, on the server, from the
 * resolved pricing; the client only says how many credits (or which bundle) it wants.
 */
import { createHash, randomUUID } from 'node:crypto';
import type Stripe from 'stripe';
import { CreditsError, InvalidRequestError, PaymentProviderError, describe } from '../errors';
import type { CreditBundle, NeutralOptions } from '../options';

export type CheckoutUi = 'hosted' | 'embedded';

export interface CheckoutRequest {
  credits: number;
  /** Charged total in the smallest currency unit. */
  total: number;
  bundle: CreditBundle | undefined;
  quantity: number | undefined;
  ui: CheckoutUi;
}

/** Metadata keys the kit writes on every session and payment intent it creates. */
export const METADATA = { userId: 'credit_kit_user_id', credits: 'credit_kit_credits', bundle: 'credit_kit_bundle' } as const;

const ALLOWED_FIELDS = new Set(['quantity', 'bundle', 'ui']);

/** Strict validation of the checkout body: anything unexpected is a 400 that names the problem. */
export function parseCheckoutBody(body: unknown, options: NeutralOptions): CheckoutRequest {
  const { pricing } = options;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequestError('The body must be a JSON object such as {"quantity": 100} or {"bundle": "starter"}.');
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!ALLOWED_FIELDS.has(key)) {
      throw new InvalidRequestError(
        `Unknown field "${key.slice(0, 40)}": send only "quantity" or "bundle" (and optionally "ui"); prices are set by the server.`,
        { field: key.slice(0, 40) },
      );
    }
  }
  const ui = fields.ui ?? 'hosted';
  if (ui !== 'hosted' && ui !== 'embedded') {
    throw new InvalidRequestError(`"ui" must be "hosted" or "embedded", got ${describe(ui)}.`, { field: 'ui' });
  }
  if (ui === 'embedded' && !options.publicUrl) {
    throw new CreditsError('not_configured', 'Embedded checkout needs the publicUrl option (or NEXT_PUBLIC_URL) for its return URL.');
  }

  if ('quantity' in fields && 'bundle' in fields) {
    throw new InvalidRequestError('Send either "quantity" or "bundle", not both.');
  }
  if ('bundle' in fields) {
    const id = fields.bundle;
    const bundle = typeof id === 'string' ? pricing.bundles.get(id) : undefined;
    if (!bundle) {
      const known = [...pricing.bundles.keys()];
      throw new InvalidRequestError(
        `Unknown bundle ${describe(id)}. ${known.length ? `Known bundles: ${known.join(', ')}.` : 'No bundles are offered; send "quantity".'}`,
        { field: 'bundle' },
      );
    }
    return { credits: bundle.credits, total: bundle.price, bundle, quantity: undefined, ui };
  }
  if (!('quantity' in fields)) {
    throw new InvalidRequestError('Send "quantity" (a whole number of credits) or "bundle" (a bundle id).');
  }
  const q = fields.quantity;
  if (typeof q !== 'number' || !Number.isSafeInteger(q) || q < pricing.minQuantity || q > pricing.maxQuantity) {
    throw new InvalidRequestError(
      `"quantity" must be a whole number from ${pricing.minQuantity} to ${pricing.maxQuantity}, got ${describe(q)}.`,
      { field: 'quantity', min: pricing.minQuantity, max: pricing.maxQuantity },
    );
  }
  const total = q * pricing.creditPriceCents;
  if (total < pricing.minimumChargeCents) {
    const least = Math.ceil(pricing.minimumChargeCents / pricing.creditPriceCents);
    throw new InvalidRequestError(
      `${q} credits cost ${total} cents, below the minimum charge of ${pricing.minimumChargeCents} cents; buy at least ${least}.`,
      { field: 'quantity', min: least },
    );
  }
  return { credits: q, total, bundle: undefined, quantity: q, ui };
}

export interface CreatedCheckout {
  id: string;
  url: string | null;
  clientSecret: string | null;
  livemode: boolean;
}

export async function createCheckoutSession(
  stripe: Stripe,
  options: NeutralOptions,
  userId: string,
  request: CheckoutRequest,
  clientKey: string | undefined,
): Promise<CreatedCheckout> {
  const { pricing, creditName } = options;
  const title = creditName.charAt(0).toUpperCase() + creditName.slice(1);
  const lineItem: Stripe.Checkout.SessionCreateParams.LineItem = request.bundle
    ? {
        price_data: {
          currency: pricing.currency,
          product_data: {
            name: request.bundle.name ?? `${title} Bundle`,
            description: `Bundle of ${request.credits} ${creditName}`,
          },
          unit_amount: request.bundle.price,
        },
        quantity: 1,
      }
    : {
        price_data: {
          currency: pricing.currency,
          product_data: { name: `${title} Bundle`, description: `Bundle of ${request.credits} ${creditName}` },
          unit_amount: pricing.creditPriceCents,
        },
        quantity: request.credits,
      };

  const metadata: Record<string, string> = { [METADATA.userId]: userId, [METADATA.credits]: String(request.credits) };
  if (request.bundle) metadata[METADATA.bundle] = request.bundle.id;

  if (!options.publicUrl) {
    throw new CreditsError('not_configured', 'Checkout needs the publicUrl option (or NEXT_PUBLIC_URL) for its return URLs.');
  }
  const params: Stripe.Checkout.SessionCreateParams = {
    mode: 'payment',
    line_items: [lineItem],
    client_reference_id: userId,
    metadata,
    payment_intent_data: { metadata },
  };
  if (request.ui === 'embedded') {
    params.ui_mode = 'embedded_page';
    params.return_url = `${options.publicUrl}${options.successPath}`;
  } else {
    params.success_url = `${options.publicUrl}${options.successPath}`;
    params.cancel_url = `${options.publicUrl}${options.cancelPath}`;
  }

  // The same click retried (same client key) creates one session; without a key every request is new.
  const idempotencyKey = clientKey
    ? `credit-kit-checkout-${createHash('sha256').update(JSON.stringify([userId, clientKey, request.credits, request.ui])).digest('hex')}`
    : `credit-kit-checkout-${randomUUID()}`;
  try {
    const session = await stripe.checkout.sessions.create(params, { idempotencyKey });
    return { id: session.id, url: session.url, clientSecret: session.client_secret, livemode: session.livemode };
  } catch (err) {
    throw new PaymentProviderError(err);
  }
}
