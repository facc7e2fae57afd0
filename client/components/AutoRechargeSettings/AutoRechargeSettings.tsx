import { forwardRef, useEffect, useState, type FormEvent, type HTMLAttributes } from 'react';
import type { AutoRechargeSettings as Settings } from '../../core/types';
import { useAutoRecharge } from '../../hooks/use-auto-recharge';
import { usePricing } from '../../hooks/use-credits';
import { cx, formatNumber, formatPrice } from '../cx';

export type AutoRechargeSettingsProps = Omit<HTMLAttributes<HTMLFormElement>, 'onSubmit'> & {
  /** Sends the browser to Stripe's card-saving page. Default `window.location.assign(url)`. */
  redirect?: (url: string) => void;
  /** Called with the settings the server holds after a save. */
  onSaved?: (settings: Settings) => void;
};

const CUSTOM = '';

const SKIPPED: Record<string, string> = { monthly_cap: 'this month’s limit is reached', cooldown: 'too soon after the last one' };

/** What the last attempt did, in words. */
export function describeRecharge(s: Settings): string {
  const r = s.lastResult;
  let text = 'No automatic top-up yet.';
  if (r) {
    const what = `${formatNumber(r.credits)} ${s.creditName} for ${formatPrice(r.amount, s.topUp?.currency ?? 'usd')}`;
    text =
      r.status === 'succeeded'
        ? `Last top-up: ${what}.`
        : r.status === 'skipped'
          ? `A top-up was skipped: ${SKIPPED[r.reason!] ?? r.reason}.`
          : `A top-up of ${what} ${r.status === 'declined' ? `was declined (${r.reason ?? 'card declined'})` : 'needs you to confirm it'}.`;
  }
  return s.state === 'paused' ? `${text} Auto-recharge is paused: save a card or turn it on again.` : text;
}

/**
 * Auto-recharge settings: on/off, the threshold, the top-up (a bundle or a number of credits), the card on
 * file (save, replace, remove), this month's use of the cap and the last result. Refusals are announced.
 */
export const AutoRechargeSettings = forwardRef<HTMLFormElement, AutoRechargeSettingsProps>(function AutoRechargeSettings(
  { redirect, onSaved, className, ...props },
  ref,
) {
  const { settings: s, error, isSaving, update, saveCard, removeCard } = useAutoRecharge();
  const { pricing } = usePricing();
  const [enabled, setEnabled] = useState(false);
  const [threshold, setThreshold] = useState('');
  const [bundle, setBundle] = useState(CUSTOM);
  const [credits, setCredits] = useState('');
  // The form starts from what the server holds, once it has answered.
  useEffect(() => {
    if (!s) return;
    setEnabled(s.enabled);
    setThreshold(s.threshold === null ? '' : String(s.threshold));
    setBundle(s.topUp?.bundle ?? CUSTOM);
    setCredits(s.topUp && !s.topUp.bundle ? String(s.topUp.credits) : '');
  }, [s]);

  if (!s) {
    return (
      <form ref={ref} className={cx('ck-recharge', className)} data-state="loading" aria-busy="true" {...props}>
        {error ? <p role="alert" className="ck-error">{error.message}</p> : <p className="ck-status">Loading auto-recharge…</p>}
      </form>
    );
  }
  const bundles = pricing?.bundles ?? [];
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const topUp = bundle !== CUSTOM ? { bundle } : credits !== '' ? { credits: Number(credits) } : {};
    void update({ enabled, ...(threshold !== '' ? { threshold: Number(threshold) } : {}), ...topUp }).then(onSaved, () => undefined);
  };
  const card = s.card;
  return (
    <form ref={ref} className={cx('ck-recharge', className)} data-state={s.state} aria-busy={isSaving || undefined} onSubmit={submit} {...props}>
      <p className="ck-recharge-card">
        {card ? `Card on file: ${card.brand} ending ${card.last4}, expires ${card.expMonth}/${card.expYear}.` : 'No card on file.'}{' '}
        <button type="button" className="ck-button" disabled={isSaving} onClick={() => void saveCard(redirect ? { redirect } : {}).catch(() => undefined)}>
          {card ? 'Replace card' : 'Save a card'}
        </button>
        {card && (
          <button type="button" className="ck-button" disabled={isSaving} onClick={() => void removeCard().catch(() => undefined)}>
            Remove card
          </button>
        )}
      </p>
      <label>
        <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Top up automatically
      </label>
      <label>
        When my balance falls below{' '}
        <input className="ck-input" type="number" inputMode="numeric" min={1} max={s.monthlyCap} step={1} value={threshold} onChange={(e) => setThreshold(e.target.value)} /> {s.creditName}
      </label>
      <label>
        Top up with{' '}
        <select className="ck-input" value={bundle} onChange={(e) => setBundle(e.target.value)}>
          {bundles.map((b) => (
            <option key={b.id} value={b.id}>
              {`${b.name ?? `${formatNumber(b.credits)} ${s.creditName}`} for ${formatPrice(b.price, pricing!.currency)}`}
            </option>
          ))}
          <option value={CUSTOM}>Another amount</option>
        </select>
      </label>
      {bundle === CUSTOM && (
        <label>
          {`${s.creditName[0]!.toUpperCase()}${s.creditName.slice(1)} to buy `}
          <input className="ck-input" type="number" inputMode="numeric" min={1} step={1} value={credits} onChange={(e) => setCredits(e.target.value)} />
        </label>
      )}
      <button type="submit" className="ck-button" disabled={isSaving}>
        Save
      </button>
      <p role="status" className="ck-status">
        {`${describeRecharge(s)} This month: ${formatNumber(s.month.credits)} of ${formatNumber(s.monthlyCap)} ${s.creditName}.`}
      </p>
      {error && (
        <p role="alert" className="ck-error">
          {error.message}
        </p>
      )}
    </form>
  );
});
