/**
 * What happens to work the kit owes when something around it misbehaves: an app's refund rule that throws,
 * a give-back the database never takes, a logged value that cannot be printed.
 */
import { Background, GaveUpError } from '../ledger/background';
import { logFailure } from '../log';
import { audit, harness, post } from './helpers';

it('a refundOn that throws is logged, and the default rule refunds the failed request', async () => {
  const lines: string[] = [];
  const h = await harness(
    (app, credits) => {
      app.post('/ai', credits.requireCredits(3), (_req, res) => {
        res.status(503).json({ error: 'model overloaded' });
      });
    },
    {
      refundOn: () => {
        throw new Error('rule exploded');
      },
      logger: (_level, line) => void lines.push(line),
    },
  );
  try {
    await h.credits.grantCredits('rule', 10, { idempotencyKey: 'start' });
    const res = await post(`${h.url}/ai`, 'rule');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: 'model overloaded' }); // the route's own answer
    expect(await h.credits.getBalance('rule')).toBe(10);
    await h.credits.flush();
    const a = await audit(h.credits, 'rule');
    expect(a).toMatchObject({ balance: 10, sum: 10, kinds: { grant: 1, usage: 1, refund: 1 } });
    expect(lines).toEqual([expect.stringMatching(/^\[credit-kit\] misconfigured \(refundOn\): refundOn threw \(rule exploded\)/)]);
  } finally {
    await h.close();
  }
});

it('work given up after its retries is reported as an error that says what was owed', async () => {
  jest.useFakeTimers();
  try {
    const reported: unknown[] = [];
    const background = new Background((err) => reported.push(err));
    let attempts = 0;
    background.retry(async () => {
      attempts++;
      throw new Error('database down');
    }, 'giving back 4 credits to user u1 for the failed request charged by entry e1');
    for (let i = 0; i < 40 && reported.length === 0; i++) await jest.advanceTimersByTimeAsync(30_000);
    expect(attempts).toBe(16);
    expect(reported).toHaveLength(1);
    expect(reported[0]).toBeInstanceOf(GaveUpError);
    expect(String((reported[0] as Error).message)).toMatch(
      /^credit-kit gave up after 16 tries on giving back 4 credits to user u1 for the failed request charged by entry e1: reconcile\(\) finishes it if the database recorded its claim, otherwise it must be done by hand \(last error: database down\)$/,
    );
  } finally {
    jest.useRealTimers();
  }
});

it('a given-up give-back reaches the logger as an error line, never quieted like an outage warning', () => {
  const lines: Array<[string, string]> = [];
  const log = (level: 'warn' | 'error', line: string) => void lines.push([level, line]);
  for (let i = 0; i < 3; i++) logFailure(log, new GaveUpError(`giving back ${i} credits`, 16, new Error('down')), 'background work');
  expect(lines.map(([level]) => level)).toEqual(['error', 'error', 'error']);
});

it('logging a value that cannot be turned into text does not throw', () => {
  const odd = Object.create(null) as object;
  const lines: string[] = [];
  expect(() => logFailure((_level, line) => void lines.push(line), odd, 'somewhere')).not.toThrow();
  expect(lines).toEqual(['[credit-kit] internal (somewhere): [object Object]']);
});
