// The metered, streaming chat route: withCredits reserves CHAT_RESERVE credits, the simulated model streams
// its answer as server-sent events, and the route settles what it delivered: the whole answer when it ends,
// or the tokens sent so far when the client stops it (the rest of the reservation goes back).
import type { CreditsContext } from 'credit-kit/fetch';
import { CHARGE_ID_HEADER, CHAT_RESERVE, chatCost, promptProblem, type ChatEvent } from '@/lib/chat';
import { getCredits } from '@/lib/credits';
import { simulatedAnswer } from '@/lib/model';

export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

let guarded: ((request: Request) => Promise<Response>) | undefined;

export async function POST(request: Request): Promise<Response> {
  // The question is checked before the guard charges anything: a 400 after the charge is not refunded.
  const json = (request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json');
  const body = json ? ((await request.clone().json().catch(() => null)) as { prompt?: unknown } | null) : null;
  const problem = json ? promptProblem(body?.prompt) : 'Send JSON: { "prompt": "…" }.';
  if (problem) return Response.json({ error: { code: 'invalid_prompt', message: problem } }, { status: 400 });
  // Metered: if this process dies mid-answer, reconcile() decides the reservation after settleWithinMs.
  guarded ??= getCredits().withCredits(CHAT_RESERVE, { metered: true }, chat);
  return guarded(request);
}

async function chat(request: Request, { credits }: { credits: CreditsContext }): Promise<Response> {
  const { prompt } = (await request.json()) as { prompt: string };
  const tokens = simulatedAnswer(prompt);
  const encoder = new TextEncoder();
  const send = (controller: ReadableStreamDefaultController<Uint8Array>, event: ChatEvent) =>
    controller.enqueue(encoder.encode(`data: ${JSON.stringify(event)}\n\n`));

  let delivered = 0;
  let stopped = false;
  let settlement: Promise<{ charged: number; balance: number }> | undefined;
  /** Once, whichever end comes first: the last token, a cancelled stream or an aborted request. */
  const settle = () => (settlement ??= credits.settle(chatCost(delivered)));
  const pause = abortablePause();

  const stop = (why: string) => {
    if (stopped) return;
    stopped = true;
    pause.cancel();
    // Every token out (the client left before `done`, or Next.js ends the request after it): the same
    // settlement as a whole answer, which the end of the stream reports if it gets there.
    const whole = delivered === tokens.length;
    settle().then(
      (r) => {
        if (!whole) console.log(`[example] ${credits.userId}: chat stopped (${why}) after ${delivered} of ${tokens.length} tokens; reserved ${CHAT_RESERVE}, settled ${r.charged}; balance ${r.balance}`);
      },
      (err: unknown) => console.error(`[example] ${credits.userId}: could not settle a stopped chat now (reconcile() will):`, err),
    );
  };
  // The kit's signal: aborted when the client goes away before the answer ends (request.signal, or the
  // body's reader cancelling it), the same on Express and on Fetch.
  credits.signal.addEventListener('abort', () => stop('the client went away'), { once: true });

  // Pulled one token at a time (highWaterMark 0): a token is produced only when the server can send it,
  // so `delivered` counts what went out, not what a queue held.
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (stopped) return;
        const next = tokens[delivered];
        if (next === undefined) {
          let last: ChatEvent;
          try {
            const r = await settle();
            console.log(`[example] ${credits.userId}: chat answered ${delivered} tokens; reserved ${CHAT_RESERVE}, settled ${r.charged}; balance ${r.balance}`);
            last = { type: 'done', tokens: delivered, reserved: CHAT_RESERVE, charged: r.charged, balance: r.balance };
          } catch (err) {
            console.error(`[example] ${credits.userId}: could not settle a chat answer now (reconcile() will):`, err);
            last = { type: 'error', message: 'The answer was delivered, but its cost could not be settled yet.' };
          }
          if (stopped) return; // the client went away meanwhile: there is no one to tell
          send(controller, last);
          controller.close();
          return;
        }
        await pause.wait(next.delayMs);
        if (stopped) return;
        send(controller, { type: 'token', text: next.text });
        delivered++;
      },
      cancel() {
        stop('the stream was cancelled');
      },
    },
    { highWaterMark: 0 },
  );

  return new Response(stream, {
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      // no-transform: no compression, which would hold tokens back.
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      [CHARGE_ID_HEADER]: credits.chargeId,
    },
  });
}

/** setTimeout as a promise that `cancel()` resolves at once: a stopped answer does not wait out a pause. */
function abortablePause(): { wait(ms: number): Promise<void>; cancel(): void } {
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  return {
    wait: (ms) =>
      new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, ms);
      }),
    cancel() {
      clearTimeout(timer);
      wake?.();
    },
  };
}
