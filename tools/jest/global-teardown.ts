import type { RunningServer } from '../embedded';

export default async function globalTeardown(): Promise<void> {
  const running = (globalThis as { __creditKitServers?: RunningServer[] }).__creditKitServers ?? [];
  await Promise.all(running.map((s) => s.stop()));
}
