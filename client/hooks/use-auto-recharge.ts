import { useCallback, useState } from 'react';
import useSWR from 'swr';
import { CreditsRequestError } from '../core/errors';
import { autoRechargeKey } from '../core/keys';
import type { AutoRechargeAction, AutoRechargeChange, AutoRechargeSettings } from '../core/types';
import { useCreditsContext } from '../provider/context';

export interface UseAutoRechargeResult {
  /** GET /credits/auto-recharge: settings, card on file, state, last result; undefined until it answers. */
  settings: AutoRechargeSettings | undefined;
  isLoading: boolean;
  /** The last failure: of loading, or of a change (a refused setting says why, `error.message`). */
  error: CreditsRequestError | undefined;
  /** True while a change is being sent. */
  isSaving: boolean;
  /** PUT the change; resolves with the settings the server now holds (rejects, and sets `error`, when refused). */
  update(change: AutoRechargeChange): Promise<AutoRechargeSettings>;
  /** DELETE: turns auto-recharge off (the card stays on file). */
  disable(): Promise<AutoRechargeSettings>;
  /** Starts the card-saving Checkout and sends the browser to it. */
  saveCard(options?: { redirect?: (url: string) => void }): Promise<void>;
  /** Removes the card on file (and turns auto-recharge off). */
  removeCard(): Promise<AutoRechargeSettings>;
  /** GET /credits/auto-recharge/action: what Stripe.js needs to authenticate a payment, or null when none waits. */
  action(): Promise<AutoRechargeAction | null>;
  refresh(): Promise<void>;
}

/** The signed-in user's auto-recharge: what it is set to, and the calls that change it. */
export function useAutoRecharge(): UseAutoRechargeResult {
  const { api, revalidate } = useCreditsContext('useAutoRecharge');
  const key = autoRechargeKey(api.base);
  const { data, error, isLoading, mutate } = useSWR<AutoRechargeSettings, CreditsRequestError>(key, () =>
    api.get<AutoRechargeSettings>('/credits/auto-recharge'),
  );
  const [failure, setFailure] = useState<CreditsRequestError | undefined>();
  const [isSaving, setSaving] = useState(false);

  const run = useCallback(
    async (method: string, path: string, body?: unknown): Promise<AutoRechargeSettings> => {
      setSaving(true);
      setFailure(undefined);
      try {
        const next = await api.send<AutoRechargeSettings>(method, path, body);
        await mutate(next, { revalidate: false });
        return next;
      } catch (err) {
        const e = err instanceof CreditsRequestError ? err : new CreditsRequestError(0, 'internal', String(err));
        setFailure(e);
        throw e;
      } finally {
        setSaving(false);
      }
    },
    [api, mutate],
  );

  const update = useCallback((change: AutoRechargeChange) => run('PUT', '/credits/auto-recharge', change), [run]);
  const disable = useCallback(() => run('DELETE', '/credits/auto-recharge'), [run]);
  const removeCard = useCallback(() => run('DELETE', '/credits/auto-recharge/card'), [run]);
  const saveCard = useCallback(
    async ({ redirect = (url: string) => window.location.assign(url) }: { redirect?: (url: string) => void } = {}) => {
      setSaving(true);
      setFailure(undefined);
      try {
        const { url } = await api.post<{ id: string; url: string | null }>('/credits/auto-recharge/card', {});
        if (!url || !/^https?:\/\//i.test(url)) throw new CreditsRequestError(200, 'bad_response', 'The server did not return a URL to save the card.');
        redirect(url);
      } catch (err) {
        setSaving(false);
        const e = err instanceof CreditsRequestError ? err : new CreditsRequestError(0, 'internal', String(err));
        setFailure(e);
        throw e;
      }
    },
    [api],
  );
  const action = useCallback(async () => {
    try {
      return await api.get<AutoRechargeAction>('/credits/auto-recharge/action');
    } catch (err) {
      if (err instanceof CreditsRequestError && err.status === 404) return null;
      throw err;
    }
  }, [api]);
  const refresh = useCallback(async () => {
    await Promise.all([mutate(), revalidate()]);
  }, [mutate, revalidate]);

  return { settings: data, isLoading, error: failure ?? error, isSaving, update, disable, saveCard, removeCard, action, refresh };
}

/**
 * The user's auto-recharge threshold while auto-recharge is on (the badge's low state), from the same cache
 * entry as useAutoRecharge; `enabled: false` asks nothing.
 */
export function useAutoRechargeThreshold(enabled: boolean): number | undefined {
  const { api } = useCreditsContext('BalanceBadge');
  const { data } = useSWR<AutoRechargeSettings, CreditsRequestError>(enabled ? autoRechargeKey(api.base) : null, () =>
    api.get<AutoRechargeSettings>('/credits/auto-recharge'),
  );
  return data?.enabled && data.threshold !== null ? data.threshold - 1 : undefined;
}
