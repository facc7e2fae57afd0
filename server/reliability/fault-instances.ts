/**
 * Instances of the kit for the in-process fault tests (grant-expiry.test.ts, revoke-faults.test.ts): each on
 * its own connection to one database, optionally through a fault proxy (tools/fault-proxy.ts) or a crashing
 * store (server/test/crashing-store.ts), quiet, and closed after each test with whatever else the test pushed
 * on `cleanups`. Call `faultInstances()` at the top of a test file: it registers the afterEach.
 */
import { randomUUID } from 'node:crypto';
import mongoose, { type Connection } from 'mongoose';
import { createCredits, type CreateCreditsOptions, type Credits } from 'credit-kit/server';
import { crashingMongoStore, type CrashPlan } from '../test/crashing-store';
import { startFaultProxy, type FaultProxy } from '../../tools/fault-proxy';
import { headerUser, mongoUri } from '../test/helpers';

export type FaultInstanceOptions = Partial<CreateCreditsOptions> & { proxy?: FaultProxy; crash?: () => CrashPlan | undefined };

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `dbPrefix` names each test's fresh database; `flushOnClose` flushes an instance's background work before its connection closes. */
export function faultInstances(dbPrefix: string, { flushOnClose = false }: { flushOnClose?: boolean } = {}) {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  });

  const db = () => `${dbPrefix}${randomUUID().replace(/-/g, '').slice(0, 12)}`;

  async function instance(dbName: string, options: FaultInstanceOptions = {}): Promise<Credits> {
    const { proxy, crash, ...rest } = options;
    const connection: Connection = await mongoose
      .createConnection(proxy?.uri ?? mongoUri(), { dbName, serverSelectionTimeoutMS: 5000, maxPoolSize: 20, retryWrites: false, ...(proxy ? { directConnection: true } : {}) })
      .asPromise();
    const base: CreateCreditsOptions = {
      connection,
      getUserId: headerUser,
      timeoutMs: 20_000,
      claimLeaseMs: 60_000,
      hooks: { onBackgroundError: () => undefined },
      logger: () => undefined,
      ...rest,
    };
    const credits = createCredits(crash ? { ...base, store: crashingMongoStore(connection, crash) } : base);
    await credits.init();
    cleanups.push(async () => {
      if (flushOnClose) await credits.flush().catch(() => undefined);
      await connection.close();
    });
    return credits;
  }

  /** Instance `a` through a fresh fault proxy and instance `b` straight to the server, on one fresh database. */
  async function proxiedPair(aOptions: Partial<CreateCreditsOptions> = {}, bOptions: Partial<CreateCreditsOptions> = {}): Promise<{ proxy: FaultProxy; a: Credits; b: Credits }> {
    const name = db();
    const proxy = await startFaultProxy(mongoUri());
    cleanups.push(() => proxy.close());
    const a = await instance(name, { proxy, ...aOptions });
    const b = await instance(name, bOptions);
    return { proxy, a, b };
  }

  /**
   * For a crash after the claim and one after the write landed: `seed` a fresh user through instance `b`,
   * run `act` on an instance that dies at that point, let `b` reconcile, then `after` checks what is left.
   */
  async function diesAtEachPoint(
    seed: (b: Credits, user: string) => Promise<void>,
    act: (a: Credits, user: string) => Promise<unknown>,
    after: (b: Credits, user: string, point: CrashPlan['point']) => Promise<void>,
  ): Promise<void> {
    const name = db();
    const b = await instance(name, { claimLeaseMs: 1 });
    for (const point of ['after-claim', 'after-apply'] as const) {
      const user = `dies-${point}`;
      await seed(b, user);
      const dying: CrashPlan = { point, mode: 'die' };
      const a = await instance(name, { crash: () => dying });
      await act(a, user).catch(() => undefined);
      expect(dying.dead).toBe(true);
      await sleep(5);
      await b.reconcile({ olderThanMs: 0 });
      await after(b, user, point);
    }
  }

  return { cleanups, db, diesAtEachPoint, instance, proxiedPair };
}
