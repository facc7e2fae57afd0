/**
 * The markdown report: the main table, ratios, database commands per request, overspend under contention,
 * CPU profile summary, memory soak, bundle size, notes derived from the figures, and the environment.
 */
import { relative } from 'node:path';
import type { BenchConfig } from '../run';
import type { Category, OperationCost, Path, ProfileSummary } from './measure';

export interface ScenarioRow {
  name: string;
  about: string;
  rps: number;
  roundRps: number[];
  p50: number;
  p99: number;
  errors: number;
  timeouts: number;
  non2xx: Map<number, number>;
  responses: number;
  received: number;
  /** All commands started during the timed runs (and the background work they caused), per request. */
  commandsPerRequest: number;
  blockingPerRequest: number;
  backgroundPerRequest: number;
  kinds: Array<{ kind: string; path: Path; perRequest: number; statementsPerRequest: number; bytesOutPerCommand: number; bytesInPerCommand: number }>;
  nodeCpuUsPerRequest: number;
  dbCpuUsPerRequest: number | null;
}

export interface Ratio {
  name: string;
  median: number;
  min: number;
  max: number;
  rounds: number;
}

export interface Report {
  config: BenchConfig;
  rows: ScenarioRow[];
  ratios: Ratio[];
  contention: Array<{
    kind: 'naive' | 'requireCredits';
    round: number;
    requests: number;
    succeeded: number;
    final: number;
    overspend: number;
  }>;
  costs: OperationCost[];
  profiles: Array<{ name: string; summary: ProfileSummary; requests: number; file: string }>;
  soak: { seconds: number; checkpoints: Array<{ atSeconds: number; requests: number; rps: number; heapUsed: number; rss: number }> };
  size: { minified: number; gzipped: number; source: string; line: string };
  checks: {
    /** Deliveries that reached the webhook apps (new purchases and replays). */
    webhookDeliveries: number;
    /** Purchases recorded as paid, those with exactly one purchase entry in the ledger, and the rest. */
    purchasesPaid: number;
    creditedOnce: number;
    creditedOtherwise: number;
    replayBalance: number;
    backgroundErrors: number;
    /** Ledger entries deleted between runs on the embedded database; null when not trimmed. */
    ledgerEntriesTrimmed: number | null;
  };
  database: string;
  embedded: boolean;
  environment: { date: string; machine: string; node: string; command: string; quick: boolean };
}

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const fix = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

const CATEGORY_ORDER: Category[] = [
  'credit-kit (server/)',
  'mongodb driver + bson',
  'mongoose',
  'express + other packages',
  'stripe-node',
  'node core',
  'load generator (autocannon)',
  'bench harness',
  'GC',
  'other',
];

export function renderReport(r: Report): string {
  const out: string[] = [];
  const c = r.config;

  out.push('## Benchmarks', '');
  out.push(
    `${c.rounds} measured rounds of ${c.seconds} s per scenario after a ${c.warmupSeconds} s warm-up, scenarios alternating ` +
      `(forward, then backward, ...); ${c.connections} keep-alive connections from autocannon in the same process; ` +
      `${c.users} funded users, one picked at random per request.${r.environment.quick ? ' **Quick mode (BENCH_QUICK=1): figures are rough.**' : ''}`,
    '',
  );

  out.push(
    '| scenario | req/s | p50 ms | p99 ms | errors / non-2xx | DB round trips / req | of which blocking + background | node CPU µs / req | DB CPU µs / req |',
    '| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |',
  );
  for (const x of r.rows) {
    const non2xx = [...x.non2xx.values()].reduce((a, b) => a + b, 0);
    const codes = [...x.non2xx.entries()].map(([code, n]) => `${n}×${code}`).join(', ');
    out.push(
      `| ${x.name} | ${int(x.rps)} | ${fix(x.p50, 1)} | ${fix(x.p99, 1)} | ${x.errors + x.timeouts} / ${non2xx}${codes ? ` (${codes})` : ''} | ` +
        `${fix(x.commandsPerRequest, 2)} | ${fix(x.blockingPerRequest, 2)} + ${fix(x.backgroundPerRequest, 2)} | ` +
        `${int(x.nodeCpuUsPerRequest)} | ${x.dbCpuUsPerRequest === null ? '–' : int(x.dbCpuUsPerRequest)} |`,
    );
  }
  out.push('');
  for (const x of r.rows) out.push(`- **${x.name}**: ${x.about}; req/s per round ${x.roundRps.map((v) => int(v)).join(', ')}.`);
  out.push('');

  out.push('Throughput ratios (median of the per-round ratios, each from two runs of the same round):', '');
  out.push('| ratio | median | range | goal |', '| --- | ---: | --- | --- |');
  for (const q of r.ratios) {
    const goal = q.name.startsWith('requireCredits / raw-op') ? (q.median >= 0.9 ? '≥ 0.9: met' : '≥ 0.9: **not met**') : '';
    out.push(`| ${q.name} | ${fix(q.median, 2)} | ${fix(q.min, 2)}–${fix(q.max, 2)} (${q.rounds} rounds) | ${goal} |`);
  }
  out.push('');

  out.push(
    `Database commands per request, by command (a separate run per scenario of a fixed number of requests, about ` +
      `${c.attributeSeconds} s worth, that ` +
      'records the async stack trace of every command the driver starts; a command issued from the journal move ' +
      '(`JournalMover`, on its own timer) or from the queue of work owed after an answer (`Background`) is background, anything else held up the response; ' +
      'a write command may carry several statements, e.g. a bulkWrite of upserts; bytes are the BSON sizes of the command sent and of its reply):',
    '',
  );
  out.push('| scenario | command | commands / req | statements / req | bytes sent / command | bytes back / command | path |', '| --- | --- | ---: | ---: | ---: | ---: | --- |');
  for (const x of r.rows) {
    if (x.kinds.length === 0) out.push(`| ${x.name} | (none) | 0 | 0 | | | |`);
    for (const k of [...x.kinds].sort((a, b) => (a.path === b.path ? b.perRequest - a.perRequest : a.path === 'blocking' ? -1 : 1))) {
      out.push(`| ${x.name} | \`${k.kind}\` | ${fix(k.perRequest, 2)} | ${fix(k.statementsPerRequest, 2)} | ${k.bytesOutPerCommand.toFixed(0)} | ${k.bytesInPerCommand.toFixed(0)} | ${k.path} |`);
    }
  }
  out.push('');

  if (r.contention.length > 0) {
    out.push(
      `Overspend under contention: one account holding ${c.contentionBalance} credits, ${c.contentionConnections} connections, ` +
        `${c.contentionRequests} requests of 1 credit each, same database:`,
      '',
    );
    out.push('| round | route | requests | let through | final balance | overspend |', '| --- | --- | ---: | ---: | ---: | ---: |');
    for (const k of r.contention) {
      out.push(`| ${k.round} | ${k.kind} | ${k.requests} | ${k.succeeded} | ${k.final} | ${k.overspend > 0 ? `**${k.overspend}**` : k.overspend} |`);
    }
    out.push('');
  }

  if (r.costs.length > 0) {
    out.push(
      'One operation by _id on collections of different sizes (median ms of sequential round trips, nothing else running ' +
        'in the bench; with an _id index the size should not matter):',
      '',
    );
    out.push('| documents | findOne | updateOne $inc | upsert, new _id | insertOne |', '| ---: | ---: | ---: | ---: | ---: |');
    for (const k of r.costs) {
      out.push(`| ${int(k.size)} | ${fix(k.findOne, 2)} | ${fix(k.updateOne, 2)} | ${fix(k.upsert, 2)} | ${fix(k.insertOne, 2)} |`);
    }
    out.push('');
  }

  if (r.profiles.length > 0) {
    out.push(
      'Where this process spends its time (V8 CPU profile, 250 µs sampling, one run each; µs of wall time per request; ' +
        'the load generator runs in this process too):',
      '',
    );
    out.push(`| category | ${r.profiles.map((p) => p.name).join(' | ')} |`, `| --- |${r.profiles.map(() => ' ---: |').join('')}`);
    const perReq = (p: Report['profiles'][number], cat: Category) => ((p.summary.byCategory.get(cat) ?? 0) * 1000) / p.requests;
    for (const cat of CATEGORY_ORDER) {
      if (r.profiles.every((p) => (p.summary.byCategory.get(cat) ?? 0) === 0)) continue;
      out.push(`| ${cat} | ${r.profiles.map((p) => int(perReq(p, cat))).join(' | ')} |`);
    }
    out.push(
      `| idle (waiting for the database) | ${r.profiles
        .map((p) => `${int(perReq(p, 'idle'))} (${fix((100 * (p.summary.byCategory.get('idle') ?? 0)) / p.summary.wallMs, 0)} %)`)
        .join(' | ')} |`,
    );
    out.push(`| requests profiled | ${r.profiles.map((p) => int(p.requests)).join(' | ')} |`, '');
    for (const p of r.profiles) {
      if (p.summary.topFunctions.length === 0) continue;
      out.push(
        `Most self time in credit-kit's own code, ${p.name}: ` +
          p.summary.topFunctions.map(([label, ms]) => `\`${label}\` ${int((ms * 1000) / p.requests)} µs/req`).join('; ') +
          `. Profile: \`${relative(process.cwd(), p.file)}\`.`,
        '',
      );
    }
  }

  if (r.soak.checkpoints.length > 1) {
    const first = r.soak.checkpoints[0]!;
    const last = r.soak.checkpoints[r.soak.checkpoints.length - 1]!;
    out.push(
      `Memory: requireCredits soak, ${r.soak.seconds} s, ${int(last.requests)} requests; heap used after a forced GC ` +
        `(after the kit's background work is flushed) went from ${mb(first.heapUsed)} to ${mb(last.heapUsed)} ` +
        `(${last.heapUsed >= first.heapUsed ? '+' : ''}${mb(last.heapUsed - first.heapUsed)}); rss ${mb(first.rss)} → ${mb(last.rss)}.`,
      '',
    );
    out.push('| at | requests | req/s in the segment | heap used after GC | rss |', '| ---: | ---: | ---: | ---: | ---: |');
    for (const k of r.soak.checkpoints) {
      out.push(`| ${fix(k.atSeconds, 0)} s | ${int(k.requests)} | ${int(k.rps)} | ${mb(k.heapUsed)} | ${mb(k.rss)} |`);
    }
    out.push('');
  }

  out.push(
    `Client bundle: credit-kit/client is **${int(r.size.gzipped)} B gzipped** (${int(r.size.minified)} B minified ESM, ` +
      `React, SWR and Stripe.js external), from ${r.size.source}.`,
    '',
  );

  out.push('Notes:', '', ...notes(r).map((n) => `- ${n}`), '');

  const e = r.environment;
  out.push(`Date: ${e.date}  `, `Machine: ${e.machine}  `, `Node: ${e.node}  `, `Database: ${r.database}  `, `Command: \`${e.command}\``, '');
  return out.join('\n');
}

function notes(r: Report): string[] {
  const row = (name: string) => r.rows.find((x) => x.name === name);
  const ratio = (name: string) => r.ratios.find((q) => q.name === name);
  const n: string[] = [];
  const raw = row('raw-op');
  const guarded = row('requireCredits');
  const hot = row('requireCredits-hot');
  const main = ratio('requireCredits / raw-op');

  if (r.embedded) {
    n.push(
      'The embedded database serializes every write of one document at its gate (tools/mongo/gate.go) for the whole of FerretDB\'s ' +
        'read-then-write, which takes milliseconds, so absolute throughput is low and requests on one hot account queue behind each other ' +
        'far longer than on MongoDB, where a single-document update holds its document for microseconds; writes of different documents ' +
        'run side by side. Compare ratios, not absolute numbers; run with MONGODB_URI for a real MongoDB.',
    );
    const small = r.costs[0];
    const big = r.costs[r.costs.length - 1];
    const measured =
      small && big && big !== small
        ? ` (measured above: updateOne ${fix(small.updateOne, 1)} ms at ${int(small.size)} documents, ${fix(big.updateOne, 1)} ms at ` +
          `${int(big.size)}; findOne ${fix(small.findOne, 1)} and ${fix(big.findOne, 1)} ms; an insert ${fix(small.insertOne, 1)} and ` +
          `${fix(big.insertOne, 1)} ms)`
        : '';
    const naive = row('naive');
    const cpu =
      raw?.dbCpuUsPerRequest != null && naive?.dbCpuUsPerRequest != null
        ? ` (database CPU per request: raw-op ${int(raw.dbCpuUsPerRequest)} µs, naive ${int(naive.dbCpuUsPerRequest)} µs)`
        : '';
    n.push(
      "FerretDB v1's SQLite backend, as embedded here (with tools/mongo/ferretdb-sqlite-index.patch), finds a document by " +
        '_id through its _id index, also under a guard such as { _id, balance: { $gte: 1 } }, so an operation by _id should ' +
        `cost about the same at any collection size${measured}. Lookups on any other field still scan the collection ` +
        '(FerretDB v1 pushes nothing else down to SQLite). Its findAndModify costs more than a find plus an update' +
        `${cpu}, which a MongoDB would not show; that is why naive can beat raw-op here. The ledger collection is ` +
        'trimmed between runs. ' +
        (r.checks.ledgerEntriesTrimmed !== null
          ? `So each run starts from the same ledger: the ${int(r.checks.ledgerEntriesTrimmed)} entries the runs added were ` +
            'deleted between runs, after being moved (BENCH_TRIM_LEDGER=0 keeps them). The account, raw and naive collections ' +
            'all hold the same ~' + int(r.config.users) + ' users, so their writes cost alike; purchases and claims still grow ' +
            'with each webhook run.'
          : 'The ledger was not trimmed between runs (BENCH_TRIM_LEDGER=0): later runs of the guarded scenarios are slower.'),
    );
  }
  n.push(
    'The load generator (autocannon) runs in the benchmark process on the same cores as the server and the database, so the ' +
      '"unguarded" floor is bounded by the machine, and "node CPU" includes the generator\'s share. p50/p99 are over every ' +
      'response of all measured rounds; "errors" are connection errors and timeouts.',
  );
  n.push(
    '"DB round trips / req" counts every `commandStarted` event of the driver (the connection is created with ' +
      '`monitorCommands: true`) during the timed runs, including the background work they caused (each run waits until the ' +
      "kit's background work is flushed and the database is quiet), divided by the requests the server received. The " +
      'blocking/background split comes from the attribution pass.',
  );

  if (raw && guarded && main) {
    const blockingOk = Math.abs(guarded.blockingPerRequest - 1) < 0.05;
    n.push(
      `Goal: requireCredits / raw-op ≥ 0.9 — ${main.median >= 0.9 ? 'met' : 'not met'} (${fix(main.median, 2)}); one blocking ` +
        `round trip per guarded request — ${blockingOk ? 'met' : 'not met'} (${fix(guarded.blockingPerRequest, 2)}).`,
    );
    const dbRate = (x: ScenarioRow) => x.rps * x.commandsPerRequest;
    const cmdRatio = guarded.commandsPerRequest / raw.commandsPerRequest;
    const parts = [
      `requireCredits starts ${fix(guarded.commandsPerRequest, 2)} database commands per request against raw-op's ` +
        `${fix(raw.commandsPerRequest, 2)} (×${fix(cmdRatio, 2)}): ${fix(guarded.blockingPerRequest, 2)} on the request's path, ` +
        `${fix(guarded.backgroundPerRequest, 2)} in the background (the journal move, batched every 50 ms across accounts: ` +
        'one insertMany into credit_ledger; the $pullAll that empties a journal, one statement per account in bulk writes of ' +
        'up to 32 accounts, once the journal holds 8 entries or the account has been quiet for 10 s, or 2 s when it gained ' +
        "an expiring grant). The attribution pass ends with the kit's flush(), which pulls every journal at once, so its " +
        '`update credit_accounts` statements per request are those of a short run, about one per account touched; in a long ' +
        'run an account changed every few seconds is pulled once per 8 changes.',
      `The database executed about ${int(dbRate(raw))} commands/s under raw-op and ${int(dbRate(guarded))} under requireCredits` +
        (hot ? ` (${int(dbRate(hot))} under requireCredits-hot, ${fix(hot.commandsPerRequest, 2)} commands per request)` : '') +
        (Math.abs(dbRate(guarded) / dbRate(raw) - 1) < 0.25
          ? ': about the same command rate, so on this database throughput follows commands per request.'
          : ': the command rates differ, so on this database it is not the number of commands but what each costs: ' +
            "FerretDB decodes, re-encodes and rewrites the whole account document on every update (balance, count, the " +
            "journal and the grant book, against raw-op's balance alone; each journal entry adds about 0.1 ms of database " +
            'CPU to every write of its account, a one-off measurement), and each $pullAll statement is one more document ' +
            'write of the account, about as costly as the spend.'),
    ];
    if (guarded.dbCpuUsPerRequest !== null && raw.dbCpuUsPerRequest !== null) {
      parts.push(
        `Database CPU per request: ${int(guarded.dbCpuUsPerRequest)} µs against ${int(raw.dbCpuUsPerRequest)} µs; ` +
          `node CPU per request: ${int(guarded.nodeCpuUsPerRequest)} µs against ${int(raw.nodeCpuUsPerRequest)} µs (together ` +
          `${fix((raw.dbCpuUsPerRequest + raw.nodeCpuUsPerRequest) / (guarded.dbCpuUsPerRequest + guarded.nodeCpuUsPerRequest), 2)} ` +
          "of requireCredits' for raw-op; on two shared cores throughput follows that sum). The database's share includes " +
          "the pulls of each run's closing flush, about one per account touched, which a 5 s run cannot spread out.",
      );
    }
    const rawProfile = r.profiles.find((p) => p.name === 'raw-op');
    const kitProfile = r.profiles.find((p) => p.name === 'requireCredits');
    if (rawProfile && kitProfile) {
      const per = (p: Report['profiles'][number], cat: Category) => ((p.summary.byCategory.get(cat) ?? 0) * 1000) / p.requests;
      const cats: Category[] = ['credit-kit (server/)', 'mongodb driver + bson', 'node core', 'express + other packages', 'GC'];
      const diffs = cats.map((c) => `${c} ${int(per(kitProfile, c) - per(rawProfile, c))}`);
      parts.push(`Of the node CPU requireCredits adds per request, by category (µs, profiles above): ${diffs.join(', ')}.`);
    }
    if (r.embedded) {
      parts.push(
        `The blocking findAndModify is the same single round trip as raw-op's, but at the gate it queues behind the ` +
          `background writes of other requests: p50 ${fix(guarded.p50, 1)} ms against ${fix(raw.p50, 1)} ms.`,
      );
    }
    n.push(`Where the time goes: ${parts.join(' ')}`);
  }
  const ledgerStatements = (x: ScenarioRow | undefined) =>
    x?.kinds.filter((k) => k.kind === 'insert credit_ledger').reduce((a, k) => a + k.statementsPerRequest, 0) ?? 0;
  if (hot && ledgerStatements(hot) > 1.05) {
    n.push(
      `requireCredits-hot: the journal moves of one busy account are coalesced (${fix(hot.backgroundPerRequest, 2)} background ` +
        `commands per request), but they carry ${fix(ledgerStatements(hot), 2)} ledger inserts per request where one entry per ` +
        'request is new: entries another mover wrote first are sent again and skipped as duplicates.',
    );
  }

  const naiveOver = r.contention.filter((k) => k.kind === 'naive').map((k) => k.overspend);
  const guardedOver = r.contention.filter((k) => k.kind === 'requireCredits').map((k) => k.overspend);
  if (naiveOver.length > 0) {
    n.push(
      `Overspend: the read-then-write route let ${naiveOver.join(', ')} requests through beyond the balance; requireCredits ` +
        `${guardedOver.every((v) => v === 0) ? 'none' : guardedOver.join(', ')} (must be 0). The gate makes each command atomic, ` +
        'but not a read followed by a write.',
    );
  }
  const k = r.checks;
  n.push(
    `Checks: ${int(k.webhookDeliveries)} webhook deliveries; ${int(k.purchasesPaid)} purchases recorded as paid, ` +
      `${int(k.creditedOnce)} of them with exactly one purchase entry in the ledger` +
      `${k.creditedOtherwise === 0 ? ' (all credited exactly once)' : `, **${k.creditedOtherwise} credited zero or several times**`}; ` +
      `the buyer of the replayed purchase of 100 credits holds ${int(k.replayBalance)}` +
      `${k.replayBalance === 100 ? ' (credited once)' : ' (**not 100**)'}; ${k.backgroundErrors} background ledger errors.`,
  );
  return n;
}
