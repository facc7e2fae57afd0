/**
 * Starts client/test/server-fixture.ts in a child process and talks to its test-only routes.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface TestServer {
  /** Origin of the fixture, e.g. http://127.0.0.1:41234. */
  url: string;
  /** Where the kit's router is mounted: pass as `apiBase`. */
  apiBase: string;
  /** Grants credits (optionally expiring, from a named source); resolves with the balance. */
  grant(user: string, amount: number, terms?: { expiresAt?: string; source?: string }): Promise<number>;
  /** Completes a session the kit created, as the customer would on Stripe's page. */
  pay(sessionId: string, outcome?: 'paid' | 'processing'): Promise<void>;
  /** Creates a Checkout Session for this user through the kit's route; returns its id. */
  createSession(user: string, quantity?: number): Promise<string>;
  /** Delivers, signed, what Stripe sends once the user's subscription checkout is paid (completion and first invoice). */
  subscribed(user: string): Promise<void>;
  /** How many checkout POSTs reached the server for this user. */
  checkoutPosts(user: string): Promise<number>;
  /** Auto-recharge: saves a card as the customer would on Stripe's page (the kit's route, then the signed completion). */
  saveCard(user: string): Promise<void>;
  /** A spend, with the journal moved so that a crossing of the threshold has been seen. */
  spend(user: string, amount: number): Promise<void>;
  /** Stripe's signed verdict on the user's current auto-recharge payment. */
  rechargeOutcome(user: string, outcome: 'succeeded' | 'failed', code?: string): Promise<void>;
  close(): Promise<void>;
}

const ROOT = join(__dirname, '..', '..');

export async function startTestServer(): Promise<TestServer> {
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', join(__dirname, 'server-fixture.ts')], {
    cwd: ROOT,
    env: process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server-fixture did not start in 30 s.\n${stderr}`)), 30_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = /^LISTENING (\S+)$/.exec(line);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server-fixture exited with ${code} before listening.\n${stderr}`));
    });
  });

  const json = async <T>(res: Response): Promise<T> => {
    if (!res.ok) throw new Error(`${res.url} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as T;
  };

  return {
    url,
    apiBase: `${url}/api`,
    async grant(user, amount, terms = {}) {
      const res = await fetch(`${url}/test/grant`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user, amount, ...terms }),
      });
      return (await json<{ balance: number }>(res)).balance;
    },
    async pay(sessionId, outcome = 'paid') {
      const res = await fetch(`${url}/test/pay/${encodeURIComponent(sessionId)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ outcome }),
      });
      if (res.status !== 204) throw new Error(`/test/pay answered ${res.status}`);
    },
    async createSession(user, quantity = 100) {
      const res = await fetch(`${url}/api/stripe/checkout/credits`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-test-user': user },
        body: JSON.stringify({ quantity }),
      });
      return (await json<{ id: string }>(res)).id;
    },
    async subscribed(user) {
      const res = await fetch(`${url}/test/subscribed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user }) });
      if (res.status !== 204) throw new Error(`/test/subscribed answered ${res.status}`);
    },
    async checkoutPosts(user) {
      return (await json<{ count: number }>(await fetch(`${url}/test/checkout-posts?user=${encodeURIComponent(user)}`))).count;
    },
    async saveCard(user) {
      const res = await fetch(`${url}/test/save-card`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user }) });
      if (res.status !== 204) throw new Error(`/test/save-card answered ${res.status}: ${await res.text()}`);
    },
    async spend(user, amount) {
      const res = await fetch(`${url}/test/spend`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, amount }) });
      if (res.status !== 204) throw new Error(`/test/spend answered ${res.status}`);
    },
    async rechargeOutcome(user, outcome, code) {
      const res = await fetch(`${url}/test/recharge-outcome`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, outcome, code }) });
      if (res.status !== 204) throw new Error(`/test/recharge-outcome answered ${res.status}`);
    },
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
