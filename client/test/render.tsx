/**
 * Renders kit components the way an app does, inside <CreditsProvider>, against the fixture server:
 * a fresh SWR cache per render (no state leaks between tests) and the signed-in user sent as the
 * `x-test-user` header through the provider's `fetch` option, as an app adding auth headers would.
 */
import { randomUUID } from 'node:crypto';
import { render, type RenderOptions } from '@testing-library/react';
import type { ReactElement, ReactNode } from 'react';
import { CreditsProvider, type FetchLike } from 'credit-kit/client';
import type { TestServer } from './server';

export interface KitOptions {
  /** Signed-in user; null for signed out. */
  user: string | null;
  apiBase?: string;
  /** Wraps the real fetch (to hold a request, or to count them). */
  fetch?: FetchLike;
}

export const newUser = (): string => `u-${randomUUID()}`;

/** fetch with the test sign-in header added. */
export function signedInFetch(user: string | null, next: FetchLike = (input, init) => fetch(input, init)): FetchLike {
  return (input, init = {}) => {
    const headers = new Headers(init.headers);
    if (user) headers.set('x-test-user', user);
    return next(input, { ...init, headers });
  };
}

export function KitWrapper({ server, options, children }: { server: TestServer; options: KitOptions; children?: ReactNode }) {
  return (
    <CreditsProvider
      apiBase={options.apiBase ?? server.apiBase}
      fetch={signedInFetch(options.user, options.fetch)}
      swr={{ provider: () => new Map(), dedupingInterval: 0, focusThrottleInterval: 0, shouldRetryOnError: false }}
    >
      {children}
    </CreditsProvider>
  );
}

export function renderKit(ui: ReactElement, server: TestServer, options: KitOptions, renderOptions: Omit<RenderOptions, 'wrapper'> = {}) {
  return render(ui, {
    ...renderOptions,
    wrapper: ({ children }) => (
      <KitWrapper server={server} options={options}>
        {children}
      </KitWrapper>
    ),
  });
}

/**
 * A fetch that holds requests (every one, or those `hold` picks) until `release()` is called, so a
 * pending state can be observed; the requests then go to the real server.
 */
export function heldFetch(hold: (url: string, init: RequestInit | undefined) => boolean = () => true): { fetch: FetchLike; release(): void; requests: Array<{ url: string; init: RequestInit | undefined }> } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const requests: Array<{ url: string; init: RequestInit | undefined }> = [];
  return {
    requests,
    release: () => release(),
    fetch: async (input, init) => {
      requests.push({ url: String(input), init });
      if (hold(String(input), init)) await gate;
      return fetch(input, init);
    },
  };
}

export const isPost = (_url: string, init: RequestInit | undefined): boolean => init?.method === 'POST';

/** An address nothing listens on: requests to it fail like a network error. */
export const UNREACHABLE_API = 'http://127.0.0.1:9/api';
