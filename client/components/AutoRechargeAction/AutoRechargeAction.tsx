import { forwardRef, useState, type HTMLAttributes } from 'react';
import { useAutoRecharge } from '../../hooks/use-auto-recharge';
import { useLatest } from '../../hooks/use-latest';
import { cx, formatNumber, formatPrice } from '../cx';

/**
 * What the component needs of Stripe.js: a `Stripe` instance from `loadStripe` (@stripe/stripe-js) fits.
 * Declared here so that the kit's types compile in an app without it.
 */
export interface AutoRechargeStripe {
  handleNextAction(options: { clientSecret: string }): Promise<{ error?: { message?: string } }>;
}

export type AutoRechargeActionProps = HTMLAttributes<HTMLDivElement> & {
  /** A Stripe.js instance, or the promise `loadStripe(publishableKey)` returns. */
  stripe: AutoRechargeStripe | null | Promise<AutoRechargeStripe | null>;
  /** The card holder completed the authentication (the credits follow with Stripe's event). */
  onComplete?: () => void;
};

/**
 * When an automatic top-up needs the card holder (3-D Secure): says so, and on click fetches the payment's
 * client secret (GET /credits/auto-recharge/action, the owner only) and lets Stripe.js run the bank's step.
 * Renders nothing while no top-up waits for it.
 */
export const AutoRechargeAction = forwardRef<HTMLDivElement, AutoRechargeActionProps>(function AutoRechargeAction(
  { stripe, onComplete, className, ...props },
  ref,
) {
  const { settings: s, action, refresh } = useAutoRecharge();
  const [phase, setPhase] = useState<'idle' | 'busy' | 'done'>('idle');
  const [problem, setProblem] = useState<string | null>(null);
  const latest = useLatest(onComplete);
  if (!s || (s.state !== 'requires_action' && phase !== 'done')) return null;
  const r = s.lastResult;
  const confirm = async () => {
    setPhase('busy');
    setProblem(null);
    try {
      const [pending, client] = await Promise.all([action(), stripe]);
      if (!pending) throw new Error('This payment no longer needs confirming.');
      if (!client) throw new Error('Stripe.js did not load.');
      const { error } = await client.handleNextAction({ clientSecret: pending.clientSecret });
      if (error) throw new Error(error.message ?? 'The payment was not confirmed.');
      setPhase('done');
      latest.current?.();
      await refresh();
    } catch (err) {
      setPhase('idle');
      setProblem(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <div ref={ref} className={cx('ck-recharge-action', className)} data-state={phase} aria-busy={phase === 'busy' || undefined} {...props}>
      {phase === 'done' ? (
        <p role="status" className="ck-status">
          Payment confirmed: your {s.creditName} arrive in a moment.
        </p>
      ) : (
        <>
          <p className="ck-status">
            {`An automatic top-up${r ? ` of ${formatNumber(r.credits)} ${s.creditName} for ${formatPrice(r.amount, s.topUp?.currency ?? 'usd')}` : ''} needs you to confirm it with your bank.`}
          </p>
          <button type="button" className="ck-button" disabled={phase === 'busy'} onClick={() => void confirm()}>
            Confirm payment
          </button>
        </>
      )}
      {problem && (
        <p role="alert" className="ck-error">
          {problem}
        </p>
      )}
    </div>
  );
});
