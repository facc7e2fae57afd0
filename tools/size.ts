/**
 * `npm run size`: the gzipped size of credit-kit/client as an app's bundler would add it (minified ESM,
 * with React, SWR and Stripe.js left to the app). Exits non-zero above the budget.
 */
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { build } from 'esbuild';

const BUDGET = 6144;
const ENTRY = join(__dirname, '..', 'client', 'index.ts');

async function main(): Promise<void> {
  const result = await build({
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
  const gzipped = gzipSync(code, { level: 9 }).length;
  const line = `credit-kit/client: ${code.length} B minified, ${gzipped} B gzipped (budget ${BUDGET} B)`;
  if (gzipped > BUDGET) {
    console.error(`${line}: over budget by ${gzipped - BUDGET} B.`);
    process.exitCode = 1;
  } else {
    console.log(line);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
