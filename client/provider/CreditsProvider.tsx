import { useCallback, useMemo, useRef, type ReactNode } from 'react';
import { SWRConfig, useSWRConfig, type SWRConfiguration } from 'swr';
import { revalidateBalance } from '../core/keys';
import { createRequester, type FetchLike } from '../core/request';
import { CreditsContext, type CreditsContextValue } from './context';

export interface CreditsProviderProps {
  /** Where the app mounted credits.router(). Default `/api`. */
  apiBase?: string;
  /** A fetch to use instead of the global one, for apps that add auth headers or talk to another origin. */
  fetch?: FetchLike;
  /** SWR options for the kit's requests (`provider`, `dedupingInterval`, `revalidateOnFocus`, ...). */
  swr?: SWRConfiguration;
  children?: ReactNode;
}

/** Gives the kit's hooks and components the API location and a shared cache. */
export function CreditsProvider({ swr, ...props }: CreditsProviderProps) {
  // SWR's config goes outside so that `mutate` below belongs to the cache the app chose.
  return (
    <SWRConfig value={swr ?? NO_CONFIG}>
      <KitProvider {...props} />
    </SWRConfig>
  );
}

const NO_CONFIG: SWRConfiguration = {};

function KitProvider({ apiBase = '/api', fetch, children }: Omit<CreditsProviderProps, 'swr'>) {
  const { mutate, cache } = useSWRConfig();
  const fetchRef = useRef(fetch);
  fetchRef.current = fetch;
  const api = useMemo(() => createRequester(apiBase, () => fetchRef.current), [apiBase]);
  const revalidate = useCallback(
    (balance?: number) => revalidateBalance(mutate, api.base, balance === undefined ? undefined : { cache, balance }),
    [mutate, cache, api],
  );
  const value = useMemo<CreditsContextValue>(() => ({ api, revalidate }), [api, revalidate]);
  return <CreditsContext.Provider value={value}>{children}</CreditsContext.Provider>;
}
