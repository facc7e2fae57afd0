/**
 * How the embedded server (FerretDB v1.24.2 on SQLite behind the atomicity gate, tools/mongo) differs from
 * MongoDB, pinned as it is: what the gate makes stricter than MongoDB, and what FerretDB lacks that the
 * store (server/store/mongo-store.ts) avoids or works around. Each test names the difference; tools/README.md
 * ("Fidelity") lists them with the workaround and where it lives. Facts a real MongoDB has to show (races
 * the gate rules out) are exercised by .github/workflows/ci.yml, which runs the suites on MongoDB 7.0 / 8.0.
 *
 * These are facts of the embedded server, so they run against it: jest's MONGODB_URI when global setup
 * started the embedded server, otherwise (MONGODB_URI points at a real MongoDB, as in CI) one of its own.
 * Orderings are checked from completion order and what readers saw, never from timings.
 */
import { MongoClient, type Collection, type Db, type MongoServerError } from 'mongodb';
import { startEmbeddedMongo, type EmbeddedMongo } from './embedded';

/** Documents keyed by string ids, as the kit's collections are. */
type Doc = { _id: string } & Record<string, unknown>;

const DB = `fidelity_${process.pid}_${Date.now()}`;

let own: EmbeddedMongo | undefined;
let writer: MongoClient;
let other: MongoClient;
let db: Db;
let otherDb: Db;

beforeAll(async () => {
  let uri = process.env.MONGODB_URI;
  if (!uri || process.env.CREDIT_KIT_EMBEDDED_MONGO !== '1') {
    own = await startEmbeddedMongo();
    uri = own.uri;
  }
  // Two clients, so two connections through the gate: the second one stands for another app instance.
  writer = await MongoClient.connect(uri, { directConnection: true, monitorCommands: true, serverSelectionTimeoutMS: 5000 });
  other = await MongoClient.connect(uri, { directConnection: true, serverSelectionTimeoutMS: 5000 });
  db = writer.db(DB);
  otherDb = other.db(DB);
}, 120_000);

afterAll(async () => {
  await db?.dropDatabase().catch(() => undefined);
  await writer?.close();
  await other?.close();
  await own?.stop();
});

/** The server's error for a command, or null when it succeeded. */
async function serverError(run: () => Promise<unknown>): Promise<{ code: number | undefined; message: string } | null> {
  try {
    await run();
    return null;
  } catch (err) {
    const e = err as MongoServerError;
    return { code: typeof e.code === 'number' ? e.code : undefined, message: e.message };
  }
}

const docs = (n: number) => Array.from({ length: n }, (_, i) => ({ _id: `d${i}`, i, pad: 'x'.repeat(20) }));

/** Resolves when `client` has sent its next command named `name` (the driver's commandStarted event). */
function sent(client: MongoClient, name: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (e: { commandName: string }) => {
      if (e.commandName !== name) return;
      client.off('commandStarted', on);
      resolve();
    };
    client.on('commandStarted', on);
  });
}

/** What the gate has counted so far (tools/mongo/gate.go answers this command itself). */
async function gateStats(): Promise<{ free: number; keyed: number; exclusive: number; maxRunning: number }> {
  const s = await db.admin().command({ creditKitGateStats: 1 });
  return { free: Number(s.free), keyed: Number(s.keyed), exclusive: Number(s.exclusive), maxRunning: Number(s.maxRunning) };
}

/** Runs `long`, and once its command `name` is on the wire, `short`; returns the order they finished in. */
async function finishOrder(name: string, long: () => Promise<unknown>, short: () => Promise<unknown>): Promise<string[]> {
  const order: string[] = [];
  const started = sent(writer, name);
  const first = long().then(() => order.push('long'));
  await started;
  // Let the long command's bytes reach the gate before the short one is sent (the long one runs far longer).
  await new Promise((r) => setTimeout(r, 50));
  const second = short().then(() => order.push('short'));
  await Promise.all([first, second]);
  return order;
}

describe('as on MongoDB: the gate lets commands interleave where single-document atomicity allows', () => {
  test('a reader is not held behind a long write, and may see part of a multi-document insert', async () => {
    // Long enough that the reader (a count, which reads what the insert has written so far) wins by far:
    // with 5,000 documents a loaded machine lost the race all three times once the server got faster.
    const N = 20_000;
    // A reader held behind the insert could never finish first, so one attempt where it does proves the gate
    // lets it through. On a loaded machine the reader's own scan can lose the race now and then: up to three
    // attempts, each on a fresh collection.
    const orders: string[][] = [];
    for (let attempt = 0; attempt < 3 && !(orders.at(-1)?.[0] === 'short'); attempt++) {
      const name = `big_unit_${attempt}`;
      const counts: number[] = [];
      orders.push(
        await finishOrder(
          'insert',
          () => db.collection<{ _id: string; i: number; pad: string }>(name).insertMany(docs(N), { ordered: false }),
          async () => counts.push(await otherDb.collection<Doc>(name).countDocuments({})),
        ),
      );
      // FerretDB writes an insert in transactions of a few hundred documents, so the count the reader got is
      // some prefix of the batch: anything from 0 to N, as MongoDB allows.
      expect(counts[0]).toBeGreaterThanOrEqual(0);
      expect(counts[0]).toBeLessThanOrEqual(N);
      expect(await otherDb.collection<Doc>(name).countDocuments({})).toBe(N);
    }
    expect(orders.at(-1)).toEqual(['short', 'long']);
  });
});

describe('what each command holds at the gate (tools/mongo/gate.go), on a server of its own so the counts are exact', () => {
  let server: EmbeddedMongo;
  let client: MongoClient;
  let col: Collection<{ _id: string; n: number }>;
  beforeAll(async () => {
    server = await startEmbeddedMongo();
    client = await MongoClient.connect(server.uri, { directConnection: true, monitorCommands: true, serverSelectionTimeoutMS: 5000 });
    col = client.db('gate_classes').collection<{ _id: string; n: number }>('c');
    await col.insertMany([{ _id: 'a', n: 0 }, { _id: 'b', n: 0 }, { _id: 'c', n: 0 }]);
  }, 120_000);
  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  const stats = async () => {
    const s = await client.db('admin').command({ creditKitGateStats: 1 });
    return { free: Number(s.free), keyed: Number(s.keyed), exclusive: Number(s.exclusive) };
  };
  /** The class counts one command added (the stats command itself is answered by the gate, uncounted). */
  async function classOf(run: () => Promise<unknown>): Promise<string> {
    const before = await stats();
    await run();
    const after = await stats();
    const grew = (['free', 'keyed', 'exclusive'] as const).filter((k) => after[k] > before[k]);
    return grew.join('+');
  }

  test('a findOneAndUpdate of one document runs while a long insertMany is still running (MongoDB interleaves them too)', async () => {
    // Which one finishes first is up to SQLite's write lock, so the test looks at the gate: both ran at once.
    const big = client.db('gate_classes').collection<{ _id: string; i: number; pad: string }>('big');
    const before = await stats();
    const started = sent(client, 'insert');
    const insert = big.insertMany(docs(20_000));
    await started;
    await new Promise((r) => setTimeout(r, 50)); // the insert's bytes are at the gate; it runs for far longer
    await col.findOneAndUpdate({ _id: 'c' }, { $inc: { n: 1 } });
    await insert;
    const after = await client.db('admin').command({ creditKitGateStats: 1 });
    expect(Number(after.maxRunning)).toBe(2);
    expect(Number(after.keyed)).toBe(before.keyed + 1);
    expect(Number(after.free)).toBe(before.free + 1);
    expect((await col.findOne({ _id: 'c' }))?.n).toBe(1);
  });

  test.each([
    ['findOneAndUpdate by _id', 'keyed', () => col.findOneAndUpdate({ _id: 'a', n: { $gte: 0 } }, { $inc: { n: 1 } })],
    ['updateOne by _id', 'keyed', () => col.updateOne({ _id: 'a' }, { $inc: { n: 1 } })],
    ['a bulk write of updateOne by _id (the mover)', 'keyed', () => col.bulkWrite([{ updateOne: { filter: { _id: 'a' }, update: { $inc: { n: 1 } } } }, { updateOne: { filter: { _id: 'b' }, update: { $inc: { n: 1 } } } }])],
    ['deleteOne by _id', 'keyed', () => col.deleteOne({ _id: 'zz' })],
    ['updateMany', 'exclusive', () => col.updateMany({}, { $inc: { n: 1 } })],
    ['updateOne by an _id operator ($in)', 'exclusive', () => col.updateOne({ _id: { $in: ['a', 'b'] } }, { $inc: { n: 1 } })],
    ['updateOne by another field', 'exclusive', () => col.updateOne({ n: 1 }, { $inc: { n: 1 } })],
    ['deleteMany', 'exclusive', () => col.deleteMany({ _id: 'zz' })],
    ['createIndex', 'exclusive', () => col.createIndex({ n: 1 })],
    ['find', 'free', () => col.find({}).toArray()],
    ['countDocuments (an aggregate)', 'free', () => col.countDocuments({})],
    ['insertOne', 'free', () => col.insertOne({ _id: `i${Date.now()}`, n: 0 })],
  ])('%s is %s', async (_what, expected, run) => {
    expect(await classOf(run)).toBe(expected);
  });
});

describe('stricter than MongoDB: writes the gate cannot narrow to documents run alone', () => {
  test('a findOneAndUpdate on another document waits for a long multi-document updateMany (MongoDB runs them side by side)', async () => {
    const col = db.collection<{ _id: string; i: number; pad: string; touched?: number }>('many_update');
    await col.insertMany(docs(3000));
    await otherDb.collection<{ _id: string; n: number }>('small_many').insertOne({ _id: 's', n: 0 });
    const before = await gateStats();
    const order = await finishOrder(
      'update',
      () => col.updateMany({}, { $set: { touched: 1 } }),
      () => otherDb.collection<{ _id: string; n: number }>('small_many').findOneAndUpdate({ _id: 's' }, { $inc: { n: 1 } }),
    );
    expect(order).toEqual(['long', 'short']);
    expect((await gateStats()).exclusive).toBeGreaterThan(before.exclusive);
    expect(await col.countDocuments({ touched: 1 })).toBe(3000);
  });

  test('the gate locks per command: the driver sends a batch of this size as one command', async () => {
    // The gate's unit is the command, not the call: the driver splits a batch past maxWriteBatchSize or
    // maxMessageSizeBytes into several commands, and another command may then run between them.
    let inserts = 0;
    const count = (e: { commandName: string }) => {
      if (e.commandName === 'insert') inserts++;
    };
    writer.on('commandStarted', count);
    try {
      await db.collection<{ _id: string; i: number; pad: string }>('one_command').insertMany(docs(5000));
    } finally {
      writer.off('commandStarted', count);
    }
    expect(inserts).toBe(1);
    const hello = await db.admin().command({ hello: 1 });
    expect(hello.maxWriteBatchSize).toBe(100_000);
    expect(hello.maxMessageSizeBytes).toBe(48_000_000);
  });

  test('concurrent first-change upserts of one new account never collide on _id (on MongoDB one may fail with E11000)', async () => {
    // The store's applyEntry/fenceEntry retry without upsert on a duplicate key for exactly this race; the
    // embedded server never produces it, so only a real MongoDB (CI) runs that retry for a race.
    const col = db.collection<{ _id: string; balance: number; fenced?: string[] }>('upsert_race');
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? other.db(DB).collection<{ _id: string; balance: number; fenced?: string[] }>('upsert_race') : col).findOneAndUpdate(
          { _id: 'new-user', fenced: { $ne: `e${i}` } },
          { $inc: { balance: 1 } },
          { upsert: true, returnDocument: 'after' },
        ),
      ),
    );
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect((await col.findOne({ _id: 'new-user' }))?.balance).toBe(20);
  });

  test('an upsert whose filter misses an existing document fails with E11000, as on MongoDB (the store retries it without upsert)', async () => {
    const col = db.collection<{ _id: string; balance: number }>('upsert_miss');
    await col.insertOne({ _id: 'u', balance: 0 });
    const err = await serverError(() =>
      col.findOneAndUpdate({ _id: 'u', balance: { $gte: 5 } }, { $inc: { balance: -5 } }, { upsert: true }),
    );
    expect(err?.code).toBe(11000);
  });
});

describe('FerretDB defects our build corrects (tools/mongo/*.patch)', () => {
  test('an update command of 2,000 statements finishes and applies every one (as released it hangs past 100: ferretdb-update-connections.patch)', async () => {
    const col = db.collection<{ _id: string; i: number; pad: string; n?: number }>('many_statements');
    await col.insertMany(docs(2000));
    const result = await col.bulkWrite(
      docs(2000).map((d) => ({ updateOne: { filter: { _id: d._id }, update: { $set: { n: d.i } } } })),
      { ordered: false },
    );
    expect(result.modifiedCount).toBe(2000);
    expect(await col.countDocuments({ n: { $gte: 0 } })).toBe(2000);
  });
});

describe('FerretDB gaps the store works around', () => {
  test('empty arrays and nulls written on insert are kept, as on MongoDB ', async () => {
    // Observed here: FerretDB v1.24.2 keeps them through insertOne, insertMany, replaceOne, $set and upserts.
    // toPurchase/toSnapshot in server/store/mongo-store.ts still default missing fields, which stays right
    // for documents that never had them (an account created by fenceEntry has no journal, on MongoDB too).
    const col = db.collection<{ _id: string } & Record<string, unknown>>('empty_and_null');
    const purchase = {
      _id: 'p1',
      paymentIntentId: null,
      creditedAt: null,
      facts: { charge: null, refunds: [], disputes: [] },
      pendingAdjustments: [],
    };
    await col.insertOne(purchase);
    expect(await col.findOne({ _id: 'p1' })).toEqual(purchase);
    await col.insertMany([{ _id: 'p2', a: [], n: null }]);
    expect(await col.findOne({ _id: 'p2' })).toEqual({ _id: 'p2', a: [], n: null });
    await col.replaceOne({ _id: 'p2' }, { a: [], n: null, version: 1 });
    expect(await col.findOne({ _id: 'p2' })).toEqual({ _id: 'p2', a: [], n: null, version: 1 });
    await col.updateOne({ _id: 'p3' }, { $set: { a: [], n: null } }, { upsert: true });
    expect(await col.findOne({ _id: 'p3' })).toEqual({ _id: 'p3', a: [], n: null });
  });

  describe('$elemMatch on an array of documents (store: decides on a read copy, then replacePurchase compare-and-sets on version)', () => {
    beforeAll(async () => {
      await db.collection<Doc>('elem').insertOne({ _id: 'e', disputes: [{ id: 'd1', status: 'open' }], nums: [1, 5] });
    });

    test('with two field conditions it is refused (BadValue 2, "unknown operator"); MongoDB matches', async () => {
      const err = await serverError(() =>
        db.collection<Doc>('elem').find({ disputes: { $elemMatch: { id: 'd1', status: 'open' } } }).toArray(),
      );
      expect(err?.code).toBe(2);
      expect(err?.message).toMatch(/unknown operator: id/);
    });

    test('with one field condition it silently matches nothing; MongoDB matches the document', async () => {
      expect(await db.collection<Doc>('elem').find({ disputes: { $elemMatch: { id: 'd1' } } }).toArray()).toEqual([]);
    });

    test('on an array of scalars with operators it works, as on MongoDB', async () => {
      expect(await db.collection<Doc>('elem').countDocuments({ nums: { $elemMatch: { $gt: 2, $lt: 6 } } })).toBe(1);
    });

    test('as a projection it is not implemented (NotImplemented 238)', async () => {
      const err = await serverError(() =>
        db.collection<Doc>('elem').find({ _id: 'e' }, { projection: { disputes: { $elemMatch: { id: 'd1' } } } }).toArray(),
      );
      expect(err?.code).toBe(238);
    });
  });

  describe('array element updates (store: whole-document replacePurchase on version; fences as a flat `fenced` array)', () => {
    beforeEach(async () => {
      await db.collection<Doc>('arr').replaceOne({ _id: 'a' }, { disputes: [{ id: 'd1', status: 'open' }] }, { upsert: true });
    });

    test('positional `$` is refused (code 28, "Cannot create field \'$\'"); MongoDB updates the matched element', async () => {
      const err = await serverError(() =>
        db.collection<Doc>('arr').updateOne({ _id: 'a', 'disputes.id': 'd1' }, { $set: { 'disputes.$.status': 'won' } }),
      );
      expect(err?.code).toBe(28);
      expect(err?.message).toMatch(/Cannot create field '\$'/);
    });

    test('all-positional `$[]` is refused (code 28)', async () => {
      const err = await serverError(() => db.collection<Doc>('arr').updateOne({ _id: 'a' }, { $set: { 'disputes.$[].status': 'x' } }));
      expect(err?.code).toBe(28);
    });

    test('arrayFilters (`$[x]`) are not implemented (NotImplemented 238)', async () => {
      const err = await serverError(() =>
        db
          .collection<Doc>('arr')
          .updateOne({ _id: 'a' }, { $set: { 'disputes.$[x].status': 'won' } }, { arrayFilters: [{ 'x.id': 'd1' }] }),
      );
      expect(err?.code).toBe(238);
    });

    test('what the store uses instead works: $addToSet / $ne on a flat array, $pullAll of documents, `x.0` $exists', async () => {
      const col = db.collection<{ _id: string; fenced?: string[]; journal: Array<{ id: string; amount: number }> }>('acct');
      await col.insertOne({ _id: 'u', journal: [{ id: 'j1', amount: 1 }, { id: 'j2', amount: 2 }] });
      await col.updateOne({ _id: 'u' }, { $addToSet: { fenced: 'e1' } });
      await col.updateOne({ _id: 'u' }, { $addToSet: { fenced: 'e1' } });
      expect((await col.findOne({ _id: 'u' }))?.fenced).toEqual(['e1']);
      expect(await col.countDocuments({ _id: 'u', fenced: { $ne: 'e1' } })).toBe(0);
      expect(await col.countDocuments({ _id: 'u', fenced: { $ne: 'e2' } })).toBe(1);
      expect(await col.countDocuments({ _id: 'u', 'journal.0': { $exists: true } })).toBe(1);
      await col.updateOne({ _id: 'u' }, { $pullAll: { journal: [{ id: 'j1', amount: 1 }] } });
      expect((await col.findOne({ _id: 'u' }))?.journal).toEqual([{ id: 'j2', amount: 2 }]);
    });
  });

  test('a dotted $ne into an array of documents (`journal.id`) still matches a document whose array holds that id (MongoDB does not match)', async () => {
    // applyEntry's keyed-entry check `'journal.id': { $ne: entry.id }` therefore refuses nothing here; on
    // this server a retried key is stopped by the fence (`fenced: { $ne }`) alone.
    const col = db.collection<Doc>('dotted_ne');
    await col.insertOne({ _id: 'u', journal: [{ id: 'j1' }, { id: 'j2' }] });
    expect(await col.find({ _id: 'u', 'journal.id': { $ne: 'j1' } }).toArray()).toHaveLength(1);
    expect(await col.find({ _id: 'u', 'journal.id': { $ne: 'j9' } }).toArray()).toHaveLength(1);
    expect(await col.find({ _id: 'u', 'journal.id': 'j1' }).toArray()).toHaveLength(1);
  });

  test('$expr is not implemented (NotImplemented 238, "$gt is not implemented yet"); the store compares only with constants (balanceGuard)', async () => {
    await db.collection<Doc>('expr').insertOne({ _id: 'x', n: 5, m: 5 });
    const err = await serverError(() => db.collection<Doc>('expr').find({ $expr: { $gt: ['$n', 1] } }).toArray());
    expect(err?.code).toBe(238);
    expect(err?.message).toMatch(/\$gt is not implemented yet/);
    const eq = await serverError(() => db.collection<Doc>('expr').find({ $expr: { $eq: ['$n', '$m'] } }).toArray());
    expect(eq?.code).toBe(238);
  });

  test('$$NOW is not evaluated: it comes back as the literal string "$$NOW" (MongoDB gives the time); the store takes times from the app clock', async () => {
    await db.collection<Doc>('now').insertOne({ _id: 'n' });
    expect(await db.collection<Doc>('now').aggregate([{ $project: { at: '$$NOW' } }]).toArray()).toEqual([{ _id: 'n', at: '$$NOW' }]);
    expect(await db.collection<Doc>('now').find({}, { projection: { at: '$$NOW' } }).toArray()).toEqual([{ _id: 'n', at: '$$NOW' }]);
  });

  test('update pipelines (where $$NOW would go) are refused: update 14 TypeMismatch, findAndModify 238 NotImplemented', async () => {
    await db.collection<Doc>('pipe').insertOne({ _id: 'p' });
    const update = await serverError(() => db.collection<Doc>('pipe').updateOne({ _id: 'p' }, [{ $set: { at: '$$NOW' } }]));
    expect(update?.code).toBe(14);
    const fam = await serverError(() => db.collection<Doc>('pipe').findOneAndUpdate({ _id: 'p' }, [{ $set: { x: 1 } }]));
    expect(fam?.code).toBe(238);
  });

  test('TTL indexes are not implemented (NotImplemented 238, "expireAfterSeconds" and "partialFilterExpression"); reconcile() deletes expired request keys instead (deleteExpiredClaims)', async () => {
    const col = db.collection<Doc>('ttl');
    await col.insertOne({ _id: 't', expiresAt: new Date(0) });
    const ttl = await serverError(() => col.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 }));
    expect(ttl?.code).toBe(238);
    expect(ttl?.message).toMatch(/expireAfterSeconds/);
    const partial = await serverError(() => col.createIndex({ expiresAt: 1 }, { partialFilterExpression: { state: 'applied' } }));
    expect(partial?.code).toBe(238);
    // What the store does instead: a plain index, and a delete by the field.
    await col.createIndex({ expiresAt: 1 }, { name: 'expiresAt_sweep' });
    expect((await col.deleteMany({ expiresAt: { $lt: new Date() } })).deletedCount).toBe(1);
  });

  test('multi-document transactions are refused (FailedToParse 9 on the first command of one); the store uses single-document writes', async () => {
    const session = writer.startSession();
    try {
      session.startTransaction();
      const err = await serverError(() => db.collection<Doc>('txn').insertOne({ _id: 't' }, { session }));
      expect(err?.code).toBe(9);
      expect(err?.message).toMatch(/autocommit/);
      await session.abortTransaction().catch(() => undefined);
    } finally {
      await session.endSession();
    }
    expect(await otherDb.collection<Doc>('txn').countDocuments({})).toBe(0);
  });
});
