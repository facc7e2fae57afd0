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
/**
 * What an app that only shows a balance and sells bundles adds (the README's first React example): the
 * rest of the kit (plans, auto-recharge, history, embedded checkout) must tree-shake away, so a feature
 * added to the kit does not grow every app's bundle.
 */
export const STARTER_BUDGET_BYTES = 3500;
export const STARTER_IMPORTS = ['CreditsProvider', 'useCredits', 'BalanceBadge', 'BuyCreditsButton'] as const;
const ROOT = join(__dirname, '..');
const ENTRY = join(ROOT, 'client', 'index.ts');

/** The whole of credit-kit/client, or (`imports`) only those of its exports, as a bundler would keep them. */
export function clientBundleSize(imports?: readonly string[]): { minified: number; gzipped: number } {
  const result = buildSync({
    ...(imports
      ? { stdin: { contents: `export { ${imports.join(', ')} } from './client/index.ts';`, resolveDir: ROOT, loader: 'ts' as const } }
      : { entryPoints: [ENTRY] }),
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
  const report = (what: string, { minified, gzipped }: { minified: number; gzipped: number }, budget: number) => {
    const line = `${what}: ${minified} B minified, ${gzipped} B gzipped (budget ${budget} B)`;
    if (gzipped > budget) {
      console.error(`${line}: over budget by ${gzipped - budget} B.`);
      process.exitCode = 1;
    } else {
      console.log(line);
    }
  };
  report('credit-kit/client', clientBundleSize(), CLIENT_BUDGET_BYTES);
  report(`{ ${STARTER_IMPORTS.join(', ')} } alone`, clientBundleSize(STARTER_IMPORTS), STARTER_BUDGET_BYTES);
}
