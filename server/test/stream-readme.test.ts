/**
 * The README's two streaming examples (Streaming AI routes), as written there, over real HTTP against the
 * embedded database: read to the end, and aborted by the client mid-stream.
 */
import express from 'express';
import type { FetchCredits } from 'credit-kit/fetch';
import type { Credits } from 'credit-kit/server';
import { consistentAudit, harness } from './helpers';
import { fetchHarness } from './fetch-helpers';

/** Stand-in for the model: a word every 50 ms, stopping when `signal` aborts. */
async function* streamModel(prompt: string, signal: AbortSignal) {
  for (const word of `You asked: ${prompt}`.split(' ')) {
    await new Promise((r) => setTimeout(r, 50));
    if (signal.aborted) return;
    yield word;
  }
}

function expressApp(app: express.Express, credits: Credits): void {
  app.use(express.json());
  // Reserves 50; charges 1 credit per 10 words delivered.
  app.post('/api/chat', credits.requireCredits(50, { metered: true }, async (req, res) => {
    const { signal, settle } = req.credits!;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    let words = 0;
    try {
      for await (const word of streamModel(req.body.prompt, signal)) {
        res.write(`data: ${JSON.stringify(word)}\n\n`);
        words++;
      }
    } finally {
      // At the end, once the client went away (the model stopped at the signal), or when the model failed.
      await settle(Math.ceil(words / 10));
    }
    res.end('data: [DONE]\n\n');
  }));
}

function nextRoute(credits: FetchCredits) {
  return credits.withCredits(50, { metered: true }, async (request, { credits: c }) => {
    const { prompt } = await request.json();
    const encoder = new TextEncoder();
    let words = 0;
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        let failed: unknown;
        try {
          for await (const word of streamModel(prompt, c.signal)) {
            controller.enqueue(encoder.encode(`data: ${JSON.stringify(word)}\n\n`));
            words++;
          }
        } catch (err) {
          failed = err;
        }
        await c.settle(Math.ceil(words / 10)); // at the end, the client gone, or the model failed
        if (failed) controller.error(failed);
        else if (!c.signal.aborted) {
          controller.enqueue(encoder.encode('data: [DONE]\n\n'));
          controller.close();
        }
      },
    });
    return new Response(body, { headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' } });
  });
}

const PROMPT = 'tell me a story about a river that learned to count its own stones one by one';

describe.each([
  ['Express', async () => harness(expressApp)],
  ['Next.js route handler', async () => fetchHarness((credits) => ({ 'POST /api/chat': nextRoute(credits) }))],
])('the README streaming example on %s', (_name, start) => {
  let h: Awaited<ReturnType<typeof harness>> | Awaited<ReturnType<typeof fetchHarness>>;
  beforeAll(async () => {
    h = await start();
  }, 60_000);
  afterAll(() => h.close());

  async function chat(user: string, abortAfter?: number): Promise<string[]> {
    const abort = new AbortController();
    const res = await fetch(`${h.url}/api/chat`, {
      method: 'POST',
      headers: { 'x-test-user': user, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT }),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const text = new TextDecoder();
    let all = '';
    for (;;) {
      const events = all.split('\n\n').filter(Boolean).map((e) => e.slice('data: '.length));
      if (abortAfter !== undefined && events.length >= abortAfter) {
        abort.abort();
        return events;
      }
      const next = await reader.read();
      if (next.done) return events;
      all += text.decode(next.value, { stream: true });
    }
  }

  it('streams the answer and charges 1 credit per 10 words', async () => {
    await h.credits.grantCredits('reader', 100, { idempotencyKey: 'reader' });
    const events = await chat('reader');
    const words = `You asked: ${PROMPT}`.split(' ');
    expect(events).toEqual([...words.map((w) => JSON.stringify(w)), '[DONE]']);
    const a = await consistentAudit(h.credits, 'reader');
    expect(a.balance).toBe(100 - Math.ceil(words.length / 10));
    expect(a.kinds).toEqual({ grant: 1, usage: 1, settle: 1 });
  });

  it('settles what was delivered when the client goes away mid-stream', async () => {
    await h.credits.grantCredits('leaver', 100, { idempotencyKey: 'leaver' });
    expect(await chat('leaver', 3)).toHaveLength(3);
    // The route hears of it from its signal and settles the words it delivered (at most a few: 1 credit).
    while ((await h.credits.getBalance('leaver')) !== 99) await new Promise((r) => setTimeout(r, 10));
    expect((await consistentAudit(h.credits, 'leaver')).kinds).toEqual({ grant: 1, usage: 1, settle: 1 });
  });
});
