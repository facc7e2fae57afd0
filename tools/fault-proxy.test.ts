/**
 * The fault proxy against the embedded server and the real mongodb driver: each fault does what the
 * reliability suite relies on (a stalled write lands late, a lost reply hides a landed write, a reset fails
 * what is in flight and the driver reconnects, random faults replay from a seed), and the driver's own
 * timeouts behave as the kit must know: in driver 7.x `timeoutMS` bounds nothing, an AbortSignal or
 * socketTimeoutMS does, and a write the client gave up on still lands.
 */
import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import {
  BSON,
  MongoClient,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  type Abortable,
  type Collection,
  type FindOneAndUpdateOptions,
  type MongoClientOptions,
} from 'mongodb';
import { startFaultProxy, type FaultDecision, type FaultProxy, type FaultProxyOptions } from './fault-proxy';

interface Account {
  _id: string;
  balance: number;
}

// retryWrites/retryReads off: a lost reply must surface as an error, not as a silent retry.
const CLIENT: MongoClientOptions = {
  directConnection: true,
  serverSelectionTimeoutMS: 2000,
  retryWrites: false,
  retryReads: false,
};

function mongoUri(): string {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('MONGODB_URI is not set: run the tests through jest, whose global setup starts the server.');
  return uri;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** 'pending' if `p` has not settled within `ms`, else how it settled. */
async function within(p: Promise<unknown>, ms: number): Promise<'pending' | 'resolved' | 'rejected'> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    p.then(
      () => 'resolved' as const,
      () => 'rejected' as const,
    ),
    new Promise<'pending'>((r) => (timer = setTimeout(() => r('pending'), ms))),
  ]);
  clearTimeout(timer);
  return outcome;
}

async function until(check: () => Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await sleep(20);
  }
}

interface Rig {
  proxy: FaultProxy;
  /** Through the proxy. */
  client: MongoClient;
  accounts: Collection<Account>;
  /** Straight to the server: what really happened. */
  direct: Collection<Account>;
  balance(id?: string): Promise<number | undefined>;
  close(): Promise<void>;
}

async function rig(options?: FaultProxyOptions, clientOptions: MongoClientOptions = {}): Promise<Rig> {
  const dbName = `ck_fp_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const proxy = await startFaultProxy(mongoUri(), options);
  const client = new MongoClient(proxy.uri, { ...CLIENT, ...clientOptions });
  const directClient = new MongoClient(mongoUri(), { directConnection: true, serverSelectionTimeoutMS: 2000 });
  const direct = directClient.db(dbName).collection<Account>('accounts');
  await direct.insertOne({ _id: 'a', balance: 10 });
  const accounts = client.db(dbName).collection<Account>('accounts');
  return {
    proxy,
    client,
    accounts,
    direct,
    balance: async (id = 'a') => (await direct.findOne({ _id: id }))?.balance,
    async close() {
      proxy.release();
      proxy.releaseReplies();
      await client.close().catch(() => undefined);
      await directClient.db(dbName).dropDatabase().catch(() => undefined);
      await directClient.close();
      await proxy.close();
    },
  };
}

const spend = (r: Rig, options: FindOneAndUpdateOptions & Abortable = {}) =>
  r.accounts.findOneAndUpdate({ _id: 'a', balance: { $gte: 1 } }, { $inc: { balance: -1 } }, { returnDocument: 'after', ...options });

it('relays commands both ways and counts them by name', async () => {
  const r = await rig();
  try {
    await r.accounts.insertOne({ _id: 'b', balance: 3 });
    expect(await r.accounts.find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', balance: 10 },
      { _id: 'b', balance: 3 },
    ]);
    expect(r.proxy.uri).toMatch(/^mongodb:\/\/127\.0\.0\.1:\d+\/$/);
    const stats = r.proxy.stats();
    expect(stats.byCommand).toMatchObject({ insert: 1, find: 1 });
    expect(stats.commands).toBeGreaterThanOrEqual(3); // + the handshake
    expect(stats).toMatchObject({ stalled: 0, repliesDropped: 0, resets: 0 });
  } finally {
    await r.close();
  }
});

it('stall: a write held while its client gives up lands after release', async () => {
  const r = await rig();
  try {
    await r.accounts.findOne({ _id: 'a' }); // connect first: the handshake is never stalled anyway
    r.proxy.stall();
    // The client gives up after 300 ms; the driver then closes the connection the write went out on.
    const gaveUp = spend(r, { signal: AbortSignal.timeout(300) });
    await expect(gaveUp).rejects.toThrow(/Timed out/);
    // One that keeps waiting gets its reply late.
    const waiting = spend(r);
    expect(await within(waiting, 200)).toBe('pending');
    expect(r.proxy.stats().stalled).toBe(2);
    expect(await r.balance()).toBe(10); // neither reached the server
    await r.client.db('admin').command({ ping: 1 }); // monitoring commands still pass

    r.proxy.release();
    expect(await waiting).toMatchObject({ balance: expect.any(Number) });
    await until(async () => (await r.balance()) === 8); // both landed, the abandoned one included
    expect(await spend(r)).toEqual({ _id: 'a', balance: 7 }); // and the proxy no longer stalls
  } finally {
    await r.close();
  }
});

it('stall with deliverAfterClientClose: false drops what a departed client left behind', async () => {
  const r = await rig({ deliverAfterClientClose: false });
  try {
    await r.accounts.findOne({ _id: 'a' });
    r.proxy.stall(['findAndModify']);
    const giveUp = new AbortController();
    const call = spend(r, { signal: giveUp.signal });
    await until(async () => r.proxy.stats().stalled === 1);
    const open = r.proxy.stats().openConnections;
    giveUp.abort(new Error('gave up'));
    await expect(call).rejects.toThrow('gave up');
    // The driver closes the connection the write went out on; once the proxy has seen it go, release.
    await until(async () => r.proxy.stats().openConnections === open - 1);
    r.proxy.release();
    await sleep(400);
    expect(await r.balance()).toBe(10);
    expect(await spend(r)).toEqual({ _id: 'a', balance: 9 });
  } finally {
    await r.close();
  }
});

it('driver 7.x: timeoutMS bounds nothing (operation, collection or client); an AbortSignal or socketTimeoutMS does', async () => {
  const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined); // timeoutMS is deprecated
  const r = await rig();
  const withClientTimeout = new MongoClient(r.proxy.uri, { ...CLIENT, timeoutMS: 300 });
  const withSocketTimeout = new MongoClient(r.proxy.uri, { ...CLIENT, socketTimeoutMS: 300 });
  const dbName = r.accounts.dbName;
  try {
    await withClientTimeout.db(dbName).command({ ping: 1 });
    await withSocketTimeout.db(dbName).command({ ping: 1 });
    await r.accounts.findOne({ _id: 'a' });
    r.proxy.stall();
    const started = Date.now();
    const update = { $inc: { balance: -1 } };
    const calls = {
      operationTimeoutMS: r.accounts.findOneAndUpdate({ _id: 'a' }, update, { timeoutMS: 300 }),
      collectionTimeoutMS: r.client.db(dbName).collection<Account>('accounts', { timeoutMS: 300 }).findOneAndUpdate({ _id: 'a' }, update),
      clientTimeoutMS: withClientTimeout.db(dbName).collection<Account>('accounts').findOneAndUpdate({ _id: 'a' }, update),
      maxTimeMS: r.accounts.findOneAndUpdate({ _id: 'a' }, update, { maxTimeMS: 300 }), // server-side: never got there
      socketTimeoutMS: withSocketTimeout.db(dbName).collection<Account>('accounts').findOneAndUpdate({ _id: 'a' }, update),
      signal: spend(r, { signal: AbortSignal.timeout(300) }),
    };
    for (const p of Object.values(calls)) p.catch(() => undefined);
    const outcomes = Object.fromEntries(
      await Promise.all(Object.entries(calls).map(async ([k, p]) => [k, await within(p, 1200)] as const)),
    );
    expect(outcomes).toEqual({
      operationTimeoutMS: 'pending',
      collectionTimeoutMS: 'pending',
      clientTimeoutMS: 'pending',
      maxTimeMS: 'pending',
      socketTimeoutMS: 'rejected',
      signal: 'rejected',
    });
    await expect(calls.socketTimeoutMS).rejects.toBeInstanceOf(MongoNetworkTimeoutError);
    expect(Date.now() - started).toBeLessThan(2500);
    expect(await r.balance()).toBe(10);

    r.proxy.release();
    await Promise.all([calls.operationTimeoutMS, calls.collectionTimeoutMS, calls.clientTimeoutMS, calls.maxTimeMS]);
    // Every one of the six landed, the two the client gave up on too.
    await until(async () => (await r.balance()) === 4);
  } finally {
    warn.mockRestore();
    await withClientTimeout.close();
    await withSocketTimeout.close();
    await r.close();
  }
});

it('stallReplies: the command runs at once, its reply is late', async () => {
  const r = await rig();
  try {
    await r.accounts.findOne({ _id: 'a' });
    r.proxy.stallReplies(['findAndModify']);
    const call = spend(r);
    await until(async () => (await r.balance()) === 9);
    expect(await within(call, 100)).toBe('pending');
    expect(await r.accounts.findOne({ _id: 'a' })).toEqual({ _id: 'a', balance: 9 }); // other commands' replies pass
    r.proxy.releaseReplies();
    expect(await call).toEqual({ _id: 'a', balance: 9 });
  } finally {
    await r.close();
  }
});

it('dropNextReplies: the call fails with a network error, yet the write landed', async () => {
  const r = await rig();
  try {
    r.proxy.dropNextReplies(1, ['findAndModify']);
    expect(await r.accounts.findOne({ _id: 'a' })).toEqual({ _id: 'a', balance: 10 }); // not a findAndModify
    const err = await spend(r).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MongoNetworkError);
    expect(await r.balance()).toBe(9);
    expect(r.proxy.stats().repliesDropped).toBe(1);
    // Only the next one: the driver reconnects and the following call goes through.
    expect(await spend(r)).toEqual({ _id: 'a', balance: 8 });
  } finally {
    await r.close();
  }
});

it('resetAll: calls in flight fail, held writes are gone, and the driver reconnects', async () => {
  const r = await rig();
  try {
    await r.accounts.findOne({ _id: 'a' });
    r.proxy.stall();
    const inFlight = [spend(r), spend(r), r.accounts.findOne({ _id: 'a' })];
    await until(async () => r.proxy.stats().stalled === 3);
    r.proxy.resetAll();
    const settled = await Promise.allSettled(inFlight);
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason).toBeInstanceOf(MongoNetworkError);
    }
    expect(r.proxy.stats().resets).toBeGreaterThanOrEqual(3);
    r.proxy.release();
    expect(await spend(r)).toEqual({ _id: 'a', balance: 9 }); // the reset writes never reached the server
  } finally {
    await r.close();
  }
});

it('random: the same seed makes the same decisions, and each decision is what the client sees', async () => {
  const run = async (seed: number) => {
    const r = await rig({ seed });
    try {
      await r.direct.updateOne({ _id: 'a' }, { $set: { balance: 100 } });
      r.proxy.random({
        stallProbability: 0.3,
        stallMs: [5, 30],
        dropReplyProbability: 0.2,
        resetProbability: 0.15,
        delayMs: [0, 3],
        filter: ['findAndModify'],
      });
      const failed: boolean[] = [];
      for (let i = 0; i < 10; i++) failed.push(await spend(r).then(() => false, () => true));
      r.proxy.random(null);
      const decisions = r.proxy.decisions();
      // A dropped reply landed, a reset never reached the server.
      const landed = decisions.filter((d) => !d.reset).length;
      expect(await r.balance()).toBe(100 - landed);
      expect(failed).toEqual(decisions.map((d) => d.dropReply || d.reset));
      return decisions;
    } finally {
      await r.close();
    }
  };
  const kinds = (ds: FaultDecision[]) => ds.map((d) => (d.reset ? 'reset' : d.dropReply ? 'drop' : d.stallMs ? 'stall' : 'ok'));
  const first = await run(42);
  const second = await run(42);
  expect(second).toEqual(first);
  expect(new Set(kinds(first))).toEqual(new Set(['reset', 'drop', 'stall', 'ok']));
  const other = await run(43);
  expect(kinds(other)).not.toEqual(kinds(first));
});

// A scripted server, to show framing across TCP chunks, moreToCome requests and exhaust replies, which the
// embedded server's driver traffic does not produce.
it('frames messages split across chunks, skips moreToCome requests and follows exhaust replies', async () => {
  const MORE_TO_COME = 1 << 1;
  const EXHAUST_ALLOWED = 1 << 16;
  const opMsg = (requestID: number, responseTo: number, flags: number, doc: Record<string, unknown>) => {
    const body = Buffer.from(BSON.serialize(doc));
    const msg = Buffer.alloc(21 + body.length);
    msg.writeInt32LE(msg.length, 0);
    msg.writeInt32LE(requestID, 4);
    msg.writeInt32LE(responseTo, 8);
    msg.writeInt32LE(2013, 12);
    msg.writeUInt32LE(flags, 16);
    msg[20] = 0;
    body.copy(msg, 21);
    return msg;
  };
  /** Cuts a byte stream into messages, and writes in small pieces so nothing lines up. */
  const reader = (socket: net.Socket, onMessage: (m: Buffer) => void) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= buf.readInt32LE(0)) {
        const n = buf.readInt32LE(0);
        onMessage(buf.subarray(0, n));
        buf = buf.subarray(n);
      }
    });
  };
  const trickle = async (socket: net.Socket, bytes: Buffer) => {
    for (let i = 0; i < bytes.length; i += 7) {
      socket.write(bytes.subarray(i, i + 7));
      await sleep(1);
    }
  };

  const serverSaw: string[] = [];
  const fake = net.createServer((socket) => {
    let writes = Promise.resolve();
    const send = (bytes: Buffer) => (writes = writes.then(() => trickle(socket, bytes)));
    socket.on('error', () => undefined);
    reader(socket, (m) => {
      const requestID = m.readInt32LE(4);
      const flags = m.readUInt32LE(16);
      const name = Object.keys(BSON.deserialize(m.subarray(21)))[0]!;
      serverSaw.push(name);
      if (flags & MORE_TO_COME) return;
      if (name === 'hello' && flags & EXHAUST_ALLOWED) {
        void send(
          Buffer.concat([
            opMsg(100, requestID, MORE_TO_COME, { ok: 1, n: 1 }),
            opMsg(101, 100, MORE_TO_COME, { ok: 1, n: 2 }),
            opMsg(102, 101, 0, { ok: 1, n: 3 }),
          ]),
        );
      } else {
        void send(opMsg(200 + requestID, requestID, 0, { ok: 1 }));
      }
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  const proxy = await startFaultProxy(`mongodb://127.0.0.1:${(fake.address() as AddressInfo).port}/?directConnection=true`);
  const socket = net.connect(proxy.port, '127.0.0.1');
  socket.on('error', () => undefined); // the reset
  try {
    expect(proxy.uri).toMatch(/^mongodb:\/\/127\.0\.0\.1:\d+\/\?directConnection=true$/);
    const replyFor: string[] = [];
    proxy.stallReplies((command) => {
      replyFor.push(command);
      return false;
    });
    proxy.dropNextReplies(1, ['insert', 'find']);
    const received: number[] = [];
    reader(socket, (m) => received.push(m.readInt32LE(8)));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await trickle(
      socket,
      Buffer.concat([
        opMsg(1, 0, EXHAUST_ALLOWED, { hello: 1 }),
        opMsg(2, 0, MORE_TO_COME, { insert: 'c', documents: [{ x: 1 }] }), // no reply: the drop skips it
        opMsg(3, 0, 0, { find: 'c' }),
      ]),
    );
    await closed; // the find's reply was dropped and the client connection reset
    expect(serverSaw).toEqual(['hello', 'insert', 'find']);
    expect(received).toEqual([1, 100, 101]); // the three exhaust replies, each answering the one before
    expect(replyFor).toEqual(['hello', 'hello', 'hello']);
    expect(proxy.stats()).toMatchObject({ commands: 3, repliesDropped: 1, byCommand: { hello: 1, insert: 1, find: 1 } });
  } finally {
    socket.destroy();
    await proxy.close();
    await new Promise<void>((r) => fake.close(() => r()));
  }
});
