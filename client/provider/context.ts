import { createContext, useContext } from 'react';
import type { Requester } from '../core/request';

export interface CreditsContextValue {
  api: Requester;
  /**
   * Revalidates what a spend or purchase changes: the balance and the history. With a balance the server
   * just told (a guarded answer's header, a 402), shows it without asking again and revalidates the history.
   */
  revalidate(balance?: number): Promise<void>;
}

export const CreditsContext = createContext<CreditsContextValue | null>(null);

/** The provider's value; throws a message saying how to fix it when there is no <CreditsProvider> above. */
export function useCreditsContext(caller: string): CreditsContextValue {
  const value = useContext(CreditsContext);
  if (!value) {
    throw new Error(
      `${caller} must be used inside <CreditsProvider>: wrap your app (or the part of the tree that shows credits) ` +
        `in <CreditsProvider apiBase="/api">…</CreditsProvider>.`,
    );
  }
  return value;
}
