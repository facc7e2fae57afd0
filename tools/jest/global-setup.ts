/**
 * Starts the servers the tests run against, once per `jest` run, and hands their addresses to the test
 * workers through the environment: MONGODB_URI (the embedded server unless already set) and
 * STRIPE_MOCK_URL (stripe-mock unless already set).
 */
import { startEmbeddedMongo, startStripeMock, type RunningServer } from '../embedded';

const running: RunningServer[] = [];

export default async function globalSetup(): Promise<void> {
  if (!process.env.MONGODB_URI) {
    const mongo = await startEmbeddedMongo();
    running.push(mongo);
    process.env.MONGODB_URI = mongo.uri;
    process.env.CREDIT_KIT_EMBEDDED_MONGO = '1';
  }
  if (!process.env.STRIPE_MOCK_URL) {
    const mock = await startStripeMock();
    running.push(mock);
    process.env.STRIPE_MOCK_URL = `http://${mock.host}:${mock.port}`;
  }
  (globalThis as { __creditKitServers?: RunningServer[] }).__creditKitServers = running;
}
