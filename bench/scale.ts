/**
 * The scale section of `npm run bench` on its own: a guarded request's cost at growing account counts, and
 * history pages in a long ledger (bench/lib/scale.ts), on the embedded server unless MONGODB_URI is set.
 *
 *   npx tsx bench/scale.ts [accounts...]     default 1000 100000 1000000; BENCH_LEDGER_ENTRIES (100000)
 */
import { startEmbeddedMongo } from '../tools/embedded';
import { measureScale, renderScale } from './lib/scale';

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const accounts = process.argv.slice(2).map(Number);
  if (accounts.length === 0) accounts.push(1_000, 100_000, 1_000_000);
  if (accounts.some((n, i) => !Number.isSafeInteger(n) || n < 1 || (i > 0 && n <= accounts[i - 1]!))) {
    throw new Error('account counts must be whole, positive and growing, e.g. 1000 100000 1000000');
  }
  const ledgerEntries = Number(process.env.BENCH_LEDGER_ENTRIES ?? 100_000);
  const embedded = process.env.MONGODB_URI ? undefined : await startEmbeddedMongo();
  try {
    const uri = process.env.MONGODB_URI ?? embedded!.uri;
    const rows = await measureScale({ uri, accounts, ledgerEntries, samples: 200, log });
    process.stdout.write(renderScale(rows, embedded ? 'the embedded server (FerretDB v1.24.2, patched, behind the gate)' : 'MONGODB_URI'));
  } finally {
    await embedded?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
