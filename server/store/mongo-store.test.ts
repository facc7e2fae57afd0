import { describeCreditStore } from './conformance';
import { MongoCreditStore } from './mongo-store';
import { createCredits } from 'credit-kit/server';
import { connect, headerUser } from '../test/helpers';
import type { CreditStore } from './types';

describeCreditStore('MongoDB (mongoose connection)', async () => {
  const connection = await connect();
  const raw = connection.getClient().db(connection.name).collection<{ _id: string; balance: number; journal: unknown[] }>('credit_accounts');
  return {
    store: new MongoCreditStore({ connection, collectionPrefix: 'credit_' }),
    rawAccount: (userId) => raw.findOne({ _id: userId }),
    close: () => connection.close(),
  };
});

it('createCredits({ store }) runs the whole kit on the store it is given, without a connection', async () => {
  const connection = await connect();
  try {
    const inner = new MongoCreditStore({ connection, collectionPrefix: 'plugged_' });
    const calls: string[] = [];
    // A store of the app's own: here one that counts what it is asked, in front of the MongoDB one.
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as CreditStore;
    const credits = createCredits({ store, getUserId: headerUser });
    await credits.init();
    expect(await credits.grantCredits('plugged', 10, { idempotencyKey: 'g' })).toMatchObject({ granted: true, balance: 10 });
    expect(await credits.deductCredits('plugged', 4)).toBe(true);
    await credits.flush();
    expect(await credits.getBalance('plugged')).toBe(6);
    expect(calls).toEqual(expect.arrayContaining(['init', 'insertClaim', 'applyEntry', 'insertLedgerEntries', 'getBooks', 'writeBooks', 'pullJournals', 'getAccount']));
    expect(await connection.getClient().db(connection.name).collection('plugged_accounts').findOne({ _id: 'plugged' as never })).toMatchObject({ balance: 6 });
  } finally {
    await connection.close();
  }
});
