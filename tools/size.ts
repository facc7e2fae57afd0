/**
 * `npm run size`: the gzipped size of credit-kit/client as an app's bundler would add it (minified ESM,
 * with React, SWR and Stripe.js left to the app). Exits non-zero above the budget. The benchmarks report the
 * same figure through clientBundleSize().
 */
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { buildSync } from 'esbuild';

/**
 * About 9 KiB: raised from 6 KiB when the balance headers (use-credits-fetch) and the grants breakdown
 * (useBalanceDetails, BalanceBadge showExpiry) came in, then from 6,400 B when subscriptions did (usePlans,
 * usePlan, useSubscribe, useBillingPortal, PlanPicker, SubscribeButton, ManageBillingButton: about 1 KB), then
 * from 7,200 B for auto-recharge (useAutoRecharge, AutoRechargeSettings, AutoRechargeAction, BalanceBadge's
 * low state from the settings: about 1.9 KiB).
 */
export const CLIENT_BUDGET_BYTES = 9200;
const ENTRY = join(__dirname, '..', 'client', 'index.ts');

export function clientBundleSize(): { minified: number; gzipped: number } {
  const result = buildSync({
    entryPoints: [ENTRY],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    jsx: 'automatic',
    external: ['react', 'react-dom', 'react/jsx-runtime', 'swr', 'swr/*', '@stripe/stripe-js'],
    write: false,
    logLevel: 'warning',
  });
  const code = result.outputFiles[0]?.contents;
  if (!code) throw new Error('esbuild produced no output.');
  return { minified: code.length, gzipped: gzipSync(code, { level: 9 }).length };
}

if (require.main === module) {
  const { minified, gzipped } = clientBundleSize();
  const line = `credit-kit/client: ${minified} B minified, ${gzipped} B gzipped (budget ${CLIENT_BUDGET_BYTES} B)`;
  if (gzipped > CLIENT_BUDGET_BYTES) {
    console.error(`${line}: over budget by ${gzipped - CLIENT_BUDGET_BYTES} B.`);
    process.exitCode = 1;
  } else {
    console.log(line);
  }
}
