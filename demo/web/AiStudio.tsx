/**
 * Step 3: two AI features paid with credits, through useCreditsFetch so every answer refreshes the balance
 * and a 402 turns into the kit's InsufficientCredits with a way to buy more.
 */
import { useState } from 'react';
import { InsufficientCredits, useCreditsFetch } from 'credit-kit/client';
import {
  ANALYSIS_RESERVE,
  SAMPLE_TEXT,
  SUMMARY_COST,
  analysisCost,
  countWords,
  textProblem,
  type AnalysisResult,
  type SummaryResult,
} from '../shared';

type Action = 'summary' | 'analysis' | 'failure';

type Outcome =
  | { kind: 'summary'; result: SummaryResult }
  | { kind: 'analysis'; result: AnalysisResult }
  | { kind: 'failed'; message: string; refunded: boolean };

export function AiStudio() {
  const { fetch, insufficient, dismiss } = useCreditsFetch();
  const [text, setText] = useState(SAMPLE_TEXT);
  const [busy, setBusy] = useState<Action | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const words = countWords(text);
  const problem = textProblem(text);

  async function run(action: Action) {
    setBusy(action);
    setOutcome(null);
    try {
      const res = await fetch(action === 'analysis' ? '/api/ai/analyze' : '/api/ai/summarize', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(action === 'failure' ? { text, simulateFailure: true } : { text }),
      });
      if (res.ok) {
        setOutcome(
          action === 'analysis'
            ? { kind: 'analysis', result: (await res.json()) as AnalysisResult }
            : { kind: 'summary', result: (await res.json()) as SummaryResult },
        );
      } else if (res.status !== 402) {
        // 402 is shown by <InsufficientCredits> below; anything else is a failed call.
        const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
        setOutcome({ kind: 'failed', message: body?.error?.message ?? `The server answered ${res.status}.`, refunded: res.status >= 500 });
      }
    } catch {
      setOutcome({ kind: 'failed', message: 'Could not reach the server.', refunded: false });
    } finally {
      setBusy(null);
    }
  }

  const estimate = analysisCost(words);
  return (
    <div className="ai">
      <label htmlFor="ai-text">Text for the AI</label>
      <textarea id="ai-text" className="input" rows={5} value={text} onChange={(e) => setText(e.target.value)} />
      <p className="muted small" aria-live="polite">
        {words} words{problem ? ` · ${problem}` : ''}
      </p>
      <div className="actions">
        <button type="button" className="ck-button" disabled={Boolean(problem) || busy !== null} aria-busy={busy === 'summary' || undefined} onClick={() => void run('summary')}>
          Summarize · {SUMMARY_COST} credits
        </button>
        <button type="button" className="ck-button" disabled={Boolean(problem) || busy !== null} aria-busy={busy === 'analysis' || undefined} onClick={() => void run('analysis')}>
          Analyze · {estimate} {estimate === 1 ? 'credit' : 'credits'}
        </button>
        <button type="button" className="ck-button button--danger" disabled={Boolean(problem) || busy !== null} aria-busy={busy === 'failure' || undefined} onClick={() => void run('failure')}>
          Summarize, but the model fails
        </button>
      </div>
      <p className="muted small">
        Summarize has a fixed price ({SUMMARY_COST} credits, charged before it runs). Analyze is metered: it reserves{' '}
        {ANALYSIS_RESERVE} credits, then settles one credit per 25 words and returns the rest. The third button makes
        the model throw; the kit refunds the charge.
      </p>

      {busy && (
        <p className="ck-status" role="status">
          Thinking…
        </p>
      )}
      <InsufficientCredits insufficient={insufficient} onDismiss={dismiss} bundle="starter" buyLabel="Buy 100 credits" />
      {outcome && <OutcomeView outcome={outcome} />}
    </div>
  );
}

function OutcomeView({ outcome }: { outcome: Outcome }) {
  if (outcome.kind === 'failed') {
    return (
      <div className="result result--failed" role="alert">
        <p>
          <strong>The AI call failed.</strong> {outcome.message}
        </p>
        {outcome.refunded && <p>Its credits were refunded: see the Refund line in the history.</p>}
      </div>
    );
  }
  if (outcome.kind === 'summary') {
    const r = outcome.result;
    return (
      <div className="result" role="status">
        <h3>Summary</h3>
        <blockquote>{r.summary}</blockquote>
        <p className="charge">
          Charged {r.charged} credits · balance {r.balance}
        </p>
      </div>
    );
  }
  const r = outcome.result;
  return (
    <div className="result" role="status">
      <h3>Analysis</h3>
      <dl className="stats">
        <div>
          <dt>Words</dt>
          <dd>{r.words}</dd>
        </div>
        <div>
          <dt>Sentences</dt>
          <dd>{r.sentences}</dd>
        </div>
        <div>
          <dt>Reading time</dt>
          <dd>{r.readingSeconds} s</dd>
        </div>
      </dl>
      <p className="keywords">
        {r.keywords.map((k) => (
          <span key={k} className="chip">
            {k}
          </span>
        ))}
      </p>
      <p className="charge">
        Reserved {r.reserved}, charged {r.charged}, returned {r.reserved - r.charged} · balance {r.balance}
      </p>
    </div>
  );
}
