import { describeCreditStore } from './conformance';
import { MongoCreditStore } from './mongo-store';
import { connect } from '../test/helpers';

describeCreditStore('MongoDB (mongoose connection)', async () => {
  const connection = await connect();
  const raw = connection.getClient().db(connection.name).collection<{ _id: string; balance: number; journal: unknown[] }>('credit_accounts');
  return {
    store: new MongoCreditStore({ connection, collectionPrefix: 'credit_', timeoutMs: 5000 }),
    rawAccount: (userId) => raw.findOne({ _id: userId }),
    close: () => connection.close(),
  };
});
