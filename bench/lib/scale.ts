/**
 * How a guarded request's cost grows with the number of accounts, and how history pages cost in a long
 * ledger, on one database in one run. Accounts and ledger entries are written straight into the kit's
 * collections in the shape the MongoDB store keeps them (balance = count = sum of the entries, journals
 * empty), since a million grants through the API would take most of an hour on the embedded server; every
 * measured operation then goes through the kit (a guarded HTTP request, `listTransactions`).
 *
 * Figures are medians of sequential operations, reported beside the smallest size's as ratios.
 */
import { performance } from 'node:perf_hooks';
import express from 'express';
import type { Collection } from 'mongodb';
import mongoose from 'mongoose';
import { createCredits } from 'credit-kit/server';
import { median, percentile, sortedCopy } from './measure';

export interface ScaleConfig {
  uri: string;
  /** Account counts, growing. */
  accounts: number[];
  /** Entries in the long ledger. */
  ledgerEntries: number;
  /** Sequential operations measured per row. */
  samples: number;
  log: (line: string) => void;
}

export interface ScaleRow {
  what: string;
  size: number;
  medianMs: number;
  p90Ms: number;
  /** medianMs over the first row of its group. */
  ratio: number;
}

const USER_HEADER = 'x-user-id';
/** The MongoDB store's documents (server/store/mongo-store.ts), as far as this bench writes them. */
type AccountDoc = { _id: string; balance: number; count: number; journal: unknown[] };
type LedgerDoc = { _id: string; userId: string; seq: number; balanceAfter: number; amount: number; kind: string; at: Date };
const BATCH = 10_000;

export async function measureScale(cfg: ScaleConfig): Promise<ScaleRow[]> {
  const dbName = `ck_scale_${Date.now().toString(36)}`;
  const connection = await mongoose.createConnection(cfg.uri, { dbName, maxPoolSize: 10, serverSelectionTimeoutMS: 5000 }).asPromise();
  const credits = createCredits({ connection, getUserId: (req) => req.get(USER_HEADER) ?? null, timeoutMs: 60_000 });
  await credits.init();
  const app = express();
  app.post('/ai', credits.requireCredits(1), (_req, res) => res.json({ ok: true }));
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/ai`;
  const native = connection.getClient().db(dbName);
  const accounts = native.collection<AccountDoc>('credit_accounts');
  const ledger = native.collection<LedgerDoc>('credit_ledger');
  const rows: ScaleRow[] = [];
  const guarded = (user: string) => fetch(url, { method: 'POST', headers: { [USER_HEADER]: user } }).then(async (r) => {
    if (r.status !== 200) throw new Error(`guarded request answered ${r.status}: ${await r.text()}`);
    await r.arrayBuffer();
  });

  try {
    // ---- accounts: 1,000 → 100,000 → 1,000,000 ----
    let have = 0;
    for (const size of cfg.accounts) {
      cfg.log(`scale: loading accounts ${have.toLocaleString('en')} → ${size.toLocaleString('en')}...`);
      for (let from = have; from < size; from += BATCH) {
        const n = Math.min(BATCH, size - from);
        await accounts.insertMany(
          Array.from({ length: n }, (_, i) => ({ _id: `a${from + i}`, balance: 1_000_000, count: 0, journal: [] })),
          { ordered: false },
        );
        if ((from + n) % 100_000 === 0) cfg.log(`scale:   ${(from + n).toLocaleString('en')} accounts`);
      }
      have = size;
      const pick = (i: number) => `a${(i * 7919 + 13) % size}`;
      await time(Math.min(20, cfg.samples), (i) => guarded(pick(i + 1_000_003))); // warm-up
      rows.push(row('guarded request (requireCredits(1), HTTP)', size, await time(cfg.samples, (i) => guarded(pick(i)))));
      cfg.log(`scale:   guarded request at ${size.toLocaleString('en')} accounts: median ${rows.at(-1)!.medianMs.toFixed(2)} ms`);
      await credits.flush();
    }

    // ---- a long ledger: one account with many entries, beside one with few ----
    cfg.log(`scale: writing a ledger of ${cfg.ledgerEntries.toLocaleString('en')} entries...`);
    const SHORT = 100;
    await writeLedger(ledger, accounts, 'short-ledger', SHORT);
    await writeLedger(ledger, accounts, 'long-ledger', cfg.ledgerEntries);
    const deep = String(Math.max(2, Math.floor(cfg.ledgerEntries / 100))); // a page 99 % of the way back
    // Fewer samples here: on the embedded server a history page scans the whole ledger collection.
    const samples = Math.max(5, Math.floor(cfg.samples / 20));
    const pageRows: Array<[string, (user: string, n: number) => Promise<unknown>]> = [
      ['history, newest page (listTransactions, 20 entries)', (user) => credits.listTransactions(user, { limit: 20 })],
      ['history, a page 99 % of the way back', (user, n) => credits.listTransactions(user, { limit: 20, cursor: user === 'long-ledger' ? deep : String(Math.ceil(n / 100) + 1) })],
      ['guarded request on the account', (user) => guarded(user)],
    ];
    for (const [what, op] of pageRows) {
      cfg.log(`scale: ${what} (${samples} each on the short and the long ledger)...`);
      const short = await time(samples, () => op('short-ledger', SHORT));
      const long = await time(samples, () => op('long-ledger', cfg.ledgerEntries));
      rows.push(row(`${what}: ${SHORT} entries`, SHORT, short));
      rows.push(row(`${what}: ${cfg.ledgerEntries.toLocaleString('en')} entries`, cfg.ledgerEntries, long, short));
      await credits.flush();
    }
  } finally {
    await credits.flush().catch(() => undefined);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await native.dropDatabase().catch(() => undefined);
    await connection.close();
  }
  // Ratios of the account rows are to the first (smallest) size.
  const first = rows.find((r) => r.what.startsWith('guarded request (requireCredits'));
  for (const r of rows) if (r.what.startsWith('guarded request (requireCredits') && first) r.ratio = r.medianMs / first.medianMs;
  return rows;
}

/** `n` entries of +1 for `userId`, as the mover leaves them: in the ledger, the account's journal empty. */
async function writeLedger(
  ledger: Collection<LedgerDoc>,
  accounts: Collection<AccountDoc>,
  userId: string,
  n: number,
): Promise<void> {
  const t0 = Date.now() - n * 1000;
  for (let from = 0; from < n; from += BATCH) {
    const count = Math.min(BATCH, n - from);
    await ledger.insertMany(
      Array.from({ length: count }, (_, i) => {
        const seq = from + i + 1;
        return { _id: `${userId}-e${seq}`, userId, seq, balanceAfter: seq, amount: 1, kind: 'grant', at: new Date(t0 + seq * 1000) };
      }),
      { ordered: false },
    );
  }
  await accounts.insertOne({ _id: userId, balance: n, count: n, journal: [] });
}

type Timing = { median: number; p90: number };

async function time(n: number, fn: (i: number) => Promise<unknown>): Promise<Timing> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    ms.push(performance.now() - t);
  }
  const sorted = sortedCopy([ms]);
  return { median: median(ms), p90: percentile(sorted, 0.9) };
}

function row(what: string, size: number, t: Timing, base?: Timing): ScaleRow {
  return { what, size, medianMs: t.median, p90Ms: t.p90, ratio: base ? t.median / base.median : 1 };
}

export function renderScale(rows: ScaleRow[], database: string): string {
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const lines = [
    '## Scale',
    '',
    `On ${database}. Medians of sequential operations; the ratio is to the first row of its group (the fewest accounts, or the short ledger).`,
    '',
    '| operation | size | median ms | p90 ms | ratio |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.what} | ${r.size.toLocaleString('en')} | ${fmt(r.medianMs)} | ${fmt(r.p90Ms)} | ${r.ratio.toFixed(2)}× |`),
    '',
  ];
  return lines.join('\n');
}
