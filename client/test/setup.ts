/**
 * Runs before every client test file: jest-dom matchers, jest-axe's toHaveNoViolations and, inside
 * jsdom (which has no fetch of its own), undici's fetch, so the kit talks to a real server over HTTP.
 */
import '@testing-library/jest-dom';
import { toHaveNoViolations } from 'jest-axe';

expect.extend(toHaveNoViolations);

if (typeof globalThis.fetch !== 'function') installUndiciFetch();

/**
 * undici runs here inside jsdom's global scope, which differs from Node's in three ways it notices:
 * - some web globals are missing: Node's own are lent (jsdom's stay in charge wherever it has one);
 * - jsdom's setTimeout returns a number, and undici calls `.unref()` and `.refresh()` on its timers: the
 *   id is boxed in an object with those methods, which jsdom's clearTimeout still accepts (it converts
 *   the box back to the id with valueOf);
 * - jsdom's performance has no markResourceTiming, which undici reports to.
 * Each test file gets its own connection pool, closed after the file, so no socket outlives its test.
 */
function installUndiciFetch(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const lend: Record<string, unknown> = {
    ...(require('node:util') as Record<string, unknown>),
    ...(require('node:stream/web') as Record<string, unknown>),
    ...(require('node:buffer') as Record<string, unknown>),
    ...(require('node:timers') as Record<string, unknown>),
  };
  for (const name of ['TextEncoder', 'TextDecoder', 'ReadableStream', 'WritableStream', 'TransformStream', 'Blob', 'File', 'setImmediate', 'clearImmediate']) {
    if (!(name in globalThis) && lend[name]) Object.assign(globalThis, { [name]: lend[name] });
  }

  const domSetTimeout = globalThis.setTimeout;
  const domClearTimeout = globalThis.clearTimeout;
  function boxedSetTimeout(handler: TimerHandler, delay?: number, ...args: unknown[]) {
    let id = domSetTimeout(handler, delay, ...args);
    const timer = {
      valueOf: () => id,
      ref: () => timer,
      unref: () => timer,
      hasRef: () => false,
      refresh() {
        domClearTimeout(id);
        id = domSetTimeout(handler, delay, ...args);
        return timer;
      },
    };
    return timer;
  }
  Object.assign(globalThis, { setTimeout: boxedSetTimeout });

  const perf = globalThis.performance as Performance & { markResourceTiming?: () => void };
  perf.markResourceTiming ??= () => undefined;

  const undici = require('undici') as typeof import('undici');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const agent = new undici.Agent();
  afterAll(() => agent.close());
  const fetch = (input: Parameters<typeof undici.fetch>[0], init: Parameters<typeof undici.fetch>[1] = {}) =>
    undici.fetch(input, { ...init, dispatcher: agent });
  Object.assign(globalThis, {
    fetch,
    Headers: undici.Headers,
    Request: undici.Request,
    Response: undici.Response,
    FormData: undici.FormData,
  });
}
