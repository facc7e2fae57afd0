/**
 * Fail closed on the Fetch side: with the database's replies stalled (a fault proxy between the driver and
 * the embedded server), withCredits answers 503 within timeoutMs and does not run the handler; the charge
 * that landed although its reply was late is given back once the database answers again.
 */
import { createFetchCredits } from 'credit-kit/fetch';
import { startFaultProxy } from '../../tools/fault-proxy';
import { audit, connect, mongoUri, post } from './helpers';
import { fetchHeaderUser, serveFetch } from './fetch-helpers';

it('answers 503 within timeoutMs and runs nothing while the database stalls, then gives the late charge back', async () => {
  const proxy = await startFaultProxy(mongoUri());
  const connection = await connect(proxy.uri);
  const logged: string[] = [];
  const credits = createFetchCredits({ connection, getUserId: fetchHeaderUser, timeoutMs: 800, logger: (level, line) => logged.push(`${level} ${line}`) });
  await credits.init();
  let runs = 0;
  const guarded = credits.withCredits(2, () => {
    runs++;
    return Response.json({ ok: true });
  });
  const server = await serveFetch(guarded);
  try {
    await credits.grantCredits('u', 10, { idempotencyKey: 'start' });
    expect((await post(`${server.url}/ai`, 'u')).status).toBe(200);
    expect(runs).toBe(1);
    await credits.flush();

    proxy.stallReplies();
    const started = Date.now();
    const res = await post(`${server.url}/ai`, 'u');
    const took = Date.now() - started;
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: { code: 'store_unavailable', message: 'The credits database is unavailable; try again shortly.' } });
    expect(took).toBeGreaterThanOrEqual(700);
    expect(took).toBeLessThan(3000);
    expect(runs).toBe(1);
    expect(logged.some((line) => /^warn \[credit-kit\] store_unavailable \(POST \/ai\)/.test(line))).toBe(true);

    proxy.releaseReplies();
    await credits.flush();
    const a = await audit(credits, 'u');
    expect(a.balance).toBe(8); // the first request's 2; the refused one's late charge is given back
    expect(a.sum).toBe(a.balance);
    expect(a.kinds).toEqual({ grant: 1, usage: 2, refund: 1 });
  } finally {
    proxy.releaseReplies();
    await server.close();
    await connection.close();
    await proxy.close();
  }
});
