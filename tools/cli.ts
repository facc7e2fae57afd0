/**
 * `npm run mongo` and `npm run stripe-mock`: start one embedded server in the foreground and print how to
 * reach it, for tools outside the test suite (mongosh, Compass, a second app).
 */
import { startEmbeddedMongo, startStripeMock, type RunningServer } from './embedded';

async function main(command: string | undefined): Promise<void> {
  let server: RunningServer;
  if (command === 'mongo') {
    const dataDir = process.env.CREDIT_KIT_MONGO_DATA;
    const mongo = await startEmbeddedMongo({ dataDir, listen: process.env.CREDIT_KIT_MONGO_LISTEN });
    console.log(`Embedded MongoDB-compatible server ready (${dataDir ? `data in ${dataDir}` : 'temporary data'}).`);
    console.log(`MONGODB_URI=${mongo.uri}`);
    server = mongo;
  } else if (command === 'stripe-mock') {
    const mock = await startStripeMock();
    console.log(`stripe-mock ready: new Stripe(key, { host: '${mock.host}', port: ${mock.port}, protocol: 'http' })`);
    console.log(`STRIPE_MOCK_URL=http://${mock.host}:${mock.port}`);
    server = mock;
  } else {
    console.error('usage: tsx tools/cli.ts mongo|stripe-mock');
    process.exit(2);
  }
  console.log('Press Ctrl+C to stop.');
  const stop = () => void server.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  server.process.once('exit', (code) => process.exit(code ?? 1));
}

main(process.argv[2]).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
