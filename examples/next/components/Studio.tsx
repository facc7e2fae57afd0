'use client';
/**
 * The page's interactive part, built from credit-kit/client: the balance badge, a buy button that goes
 * through Checkout, the checkout return, a streaming chat with a stop button, and the history.
 */
import { useRouter } from 'next/navigation';
import { useCallback, useRef, useState, type FormEvent } from 'react';
import {
  BalanceBadge,
  BuyCreditsButton,
  CheckoutReturn,
  CreditHistory,
  CreditsProvider,
  InsufficientCredits,
  useCredits,
  useCreditsFetch,
  type CreditTransaction,
  type TransactionPage,
} from 'credit-kit/client';
import { CHARGE_ID_HEADER, CHAT_RESERVE, TOKENS_PER_CREDIT, type ChatEvent } from '@/lib/chat';
import type { ExampleUser } from '@/lib/session';

export function Studio({ user, returned }: { user: ExampleUser | null; returned?: 'success' | 'cancel' }) {
  const router = useRouter();
  const signOut = useCallback(async () => {
    await fetch('/api/session', { method: 'DELETE' });
    // To "/": a checkout return page (/success?session_id=…) belongs to the user who paid.
    router.replace('/');
    router.refresh();
  }, [router]);

  return (
    // A fresh cache per user: nothing of one user's balance or history is shown to the next.
    <CreditsProvider key={user?.id ?? 'signed-out'} apiBase="/api" swr={{ provider: () => new Map() }}>
      <header>
        <div className="bar">
          <span className="brand">credit-kit · Next.js example</span>
          {user && (
            <div className="account">
              <BalanceBadge lowBalanceThreshold={10} data-testid="balance" />
              <span>Signed in as {user.name}</span>
              <button type="button" className="link" onClick={() => void signOut()}>
                Sign out
              </button>
            </div>
          )}
        </div>
      </header>
      <main>
        <h1>A streaming chat paid with prepaid credits</h1>
        {user ? (
          <>
            <section aria-labelledby="buy">
              <h2 id="buy">Buy credits</h2>
              {returned === 'success' && <CheckoutReturn />}
              {returned === 'cancel' && <p role="status">Checkout cancelled. Nothing was charged.</p>}
              <div className="row">
                <BuyCreditsButton quantity={100} />
                <span className="muted">10 cents a credit, through Stripe Checkout (the simulator when no Stripe key is set).</span>
              </div>
            </section>
            <Chat />
            <section aria-labelledby="history">
              <h2 id="history">History</h2>
              <CreditHistory pageSize={10} caption="Every purchase, charge and settlement, newest first" />
            </section>
          </>
        ) : (
          <SignIn onSignedIn={() => router.refresh()} />
        )}
      </main>
    </CreditsProvider>
  );
}

function SignIn({ onSignedIn }: { onSignedIn(): void }) {
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const name = new FormData(e.currentTarget).get('name');
    const res = await fetch('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
    if (res.ok) onSignedIn();
    else setError(((await res.json().catch(() => null)) as { error?: { message?: string } } | null)?.error?.message ?? 'Could not sign in.');
  };
  return (
    <section aria-labelledby="sign-in">
      <h2 id="sign-in">Sign in</h2>
      <form className="row" onSubmit={(e) => void submit(e)}>
        <label>
          Your name <input type="text" name="name" required maxLength={32} />
        </label>
        <button type="submit">Sign in</button>
      </form>
      <p className="muted">No password: the same name is the same account.</p>
      {error && <p role="alert">{error}</p>}
    </section>
  );
}

type ChatState =
  | { state: 'idle' }
  | { state: 'streaming'; tokens: number }
  | { state: 'settling'; tokens: number }
  | { state: 'done'; tokens: number; charged: number; balance: number }
  | { state: 'stopped'; tokens: number; charged: number; balance: number }
  | { state: 'failed'; message: string };

function Chat() {
  const { fetch, insufficient, dismiss } = useCreditsFetch();
  const { refresh } = useCredits();
  const [prompt, setPrompt] = useState('What are prepaid credits?');
  const [answer, setAnswer] = useState('');
  const [status, setStatus] = useState<ChatState>({ state: 'idle' });
  const abort = useRef<AbortController | null>(null);
  const busy = status.state === 'streaming' || status.state === 'settling';

  const ask = async (e: FormEvent) => {
    e.preventDefault();
    const controller = new AbortController();
    abort.current = controller;
    setAnswer('');
    let tokens = 0;
    let chargeId: string | null = null;
    setStatus({ state: 'streaming', tokens });
    try {
      const res = await fetch('/api/chat', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt }),
        signal: controller.signal,
      });
      if (!res.ok) {
        // A 402 is shown by <InsufficientCredits>; anything else is said here.
        const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
        setStatus(res.status === 402 ? { state: 'idle' } : { state: 'failed', message: body?.error?.message ?? `The server answered ${res.status}.` });
        return;
      }
      chargeId = res.headers.get(CHARGE_ID_HEADER);
      for await (const event of serverSentEvents(res.body!)) {
        if (event.type === 'token') {
          tokens++;
          setAnswer((a) => a + event.text);
          setStatus({ state: 'streaming', tokens });
        } else if (event.type === 'done') {
          setStatus({ state: 'done', tokens: event.tokens, charged: event.charged, balance: event.balance });
        } else {
          setStatus({ state: 'failed', message: event.message });
        }
      }
      await refresh();
    } catch (err) {
      if (!controller.signal.aborted) {
        setStatus({ state: 'failed', message: err instanceof Error ? err.message : String(err) });
        return;
      }
      // Stopped: the server settles what it delivered as it notices; the settlement is in the history.
      setStatus({ state: 'settling', tokens });
      const settled = chargeId ? await findSettlement(chargeId) : null;
      await refresh();
      setStatus(
        settled
          ? { state: 'stopped', tokens, charged: CHAT_RESERVE - settled.amount, balance: settled.balanceAfter }
          : { state: 'failed', message: 'Stopped; the settlement has not shown up yet. The balance will catch up.' },
      );
    } finally {
      if (abort.current === controller) abort.current = null;
    }
  };

  return (
    <section aria-labelledby="chat">
      <h2 id="chat">Chat</h2>
      <p className="muted">
        Each answer reserves {CHAT_RESERVE} credits, then pays 1 credit per {TOKENS_PER_CREDIT} tokens delivered; stopping it pays only for what
        arrived. The model is a simulation (examples/next/lib/model.ts).
      </p>
      <form onSubmit={(e) => void ask(e)}>
        <label htmlFor="prompt">Your question</label>
        <textarea id="prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} maxLength={500} />
        <div className="row">
          <button type="submit" disabled={busy} aria-busy={busy || undefined}>
            Ask · reserves {CHAT_RESERVE} credits
          </button>
          <button type="button" disabled={status.state !== 'streaming'} onClick={() => abort.current?.abort()}>
            Stop
          </button>
        </div>
      </form>
      <div className="answer" data-testid="answer" aria-live="polite">
        {answer}
      </div>
      <p role="status" data-testid="chat-status">
        {describe(status)}
      </p>
      <InsufficientCredits insufficient={insufficient} onDismiss={dismiss} />
    </section>
  );
}

function describe(s: ChatState): string {
  switch (s.state) {
    case 'idle':
      return '';
    case 'streaming':
      return `Streaming… ${s.tokens} tokens`;
    case 'settling':
      return `Stopped after ${s.tokens} tokens; settling…`;
    case 'done':
      return `${s.tokens} tokens · reserved ${CHAT_RESERVE}, charged ${s.charged} · balance ${s.balance}`;
    case 'stopped':
      return `Stopped after ${s.tokens} tokens · reserved ${CHAT_RESERVE}, charged ${s.charged} · balance ${s.balance}`;
    case 'failed':
      return s.message;
  }
}

/** The events of a `text/event-stream` body, each `data:` line parsed as JSON. */
async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ChatEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6))
        .join('\n');
      if (data) yield JSON.parse(data) as ChatEvent;
    }
  }
}

/** The settlement of a stopped answer, once the server has written it (it notices the stop within moments). */
async function findSettlement(chargeId: string): Promise<CreditTransaction | null> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const res = await fetch('/api/credits/transactions?limit=10', { headers: { accept: 'application/json' } });
    if (res.ok) {
      const page = (await res.json()) as TransactionPage;
      const found = page.transactions.find((t) => t.kind === 'settle' && t.ref?.chargeId === chargeId);
      if (found) return found;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return null;
}
