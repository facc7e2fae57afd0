/**
 * `npm run test:e2e`: the demo's whole walkthrough in Debian's Chromium, driven by playwright-core.
 *
 * It starts the demo itself (`tsx demo/server.ts`, as `npm run demo` does) on a free port with a fresh
 * temporary data directory, so with its own embedded database and the Stripe Checkout simulator, and stops
 * it afterwards. Each step saves a screenshot to test-results/screenshots/, or with UPDATE_SCREENSHOTS=1 to
 * docs/screenshots/ (the README walkthrough shows them).
 *
 *   CHROMIUM=/path/to/chromium     another browser binary (default /usr/bin/chromium)
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import {
  expectBalance as expectBadge,
  historyRows as rowsOf,
  launchChromium,
  payOnSimulator as payOn,
  startApp,
  walkthrough,
  watchErrors,
  type AppProcess,
} from '../../tools/browser-walkthrough';

const ROOT = join(__dirname, '..', '..');
// The README's pictures are refreshed on purpose (UPDATE_SCREENSHOTS=1); an ordinary run keeps its own.
const SHOTS = process.env.UPDATE_SCREENSHOTS ? join(ROOT, 'docs', 'screenshots') : join(ROOT, 'test-results', 'screenshots');
const FAILURES = join(ROOT, 'test-results');
/** The first run may build the embedded database from source (about a minute). */
const START_TIMEOUT = 240_000;
const STEP_TIMEOUT = 60_000;
const WAIT = 15_000;

/** The demo as `npm run demo` starts it, on a free port with its own data directory. */
function startDemo(dataDir: string): Promise<AppProcess> {
  return startApp('The demo', [require.resolve('tsx/cli'), join(ROOT, 'demo', 'server.ts')], {
    cwd: ROOT,
    env: { PORT: '0', DEMO_DATA_DIR: dataDir },
    unset: ['DEMO_PUBLIC_URL', 'DEMO_SESSION_SECRET'],
    timeoutMs: START_TIMEOUT,
  });
}

// ---- the walkthrough -------------------------------------------------------------------------------------

let dataDir: string;
let demo: AppProcess | undefined;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];
let shotNumber = 0;
const step = walkthrough({ failures: FAILURES, page: () => page, output: () => demo?.output, timeoutMs: STEP_TIMEOUT });

step('starts the demo (embedded database, Stripe simulator) and Chromium', async () => {
  await mkdir(SHOTS, { recursive: true });
  // This run's pictures replace the last run's, so a renamed or removed step leaves none behind.
  for (const file of await readdir(SHOTS)) if (/^\d\d-[\w-]+\.png$/.test(file)) await rm(join(SHOTS, file));
  dataDir = await mkdtemp(join(tmpdir(), 'credit-kit-demo-e2e-'));
  demo = await startDemo(dataDir);
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'UTC' });
  context.setDefaultTimeout(WAIT);
  page = await context.newPage();
  // A 402 or 500 from the AI routes is part of the walkthrough; Chromium logs each as a failed resource.
  watchErrors(page, pageErrors, /status of (402|500)/);
}, START_TIMEOUT + 30_000);

after(async () => {
  await browser?.close().catch(() => undefined);
  await demo?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Saves NN-name.png in SHOTS, with `focus` scrolled into the middle of the view. */
async function shot(name: string, focus?: Locator): Promise<void> {
  if (focus) await focus.evaluate((el) => el.scrollIntoView({ block: 'center' }));
  else await page.evaluate(() => window.scrollTo(0, 0));
  await page.evaluate(() => document.fonts.ready);
  shotNumber++;
  await page.screenshot({ path: join(SHOTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`) });
}

const expectBalance = (text: string) => expectBadge(page, text);
const step3 = () => page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Use the AI' }) });
const step4 = () => page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'History' }) });

const historyRows = () => rowsOf(step4());
const payOnSimulator = (total: string, card: 'pays' | 'declined') => payOn(page, total, card);

step('opens the demo page, signed out', async () => {
  await page.goto(demo!.url);
  await page.getByRole('heading', { name: 'Prepaid credits for an AI app' }).waitFor();
  await page.getByText('Sign in first (step 1).').first().waitFor();
  await shot('signed-out');
});

step('1. signs in as a demo user and sees the balance badge', async () => {
  await page.getByLabel('Your name').fill('Ada');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
  await expectBalance('0 credits (low balance)');
  await shot('signed-in');
});

step('2. buys 100 credits with a chosen amount through the simulated checkout', async () => {
  const quantity = page.getByLabel('Number of credits');
  await quantity.fill('100');
  await page.getByText('Total: $10.00').waitFor();
  await page.getByRole('button', { name: 'Buy 100 credits', exact: true }).click();
  await page.waitForURL(/\/simulated-checkout\//);
  await page.getByText('Credits Bundle').waitFor();
  await shot('simulated-checkout');
  await payOnSimulator('$10.00', 'pays');
  await page.waitForURL(/\/success\?session_id=cs_test_sim_/);
  await page.getByText('100 credits added. Your balance is 100.').waitFor();
  await expectBalance('100 credits');
  await shot('purchase-confirmed');
});

step('3. summarizes for a fixed 20 credits', async () => {
  await page.getByRole('button', { name: 'Summarize · 20 credits' }).click();
  await step3().getByText('Charged 20 credits · balance 80').waitFor();
  await expectBalance('80 credits');
  await shot('summarized', step3());
});

step('3. analyzes: reserves 20 credits, settles 3 for 61 words', async () => {
  await page.getByRole('button', { name: 'Analyze · 3 credits' }).click();
  await step3().getByText('Reserved 20, charged 3, returned 17 · balance 77').waitFor();
  await expectBalance('77 credits');
  await shot('analyzed', step3());
});

step('3. a failed AI call is refunded', async () => {
  await page.getByRole('button', { name: 'Summarize, but the model fails' }).click();
  await step3().getByText('The summarizer model failed (simulated for the demo).').waitFor();
  await step3().getByText('Its credits were refunded').waitFor();
  await expectBalance('77 credits');
  await step4().locator('tbody tr').first().filter({ hasText: 'Refund' }).waitFor();
  const rows = await historyRows();
  assert.deepEqual(rows.slice(0, 2), [
    { type: 'Refund', amount: '+20', balance: '77' },
    { type: 'Usage', amount: '−20', balance: '57' },
  ]);
  await shot('refunded', step3().getByText('The AI call failed.'));
});

step('3. runs out of credits and sees the insufficient-credits state', async () => {
  for (const balance of [57, 37, 17]) {
    await page.getByRole('button', { name: 'Summarize · 20 credits' }).click();
    await step3().getByText(`Charged 20 credits · balance ${balance}`).waitFor();
  }
  await expectBalance('17 credits (low balance)');
  await page.getByRole('button', { name: 'Summarize · 20 credits' }).click();
  const insufficient = step3().locator('.ck-insufficient');
  await insufficient.getByText('This needs 20 credits; your balance is 17.').waitFor();
  await expectBalance('17 credits (low balance)');
  await shot('insufficient-credits', insufficient);
});

step('2. buys again: cancels once, then a declined card credits nothing, then a card that pays', async () => {
  await step3().locator('.ck-insufficient').getByRole('button', { name: 'Buy 100 credits' }).click();
  await page.waitForURL(/\/simulated-checkout\//);
  await page.getByText('$9.00').first().waitFor();
  await page.getByRole('link', { name: /Cancel and go back/ }).click();
  await page.waitForURL(/\/cancel$/);
  await page.getByText('Checkout cancelled. Nothing was charged.').waitFor();
  await expectBalance('17 credits (low balance)');
  await shot('checkout-cancelled');

  // The Starter bundle from step 2.
  await page.getByRole('button', { name: 'Buy 100', exact: true }).first().click();
  await payOnSimulator('$9.00', 'declined');
  await page.getByText('Your card was declined.').waitFor();
  await shot('card-declined');
  // Nothing was credited: the app still says 17 (checked through the kit's balance route).
  const balance = await page.evaluate(async () => (await (await fetch('/api/credits/balance')).json()) as { balance: number });
  assert.equal(balance.balance, 17);

  await payOnSimulator('$9.00', 'pays');
  await page.waitForURL(/\/success\?session_id=/);
  await page.getByText('100 credits added. Your balance is 117.').waitFor();
  await expectBalance('117 credits');
  await shot('bought-again');
});

step('4. the history lists every change and adds up to the balance', async () => {
  await page.getByRole('button', { name: 'Dismiss' }).click();
  await step4().getByRole('button', { name: 'Load more' }).click();
  await step4().getByRole('button', { name: 'Load more' }).waitFor({ state: 'detached' });
  const rows = await historyRows();
  const amounts = rows.map((r) => Number(r.amount.replace('−', '-').replace('+', '')));
  assert.equal(amounts.reduce((a, b) => a + b, 0), 117, `history: ${JSON.stringify(rows)}`);
  assert.deepEqual(
    rows.map((r) => r.type),
    ['Purchase', 'Usage', 'Usage', 'Usage', 'Refund', 'Usage', 'Adjustment for usage', 'Usage', 'Usage', 'Purchase'],
  );
  await shot('history', step4().getByRole('table'));
});

step('keeps the data across a restart of the demo', async () => {
  await demo!.stop();
  demo = await startDemo(dataDir);
  await page.goto(demo.url);
  await page.getByText('Signed in as').waitFor();
  await expectBalance('117 credits');
});

const plans = () => page.getByRole('region', { name: 'Plans' });
const expiry = () => page.getByTestId('expiry');

step('2. subscribes to the Pro plan next to the top-ups: 500 credits for the period', async () => {
  await plans().getByRole('button', { name: 'Subscribe to Pro plan' }).click();
  await page.waitForURL(/\/simulated-checkout\//);
  await page.getByText('Billed every 30 days (simulated)').waitFor();
  await shot('plan-checkout');
  await payOnSimulator('$19.00', 'pays');
  await page.waitForURL(/\/success\?session_id=/);
  await page.getByText('500 credits added. Your balance is 617.').waitFor();
  await expectBalance('617 credits');
  await plans().getByText(/Current plan · renews/).waitFor();
  await expiry().getByText(/^617 credits, 500 expire on /).waitFor();
  await page.getByRole('button', { name: 'Dismiss' }).click();
  await shot('subscribed', plans());
});

step('3. spends from the plan first: it expires, the purchased credits do not', async () => {
  await page.getByRole('button', { name: 'Summarize · 20 credits' }).click();
  await step3().getByText('Charged 20 credits · balance 597').waitFor();
  await expiry().getByText(/^597 credits, 480 expire on /).waitFor();
});

step('2. a month passes: the plan renews, 100 of the 480 unspent roll over, 380 expire', async () => {
  await page.getByRole('button', { name: 'A month passes (simulated)' }).click();
  await page.getByRole('status').filter({ hasText: 'the plan renewed' }).waitFor();
  // 117 purchased + the new period's 500 + 100 rolled over, both of which expire at the new period's end.
  await expectBalance('717 credits');
  await expiry().getByText(/^717 credits, 600 expire on /).waitFor();
  await shot('month-passed', plans());
});

step('2. manages billing: cancels in the portal; the plan runs to its end, its last rollover a period more', async () => {
  await plans().getByRole('button', { name: 'Manage billing' }).click();
  await page.waitForURL(/\/simulated-checkout\/portal\//);
  await page.getByRole('button', { name: 'Cancel plan' }).click();
  await page.getByText(/Cancelled: it ends on/).waitFor();
  await page.getByRole('link', { name: /Return to the demo/ }).click();
  await plans().getByText(/Current plan · ends/).waitFor();
  await expectBalance('717 credits');
  await page.getByRole('button', { name: 'A month passes (simulated)' }).click();
  await page.getByRole('status').filter({ hasText: 'the plan ended' }).waitFor();
  // The last period's rollover still applies: 100 of its 500 stay one more period, then expire; 117 were bought.
  await expectBalance('217 credits');
  await expiry().getByText(/^217 credits, 100 expire on /).waitFor();
  await plans().getByRole('button', { name: 'Subscribe to Pro plan' }).waitFor();
  await shot('plan-ended', plans());
});

const step5 = () => page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Auto-recharge' }) });

/** On the simulator's card-saving page: picks one of its three test cards and saves it. */
async function saveCardOnSimulator(card: RegExp): Promise<void> {
  await page.waitForURL(/\/simulated-checkout\//);
  await page.getByRole('heading', { name: 'Card details' }).waitFor();
  await page.getByRole('radio', { name: card }).check();
  await page.getByRole('button', { name: 'Save card' }).click();
  await page.waitForURL(/\/auto-recharge$/);
}

/** Summarizes until the balance shows `balance` (each costs 20). */
async function summarizeDownTo(balance: number, from: number): Promise<void> {
  for (let b = from - 20; b >= balance; b -= 20) {
    await page.getByRole('button', { name: 'Summarize · 20 credits' }).click();
    await step3().getByText(`Charged 20 credits · balance ${b}`).waitFor();
  }
}

step('5. saves a card that pays on the simulator and turns auto-recharge on', async () => {
  await step5().getByText('No card on file.').waitFor();
  await step5().getByRole('button', { name: 'Save a card' }).click();
  // The picture once the simulator's page has loaded (a screenshot during the navigation fails).
  await page.waitForURL(/\/simulated-checkout\//);
  await page.getByRole('heading', { name: 'Card details' }).waitFor();
  await shot('save-card-page');
  await saveCardOnSimulator(/Test card that pays/);
  await step5().getByText(/Card on file: visa ending 4242/).waitFor();
  await step5().getByRole('checkbox', { name: 'Top up automatically' }).check();
  await step5().getByRole('spinbutton', { name: /When my balance falls below/ }).fill('100');
  await step5().getByRole('combobox', { name: /Top up with/ }).selectOption('starter');
  await step5().getByRole('button', { name: 'Save', exact: true }).click();
  await step5().getByRole('status').filter({ hasText: 'This month: 0 of 2,000 credits.' }).waitFor();
  const settings = await page.evaluate(async () => (await (await fetch('/api/credits/auto-recharge')).json()) as { enabled: boolean; threshold: number });
  assert.deepEqual([settings.enabled, settings.threshold], [true, 100]);
  await shot('auto-recharge-on', step5());
});

step('5. a spend below the threshold tops up once from the saved card', async () => {
  await expectBalance('217 credits');
  await summarizeDownTo(97, 217); // 117 -> 97 crosses 100: one off-session payment of $9.00
  await step5().getByText('Last top-up: 100 credits for $9.00.', { exact: false }).waitFor();
  await expectBalance('197 credits');
  await step4().locator('tbody tr').first().filter({ hasText: 'Purchase' }).waitFor();
  await shot('auto-recharged', step5());
});

step('5. a card that needs authentication: the page completes it, then the credits arrive', async () => {
  await step5().getByRole('button', { name: 'Replace card' }).click();
  await saveCardOnSimulator(/needs authentication/);
  await step5().getByText(/Card on file: visa ending 3184/).waitFor();
  await summarizeDownTo(97, 197);
  const confirm = step5().getByRole('button', { name: 'Confirm payment' });
  await confirm.waitFor();
  await step5().getByText('An automatic top-up of 100 credits for $9.00 needs you to confirm it with your bank.').waitFor();
  await shot('auto-recharge-needs-authentication', step5());
  await confirm.click();
  await step5().getByText('Payment confirmed: your credits arrive in a moment.').waitFor();
  await expectBalance('197 credits');
});

step('5. a declined card: nothing is credited and the page says why', async () => {
  await step5().getByRole('button', { name: 'Replace card' }).click();
  await saveCardOnSimulator(/is declined/);
  await step5().getByText(/Card on file: visa ending 0002/).waitFor();
  await summarizeDownTo(97, 197);
  await step5().getByText('A top-up of 100 credits for $9.00 was declined (insufficient_funds).', { exact: false }).waitFor();
  await expectBalance('97 credits');
  const settings = await page.evaluate(async () => (await (await fetch('/api/credits/auto-recharge')).json()) as { state: string; month: { credits: number } });
  assert.deepEqual([settings.state, settings.month.credits], ['retrying', 200]);
  await shot('auto-recharge-declined', step5());
});

step('shows no errors in the browser console', async () => {
  assert.deepEqual(pageErrors, []);
});
