/**
 * The embedded server finds an account by `_id` through the `_id` index, also when the filter holds more
 * than `_id` (credit-kit's guard, `{ _id, balance: { $gte: n } }`). FerretDB v1.24.2 as released scans the
 * whole collection instead; tools/mongo/ferretdb-sqlite-index.patch corrects it (see tools/README.md).
 *
 * Checked from SQLite's own query plan of each statement FerretDB runs (the server's -plan-log), never from
 * a timing. Against FerretDB as released they fail; to see that, run them on the unpatched build:
 *
 *   CREDIT_KIT_UNPATCHED_FERRETDB=1 npx jest tools/mongo-index.test.ts
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import { startEmbeddedMongo, type EmbeddedMongo } from './embedded';

interface PlanLine {
  db: string;
  sql: string;
  plan: string[];
  error?: string;
}

const DB = 'plans';
const ACCOUNTS = /"accounts_[0-9a-f]+"/; // FerretDB's SQLite table for the collection `accounts`
const USES_ID_INDEX = /^SEARCH accounts_[0-9a-f]+ USING (COVERING )?INDEX accounts_[0-9a-f]+__id_ /;

let dir: string;
let planFile: string;
let mongo: EmbeddedMongo;
let connection: Connection;
let read = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ck-plans-'));
  planFile = join(dir, 'plans.jsonl');
  const unpatched = process.env.CREDIT_KIT_UNPATCHED_FERRETDB === '1';
  mongo = await startEmbeddedMongo({ planLog: planFile, unpatched });
  connection = await mongoose.createConnection(mongo.uri, { dbName: DB, serverSelectionTimeoutMS: 2000 }).asPromise();
  // Enough rows that SQLite's planner has a table worth searching; the plan, not the size, is what is checked.
  await accounts().insertMany(Array.from({ length: 500 }, (_, i) => ({ _id: `u${i}`, balance: 10, journal: [] })));
}, 120_000);

afterAll(async () => {
  await connection?.close();
  await mongo?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function accounts() {
  return connection.collection<{ _id: string; balance: number; journal: Array<{ id: string }> }>('accounts');
}

/** Runs op and returns the plans of the statements it ran on the accounts table. */
async function statementsOf(op: () => Promise<unknown>): Promise<PlanLine[]> {
  readNew(); // whatever ran before op (connection handshakes, earlier tests) is not op's
  await op();
  return readNew().filter((l) => l.db === DB && ACCOUNTS.test(l.sql));
}

function readNew(): PlanLine[] {
  const text = readFileSync(planFile, 'utf8');
  const fresh = text.slice(read);
  read = text.length;
  return fresh
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as PlanLine);
}

function expectIdIndexOnly(lines: PlanLine[]): void {
  expect(lines.length).toBeGreaterThan(0);
  for (const { sql, plan, error } of lines) {
    // The plan has one step, a search through the _id index (and so no scan of the table).
    expect({ sql, error, plan }).toEqual({ sql, error: undefined, plan: [expect.stringMatching(USES_ID_INDEX)] });
  }
}

const guard = (id: string, n: number) => ({ _id: id, balance: { $gte: n } });

describe('embedded server: lookups by _id use the _id index', () => {
  it('sees a table scan when the filter has no _id (so a scan would not go unnoticed)', async () => {
    const lines = await statementsOf(() => accounts().findOne({ balance: { $gte: 1 } }));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.flatMap((l) => l.plan)).toContainEqual(expect.stringMatching(/^SCAN accounts_/));
  });

  it('find({ _id })', async () => {
    let doc: unknown;
    expectIdIndexOnly(await statementsOf(async () => (doc = await accounts().findOne({ _id: 'u7' }))));
    expect(doc).toMatchObject({ _id: 'u7', balance: 10 });
  });

  it('find({ _id, balance: { $gte } })', async () => {
    const found: unknown[] = [];
    expectIdIndexOnly(
      await statementsOf(async () => {
        found.push(await accounts().findOne(guard('u8', 1)), await accounts().findOne(guard('u8', 11)));
      }),
    );
    expect(found).toEqual([expect.objectContaining({ _id: 'u8' }), null]);
  });

  it('findOneAndUpdate({ _id, balance: { $gte } }, { $inc }): the read and the write', async () => {
    let after: unknown;
    const lines = await statementsOf(async () => {
      after = await accounts().findOneAndUpdate(guard('u9', 3), { $inc: { balance: -3 } }, { returnDocument: 'after' });
    });
    expectIdIndexOnly(lines);
    expect(lines.map((l) => l.sql.trim().split(/\s+/)[0])).toEqual(['SELECT', 'UPDATE']);
    expect(after).toMatchObject({ _id: 'u9', balance: 7 });
  });

  it("the store's keyed guard: { _id, 'journal.id': { $ne }, balance: { $gte } } with $inc and $push", async () => {
    const filter = { _id: 'u10', 'journal.id': { $ne: 'k1' }, balance: { $gte: 2 } };
    const update = { $inc: { balance: -2 }, $push: { journal: { id: 'k1' } } };
    const results: unknown[] = [];
    expectIdIndexOnly(
      await statementsOf(async () => {
        results.push(await accounts().findOneAndUpdate(filter, update, { returnDocument: 'after' }));
        results.push(await accounts().findOneAndUpdate(filter, update, { returnDocument: 'after' })); // refused: k1 is in
      }),
    );
    expect(results).toEqual([expect.objectContaining({ balance: 8, journal: [{ id: 'k1' }] }), null]);
  });

  it('updateOne({ _id, balance: { $gte } })', async () => {
    let res: { matchedCount: number; modifiedCount: number } | undefined;
    const lines = await statementsOf(async () => {
      res = await accounts().updateOne(guard('u11', 1), { $inc: { balance: -1 } });
    });
    expectIdIndexOnly(lines);
    expect(res).toMatchObject({ matchedCount: 1, modifiedCount: 1 });
  });

  it('deleteOne({ _id, balance: { $gte } })', async () => {
    let res: { deletedCount: number } | undefined;
    const lines = await statementsOf(async () => (res = await accounts().deleteOne(guard('u12', 1))));
    expectIdIndexOnly(lines);
    expect(lines.map((l) => l.sql.trim().split(/\s+/)[0])).toEqual(['SELECT', 'DELETE']);
    expect(res).toMatchObject({ deletedCount: 1 });
  });

  it('find({ _id: { $in } }) of strings searches the index and finds those documents (ferretdb-sqlite-id-in.patch)', async () => {
    let found: Array<{ _id: string }> = [];
    expectIdIndexOnly(await statementsOf(async () => (found = await accounts().find({ _id: { $in: ['u3', 'u1', 'nobody', 'u2'] } }).toArray())));
    expect(found.map((d) => d._id).sort()).toEqual(['u1', 'u2', 'u3']);
    // Anything else is left to the handler, with the same answers: a number among the ids, another operator.
    const mixed = await accounts().find({ _id: { $in: ['u4', 5 as unknown as string] } }).toArray();
    expect(mixed.map((d) => d._id)).toEqual(['u4']);
    const withNin = await accounts().find({ _id: { $in: ['u4', 'u5'], $nin: ['u5'] } }).toArray();
    expect(withNin.map((d) => d._id)).toEqual(['u4']);
    expect(await accounts().find({ _id: { $in: [] } }).toArray()).toEqual([]);
  });

  it("explain says so too: the filter is pushed down and SQLite's plan searches the _id index", async () => {
    const res = await connection.db!.command({ explain: { find: 'accounts', filter: guard('u13', 1) } });
    expect(res).toMatchObject({ filterPushdown: true });
    expect(res.queryPlanner.Plan).toEqual([
      expect.stringMatching(/detail=SEARCH accounts_\w+ USING INDEX accounts_\w+__id_ /),
    ]);
  });
});

describe('embedded server: string equalities on other fields use their index (ferretdb-sqlite-pushdown.patch)', () => {
  const LEDGER = /"ledger_[0-9a-f]+"/;
  const ledger = () => connection.collection<{ _id: string; userId: unknown; seq: number }>('ledger');
  const ledgerStatements = async (op: () => Promise<unknown>) => {
    readNew();
    await op();
    return readNew().filter((l) => l.db === DB && LEDGER.test(l.sql));
  };
  const odd = 'a"b\\c<>&\u00e9\u2028\ud83d\ude00';

  beforeAll(async () => {
    await ledger().createIndex({ userId: 1, seq: -1 });
    const docs = [];
    for (let u = 0; u < 20; u++) for (let seq = 1; seq <= 25; seq++) docs.push({ _id: `e${u}-${seq}`, userId: `u${u}`, seq });
    // MongoDB's semantics: { userId: 'u3' } matches an array holding 'u3', not one holding it deeper, nor another
    // type. (FerretDB v1 refuses nested arrays; an array of documents stands in for "deeper".)
    docs.push(
      { _id: 'in-array', userId: ['x', 'u3'], seq: 26 },
      { _id: 'deeper', userId: [{ id: 'u3' }], seq: 27 },
      { _id: 'longer', userId: 'u3x', seq: 28 },
      { _id: 'number', userId: 3, seq: 29 },
      { _id: 'odd', userId: odd, seq: 1 },
    );
    await ledger().insertMany(docs as never);
  });

  it("the kit's history page, find({ userId, seq: { $lt } }).sort({ seq: -1 }).limit(n), searches the index and finds the same", async () => {
    let page: unknown[] = [];
    const lines = await ledgerStatements(async () => {
      page = await ledger().find({ userId: 'u7', seq: { $lt: 20 } }).sort({ seq: -1 }).limit(5).toArray();
    });
    expect(lines.length).toBeGreaterThan(0);
    for (const { sql, plan, error } of lines) {
      expect({ sql, error }).toEqual({ sql, error: undefined });
      expect(plan.some((p) => /^SCAN /.test(p))).toBe(false);
      expect(plan).toContainEqual(expect.stringMatching(/SEARCH ledger_[0-9a-f]+ USING INDEX ledger_[0-9a-f]+_userId_1_seq_-1 \(/));
    }
    expect(page.map((d) => (d as { _id: string })._id)).toEqual(['e7-19', 'e7-18', 'e7-17', 'e7-16', 'e7-15']);
  });

  it('keeps what MongoDB matches: the string, an array holding it; not an array holding it deeper, a longer string or a number', async () => {
    const ids = (await ledger().find({ userId: 'u3' }).toArray()).map((d) => d._id).filter((id) => !/^e3-/.test(id));
    expect(ids.sort()).toEqual(['in-array']);
    expect((await ledger().find({ userId: 'u3' }).toArray()).filter((d) => /^e3-/.test(d._id))).toHaveLength(25);
    expect((await ledger().find({ userId: odd }).toArray()).map((d) => d._id)).toEqual(['odd']);
    expect(await ledger().countDocuments({ userId: 'nobody' })).toBe(0);
  });

  it('leaves numbers and operators to the server as before (a scan, the same answers)', async () => {
    const lines = await ledgerStatements(async () => {
      expect((await ledger().find({ seq: 29 }).toArray()).map((d) => d._id)).toEqual(['number']);
      expect((await ledger().find({ userId: { $in: ['u3x'] } }).toArray()).map((d) => d._id)).toEqual(['longer']);
    });
    expect(lines.flatMap((l) => l.plan)).toContainEqual(expect.stringMatching(/^SCAN ledger_/));
  });
});
