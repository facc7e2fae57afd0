import { forwardRef, type ButtonHTMLAttributes, type HTMLAttributes, type ReactNode } from 'react';
import { useBillingPortal, usePlan, usePlans, useSubscribe, type RedirectOptions } from '../../hooks/use-plans';
import { useCredits } from '../../hooks/use-credits';
import { cx, formatNumber, formatPrice } from '../cx';

type ButtonProps = Omit<ButtonHTMLAttributes<HTMLButtonElement>, 'onError'> & RedirectOptions & { children?: ReactNode };

/** A button bound to a redirecting action: disabled and aria-busy while pending, a failure beside it in role="alert". */
const ActionButton = forwardRef<
  HTMLButtonElement,
  ButtonProps & { action: { start(): Promise<void>; isPending: boolean; error: { message: string } | null }; label: string }
>(function ActionButton({ action, label, redirect: _r, onError: _e, children, className, disabled, onClick, type = 'button', ...props }, ref) {
  return (
    <>
      <button
        ref={ref}
        type={type}
        className={cx('ck-button', className)}
        disabled={disabled || action.isPending}
        aria-busy={action.isPending || undefined}
        onClick={(e) => {
          onClick?.(e);
          if (!e.defaultPrevented) void action.start();
        }}
        {...props}
      >
        {children ?? label}
      </button>
      {action.error && (
        <span role="alert" className="ck-error">
          {action.error.message}
        </span>
      )}
    </>
  );
});

export type SubscribeButtonProps = ButtonProps & {
  /** The plan id, as in the server's `plans` option. */
  plan: string;
};

/** A real <button> that starts Stripe Checkout for a subscription to `plan`. Default label: `Subscribe`. */
export const SubscribeButton = forwardRef<HTMLButtonElement, SubscribeButtonProps>(function SubscribeButton({ plan, ...props }, ref) {
  const { start, isPending, error } = useSubscribe(props);
  return <ActionButton ref={ref} {...props} label="Subscribe" action={{ start: () => start(plan), isPending, error }} />;
});

export type ManageBillingButtonProps = ButtonProps;

/** A real <button> that opens the Stripe customer portal (plan changes, payment method, cancellation). */
export const ManageBillingButton = forwardRef<HTMLButtonElement, ManageBillingButtonProps>(function ManageBillingButton(props, ref) {
  const action = useBillingPortal(props);
  return <ActionButton ref={ref} {...props} label="Manage billing" action={action} />;
});

export type PlanPickerProps = HTMLAttributes<HTMLElement> & RedirectOptions;

/**
 * The app's plans, each with its allowance and price, a subscribe button, and the user's current plan
 * marked (with its renewal or end date and a manage-billing button). While subscribed, other plans are
 * changed in the billing portal.
 */
export function PlanPicker({ redirect, onError, className, ...props }: PlanPickerProps) {
  const { plans, error } = usePlans();
  const { subscription } = usePlan();
  const { creditName } = useCredits();
  const current = subscription?.plan ?? null;
  if (error) return <p role="alert" className="ck-error">{error.message}</p>;
  if (!plans) return <p aria-busy="true" className={cx('ck-plans', className)}>Loading plans…</p>;
  const end = subscription?.plan ? subscription.currentPeriod?.end : undefined;
  return (
    <section aria-label="Plans" className={cx('ck-plans', className)} {...props}>
      <ul>
        {plans.map((p) => (
          <li key={p.id} aria-current={p.id === current || undefined} className="ck-plan">
            <strong>{p.label}</strong>{' '}
            <span>
              {formatNumber(p.credits)} {creditName}
              {` / ${p.interval ? (p.interval.count > 1 ? `${p.interval.count} ${p.interval.unit}s` : p.interval.unit) : 'period'}`}
              {p.amount !== null && p.currency ? ` · ${formatPrice(p.amount, p.currency)}` : ''}
              {p.rollover?.max ? ` · up to ${formatNumber(p.rollover.max)} roll over` : ''}
            </span>{' '}
            {p.id === current ? (
              <span className="ck-plan-status">
                Current plan
                {end && ` · ${subscription!.plan && subscription!.cancelAtPeriodEnd ? 'ends' : 'renews'} ${new Date(end).toLocaleDateString()}`}
              </span>
            ) : (
              !current && <SubscribeButton plan={p.id} redirect={redirect} onError={onError} aria-label={`Subscribe to ${p.label}`} />
            )}
          </li>
        ))}
      </ul>
      {current && <ManageBillingButton redirect={redirect} onError={onError} />}
    </section>
  );
}
