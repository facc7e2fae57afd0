/**
 * What the browser walkthroughs share (the Express demo's, demo/e2e/walkthrough.test.ts, and the Next.js
 * example's, examples/next/e2e/chat.test.ts): the app as a child process, Debian's Chromium through
 * playwright-core, steps that stop at the first failure, and the kit's components and the Stripe
 * simulator's page as a person sees them.
 *
 *   CHROMIUM=/path/to/chromium     another browser binary (default /usr/bin/chromium)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// ---- the app, as a child process ----------------------------------------------------------------------------

export interface AppProcess {
  url: string;
  /** Everything it printed, line by line. */
  output: string[];
  stop(): Promise<void>;
}

/**
 * Starts `node args…` and resolves with the URL once it prints "Open http://… in your browser" (as
 * demo/server.ts and examples/next/launch.ts do when they are ready). The embedded database and the Stripe
 * simulator are used whatever the calling shell has set.
 */
export async function startApp(
  name: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number; /** More variables of the calling shell to leave out. */ unset?: string[] },
): Promise<AppProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  for (const key of ['MONGODB_URI', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', ...(options.unset ?? [])]) delete env[key];
  const child = spawn(process.execPath, args, {
    cwd: options.cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so a stuck app can be ended with everything it started
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in ${options.timeoutMs / 1000} s:\n${output.join('\n')}`)), options.timeoutMs);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        const m = /Open (http:\/\/\S+) in your browser/.exec(line);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    }
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready:\n${output.join('\n')}`));
    });
  });
  return { url, output, stop: () => stopProcess(child, exited) };
}

async function stopProcess(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 20_000).unref());
  if ((await Promise.race([exited, timer])) === 'timeout' && child.pid) {
    process.kill(-child.pid, 'SIGKILL');
    await exited;
  }
}

// ---- the browser ----------------------------------------------------------------------------------------

/** Debian's Chromium, headless, with nothing that reaches the network on its own. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`No Chromium at ${CHROMIUM}. Install Debian's (apt-get install -y chromium) or set CHROMIUM=/path/to/chromium.`);
  }
  // playwright's launch() gives the browser a fresh temporary profile (--user-data-dir) and removes it after.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Collects the page's uncaught errors and console errors, except failed resources with an `allowed` status. */
export function watchErrors(page: Page, errors: string[], allowed: RegExp): void {
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    const where = msg.location().url;
    if (msg.type() === 'error' && !allowed.test(msg.text())) errors.push(`console error: ${msg.text()}${where ? ` (${where})` : ''}`);
  });
}

// ---- steps ------------------------------------------------------------------------------------------------

/**
 * A walkthrough's `step(name, fn, timeout)`: a node:test test that, once one step has failed, skips the
 * rest (they depend on it); a failing step saves a screenshot to `failures` and prints the app's last lines.
 */
export function walkthrough(options: { failures: string; page: () => Page | undefined; output: () => string[] | undefined; timeoutMs: number }) {
  let broken: string | null = null;
  return function step(name: string, fn: () => Promise<void>, timeout = options.timeoutMs): void {
    test(name, { timeout }, async (t: TestContext) => {
      if (broken) {
        t.skip(`an earlier step failed: ${broken}`);
        return;
      }
      try {
        await fn();
      } catch (err) {
        broken = name;
        const page = options.page();
        await mkdir(options.failures, { recursive: true });
        const file = join(options.failures, `e2e-failure-${name.replace(/\W+/g, '-')}.png`);
        await page?.screenshot({ path: file, fullPage: true }).catch(() => undefined);
        t.diagnostic(`screenshot: ${file}`);
        t.diagnostic(`page URL: ${page?.url()}`);
        t.diagnostic(`last lines of the app's console:\n${options.output()?.slice(-25).join('\n')}`);
        throw err;
      }
    });
  };
}

// ---- the kit's components and the simulator's page --------------------------------------------------------

export const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Waits until the kit's BalanceBadge (data-testid="balance") reads exactly `text`, e.g. "80 credits". */
export async function expectBalance(page: Page, text: string): Promise<void> {
  await page.locator('[data-testid="balance"]', { hasText: new RegExp(`^${escapeRegExp(text)}$`) }).waitFor();
  assert.equal(await page.getByTestId('balance').textContent(), text);
}

/** The rows of the kit's CreditHistory table inside `scope`: kind, signed amount, balance after. */
export async function historyRows(scope: Locator): Promise<Array<{ type: string; amount: string; balance: string }>> {
  return scope.locator('tbody tr').evaluateAll((rows) =>
    rows.map((r) => {
      const cells = [...r.querySelectorAll('td')].map((td) => td.textContent ?? '');
      return { type: cells[1] ?? '', amount: cells[2] ?? '', balance: cells[3] ?? '' };
    }),
  );
}

/** On the simulated checkout page (demo/stripe-simulator.ts): checks what it shows, then pays with the given card. */
export async function payOnSimulator(page: Page, total: string, card: 'pays' | 'declined'): Promise<void> {
  await page.waitForURL(/\/simulated-checkout\/cs_test_sim_/);
  await page.getByText('Simulated Stripe Checkout.').waitFor();
  await page.getByLabel(card === 'pays' ? /Visa •••• 4242/ : /Visa •••• 0002/).check();
  await page.getByRole('button', { name: `Pay ${total}` }).click();
}
