/**
 * `npm run test:next`: the Next.js example in Debian's Chromium, driven by playwright-core.
 *
 * It installs the example as a clean clone would (`npm ci` in examples/next, which packs the kit from this
 * checkout), builds it with `next build` (skipped when nothing the build reads has changed since the last
 * one: the hash of its inputs is kept in .next/), starts it with `npm start`'s launcher (launch.ts: the
 * embedded database, the Stripe simulator, `next start`) on a free port with a fresh data directory, then
 * buys credits through the simulator, streams a metered answer, stops one mid-stream, and checks the exact
 * balance and history after each step.
 *
 *   CHROMIUM=/path/to/chromium     another browser binary (default /usr/bin/chromium)
 *   NEXT_EXAMPLE_SKIP_INSTALL=1    use examples/next/node_modules as it is (no npm ci)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { expectBalance, historyRows, launchChromium, payOnSimulator, startApp, walkthrough, watchErrors, type AppProcess } from '../../../tools/browser-walkthrough';
import { CHAT_RESERVE, chatCost } from '../lib/chat';
import { simulatedAnswer } from '../lib/model';

const APP = join(__dirname, '..');
const ROOT = join(APP, '..', '..');
const FAILURES = join(ROOT, 'test-results', 'next');
const SHOTS = FAILURES;
const BUILD_HASH = join(APP, '.next', 'credit-kit-e2e-inputs.sha256');
const STEP_TIMEOUT = 60_000;
const WAIT = 15_000;

// The two questions and what the simulated model answers them (lib/model.ts): the whole of the first, and
// the first paragraph of the second, after which the model pauses and the test stops it.
const SHORT_QUESTION = 'What are credits?';
const LONG_QUESTION = 'Tell me more in detail';
const shortAnswer = simulatedAnswer(SHORT_QUESTION);
const firstParagraph = simulatedAnswer(LONG_QUESTION).filter((_, i, all) => i < all.findIndex((t, j) => j > 0 && t.delayMs > 1_000));

/** The output of the last command run (npm ci, next build), until the app runs. */
let commandOutput: string[] | undefined;
let app: AppProcess | undefined;
let dataDir: string | undefined;
let browser: Browser | undefined;
let page: Page;
const pageErrors: string[] = [];
const step = walkthrough({ failures: FAILURES, page: () => page, output: () => app?.output ?? commandOutput, timeoutMs: STEP_TIMEOUT });

/** `npm start`'s launcher on a free port with the given data directory. */
async function startExample(dir: string): Promise<AppProcess> {
  const started = Date.now();
  const running = await startApp('The Next.js example', [require.resolve('tsx/cli', { paths: [APP] }), join(APP, 'launch.ts')], {
    cwd: APP,
    env: { PORT: '0', EXAMPLE_DATA_DIR: dir },
    unset: ['EXAMPLE_PUBLIC_URL', 'EXAMPLE_SESSION_SECRET'],
    timeoutMs: 240_000,
  });
  console.log(`started in ${((Date.now() - started) / 1000).toFixed(1)} s at ${running.url}`);
  return running;
}

/** Runs a command in examples/next, its output kept for a failure's diagnostics; rejects on a non-zero exit. */
async function run(label: string, command: string, args: string[]): Promise<number> {
  const started = Date.now();
  const output: string[] = (commandOutput = []);
  // Not npm's own variables of `npm run test:next`: they would point the inner npm at the repository's root.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  const child = spawn(command, args, { cwd: APP, env: { ...env, NEXT_TELEMETRY_DISABLED: '1', CI: process.env.CI ?? '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) stream.on('data', (b: Buffer) => output.push(...b.toString().split('\n').filter(Boolean)));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${label} failed (exit ${code}):\n${output.slice(-40).join('\n')}`);
  return Date.now() - started;
}

/** Everything `next build` reads: the app's own files, its lockfile, and the kit as installed (its dist/). */
function buildInputsHash(): string {
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else hash.update(relative(APP, path)).update('\0').update(readFileSync(path)).update('\0');
    }
  };
  for (const dir of ['app', 'components', 'lib', 'node_modules/credit-kit']) walk(join(APP, dir));
  for (const file of ['package-lock.json', 'next.config.ts', 'tsconfig.json', 'instrumentation.ts']) hash.update(file).update(readFileSync(join(APP, file)));
  return hash.digest('hex');
}

step('installs the example (npm ci, the kit packed from this checkout)', async () => {
  if (process.env.NEXT_EXAMPLE_SKIP_INSTALL === '1' && existsSync(join(APP, 'node_modules', 'next'))) return;
  const ms = await run('npm ci in examples/next', 'npm', ['ci', '--no-audit', '--no-fund']);
  console.log(`npm ci in examples/next: ${(ms / 1000).toFixed(1)} s`);
}, 600_000);

step('builds it with next build (once for the same inputs)', async () => {
  const inputs = buildInputsHash();
  if (existsSync(join(APP, '.next', 'BUILD_ID')) && existsSync(BUILD_HASH) && readFileSync(BUILD_HASH, 'utf8') === inputs) {
    console.log('next build: skipped, nothing it reads changed since the last build');
    return;
  }
  const ms = await run('next build', process.execPath, [require.resolve('next/dist/bin/next', { paths: [APP] }), 'build']);
  await writeFile(BUILD_HASH, inputs);
  console.log(`next build: ${(ms / 1000).toFixed(1)} s`);
}, 600_000);

step('starts it (embedded database, Stripe simulator, next start) and Chromium', async () => {
  // This run's pictures replace the last run's.
  await mkdir(SHOTS, { recursive: true });
  for (const file of await readdir(SHOTS)) if (/^\d\d-[\w-]+\.png$/.test(file)) await rm(join(SHOTS, file));
  dataDir = await mkdtemp(join(tmpdir(), 'credit-kit-next-e2e-'));
  app = await startExample(dataDir);
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US', timezoneId: 'UTC' });
  context.setDefaultTimeout(WAIT);
  page = await context.newPage();
  // The 402 of the last step is expected; Chromium logs it as a failed resource.
  watchErrors(page, pageErrors, /status of 402/);
}, 300_000);

after(async () => {
  await browser?.close().catch(() => undefined);
  await app?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

let shotNumber = 0;
/** Saves NN-name.png in test-results/next/. */
async function shot(name: string): Promise<void> {
  shotNumber++;
  await page.screenshot({ path: join(SHOTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`), fullPage: true });
}

const history = (): Locator => page.getByRole('region', { name: 'History' });
const chatStatus = (): Locator => page.getByTestId('chat-status');

step('signs in and sees the balance badge', async () => {
  await page.goto(app!.url);
  await page.getByRole('heading', { name: 'A streaming chat paid with prepaid credits' }).waitFor();
  await page.getByLabel('Your name').fill('Ada');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as Ada').waitFor();
  await expectBalance(page, '0 credits (low balance)');
});

step('buys 100 credits through the simulated checkout', async () => {
  await page.getByRole('button', { name: 'Buy 100 credits' }).click();
  await payOnSimulator(page, '$10.00', 'pays');
  await page.waitForURL(/\/success\?session_id=cs_test_sim_/);
  await page.getByText('100 credits added. Your balance is 100.').waitFor();
  await expectBalance(page, '100 credits');
  await history().locator('tbody tr').first().filter({ hasText: 'Purchase' }).waitFor();
  assert.deepEqual(await historyRows(history()), [{ type: 'Purchase', amount: '+100', balance: '100' }]);
  await shot('bought');
});

step('streams a metered answer: reserves 30, settles 1 credit per 2 tokens', async () => {
  const charged = chatCost(shortAnswer.length);
  assert.equal(charged, 10); // 20 tokens
  await page.getByLabel('Your question').fill(SHORT_QUESTION);
  await page.getByRole('button', { name: `Ask · reserves ${CHAT_RESERVE} credits` }).click();
  // Streamed: the answer is seen part-way before it is complete.
  await chatStatus().filter({ hasText: /^Streaming… ([1-9]|1\d) tokens$/ }).waitFor();
  await chatStatus().filter({ hasText: `${shortAnswer.length} tokens · reserved ${CHAT_RESERVE}, charged ${charged} · balance 90` }).waitFor();
  assert.equal(await page.getByTestId('answer').textContent(), shortAnswer.map((t) => t.text).join(''));
  await expectBalance(page, '90 credits');
  await history().locator('tbody tr').first().filter({ hasText: 'Adjustment for usage' }).waitFor();
  assert.deepEqual(await historyRows(history()), [
    { type: 'Adjustment for usage', amount: `+${CHAT_RESERVE - charged}`, balance: '90' },
    { type: 'Usage', amount: `−${CHAT_RESERVE}`, balance: '70' },
    { type: 'Purchase', amount: '+100', balance: '100' },
  ]);
  await shot('answered');
});

step('stops an answer mid-stream: charged only the tokens delivered', async () => {
  const tokens = firstParagraph.length;
  const charged = chatCost(tokens);
  assert.deepEqual([tokens, charged], [22, 11]);
  await page.getByLabel('Your question').fill(LONG_QUESTION);
  await page.getByRole('button', { name: `Ask · reserves ${CHAT_RESERVE} credits` }).click();
  // The model pauses after its first paragraph (lib/model.ts); Stop during the pause.
  await chatStatus().filter({ hasText: new RegExp(`^Streaming… ${tokens} tokens$`) }).waitFor();
  await page.getByRole('button', { name: 'Stop' }).click();
  const balance = 90 - charged;
  await chatStatus().filter({ hasText: `Stopped after ${tokens} tokens · reserved ${CHAT_RESERVE}, charged ${charged} · balance ${balance}` }).waitFor();
  assert.equal(await page.getByTestId('answer').textContent(), firstParagraph.map((t) => t.text).join(''));
  await expectBalance(page, `${balance} credits`);
  const rows = await historyRows(history());
  assert.deepEqual(rows.slice(0, 2), [
    { type: 'Adjustment for usage', amount: `+${CHAT_RESERVE - charged}`, balance: String(balance) },
    { type: 'Usage', amount: `−${CHAT_RESERVE}`, balance: String(90 - CHAT_RESERVE) },
  ]);
  // The server saw the stop and settled what it had sent (its log says which signal told it first).
  assert.ok(
    app!.output.some((l) => l.includes(`chat stopped`) && l.includes(`after ${tokens} of`) && l.includes(`settled ${charged}; balance ${balance}`)),
    app!.output.slice(-10).join('\n'),
  );
  await shot('stopped');
});

step('the history adds up to the balance, on the page and from the kit’s route', async () => {
  const rows = await historyRows(history());
  const sum = rows.map((r) => Number(r.amount.replace('−', '-').replace('+', ''))).reduce((a, b) => a + b, 0);
  assert.equal(sum, 79, JSON.stringify(rows));
  const balance = await page.evaluate(async () => ((await (await fetch('/api/credits/balance')).json()) as { balance: number }).balance);
  assert.equal(balance, 79);
});

step('keeps the balance, the history and the sign-in across a restart', async () => {
  // Off the page first: the restarted app listens on another port, and the old one may by then be the
  // simulator's, which would answer the page's requests with 404s.
  await page.goto('about:blank');
  await app!.stop();
  app = await startExample(dataDir!);
  await page.goto(app.url);
  await page.getByText('Signed in as Ada').waitFor();
  await expectBalance(page, '79 credits');
  await history().locator('tbody tr').nth(4).waitFor();
  assert.equal((await historyRows(history())).length, 5);
});

step('someone with no credits is offered to buy them (402)', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Your name').fill('Grace');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as Grace').waitFor();
  await expectBalance(page, '0 credits (low balance)');
  await page.getByRole('button', { name: `Ask · reserves ${CHAT_RESERVE} credits` }).click();
  const offer = page.locator('.ck-insufficient');
  await offer.getByText(`This needs ${CHAT_RESERVE} credits; your balance is 0.`).waitFor();
  await offer.getByRole('button', { name: /^Buy/ }).waitFor();
  assert.equal(await page.getByTestId('answer').textContent(), '');
  await expectBalance(page, '0 credits (low balance)');
  assert.equal(await history().locator('tbody tr').count(), 0);
  await shot('insufficient');
});

step('shows no errors in the browser console', async () => {
  assert.deepEqual(pageErrors, []);
});
