/**
 * The demo page: four steps (sign in, buy, use the AI, history), built from credit-kit/client's provider,
 * hooks and components plus a little page markup.
 */
import { useCallback, useEffect, useState, type FormEvent, type ReactNode } from 'react';
import {
  AutoRechargeAction,
  AutoRechargeSettings,
  BalanceBadge,
  BuyCreditsButton,
  BuyCreditsForm,
  CheckoutReturn,
  CreditHistory,
  CreditsProvider,
  PlanPicker,
  useCredits,
  useAutoRecharge,
  usePricing,
  type AutoRechargeStripe,
} from 'credit-kit/client';
import type { DemoInfo, DemoUser, MonthPassed } from '../shared';
import { AiStudio } from './AiStudio';

async function postJson<T>(path: string, body: unknown): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  const data = (await res.json().catch(() => null)) as (T & { error?: { message?: string } }) | null;
  if (!res.ok) throw new Error(data?.error?.message ?? `The server answered ${res.status}.`);
  return data as T;
}

export function App() {
  const [user, setUser] = useState<DemoUser | null | undefined>(undefined);
  const [info, setInfo] = useState<DemoInfo | null>(null);

  useEffect(() => {
    void fetch('/auth/me')
      .then((r) => r.json() as Promise<{ user: DemoUser | null }>)
      .then((r) => setUser(r.user), () => setUser(null));
    void fetch('/demo/info')
      .then((r) => r.json() as Promise<DemoInfo>)
      .then(setInfo, () => undefined);
  }, []);

  const signOut = useCallback(async () => {
    await postJson('/auth/sign-out', {});
    setUser(null);
  }, []);

  return (
    // A fresh cache per user: nothing of one demo user's balance or history is shown to the next.
    <CreditsProvider key={user?.id ?? 'signed-out'} apiBase="/api" swr={{ provider: () => new Map() }}>
      <header className="topbar">
        <div className="topbar-inner">
          <a className="brand" href="/">
            <span className="logo" aria-hidden="true">◆</span> credit-kit <span className="brand-sub">demo</span>
          </a>
          <div className="account">
            {user ? (
              <>
                <BalanceBadge lowBalanceThreshold={20} data-testid="balance" />
                <span className="who">{user.name}</span>
                <button type="button" className="link" onClick={() => void signOut()}>
                  Sign out
                </button>
              </>
            ) : (
              <span className="muted">Not signed in</span>
            )}
          </div>
        </div>
      </header>

      <main className="page">
        <section className="hero">
          <h1>Prepaid credits for an AI app</h1>
          <p>
            Sign in, buy credits through Checkout, spend them on two AI features, and watch the balance and the
            ledger move. A failed AI call gives its credits back.
          </p>
        </section>

        <ReturnNotice />

        <ol className="steps">
          <Step n={1} title="Sign in" done={Boolean(user)}>
            <SignIn user={user} onSignedIn={setUser} onSignOut={signOut} />
          </Step>
          <Step n={2} title="Buy credits" locked={!user}>
            <BuyStep simulator={info?.stripe === 'simulator'} />
            {info?.plans && <PlanStep simulator={info.stripe === 'simulator'} />}
          </Step>
          <Step n={3} title="Use the AI" locked={!user}>
            <AiStudio />
          </Step>
          <Step n={4} title="History" locked={!user}>
            <CreditHistory pageSize={8} caption="Every purchase, charge and refund, newest first" />
          </Step>
          <Step n={5} title="Auto-recharge" locked={!user}>
            <AutoRechargeStep simulator={info?.stripe === 'simulator'} />
          </Step>
        </ol>
      </main>

      <footer className="footer">
        {info && (
          <p>
            Payments:{' '}
            <strong>{info.stripe === 'simulator' ? 'Stripe Checkout simulator (no real payment)' : 'Stripe test mode'}</strong> ·
            Database: <strong>{info.database === 'embedded' ? 'embedded MongoDB-compatible server' : 'MONGODB_URI'}</strong> ·
            Built with <code>credit-kit/server</code> and <code>credit-kit/client</code>
          </p>
        )}
      </footer>
    </CreditsProvider>
  );
}

function Step({ n, title, done, locked, children }: { n: number; title: string; done?: boolean; locked?: boolean; children: ReactNode }) {
  return (
    <li className={`step${locked ? ' step--locked' : ''}${done ? ' step--done' : ''}`} aria-labelledby={`step-${n}`}>
      <h2 id={`step-${n}`}>
        <span className="step-n" aria-hidden="true">
          {done ? '✓' : n}
        </span>
        {title}
      </h2>
      {locked ? <p className="muted">Sign in first (step 1).</p> : children}
    </li>
  );
}

function SignIn({
  user,
  onSignedIn,
  onSignOut,
}: {
  user: DemoUser | null | undefined;
  onSignedIn: (user: DemoUser) => void;
  onSignOut: () => Promise<void>;
}) {
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (user === undefined) return <p className="muted">Checking your session…</p>;
  if (user) {
    return (
      <p>
        Signed in as <strong>{user.name}</strong>. The same name always opens the same account.{' '}
        <button type="button" className="link" onClick={() => void onSignOut()}>
          Use another name
        </button>
      </p>
    );
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn((await postJson<{ user: DemoUser }>('/auth/sign-in', { name })).user);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="signin" onSubmit={(e) => void submit(e)}>
      <label htmlFor="name">Your name</label>
      <div className="row">
        <input
          id="name"
          className="input"
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="Ada"
          autoComplete="nickname"
          maxLength={32}
          required
        />
        <button type="submit" className="ck-button" disabled={busy} aria-busy={busy || undefined}>
          Sign in
        </button>
      </div>
      <p className="muted small">No password: this demo keeps a signed cookie with your name.</p>
      {error && (
        <p role="alert" className="ck-error">
          {error}
        </p>
      )}
    </form>
  );
}

function BuyStep({ simulator }: { simulator: boolean }) {
  const { pricing } = usePricing();
  const price = (cents: number) =>
    new Intl.NumberFormat(undefined, { style: 'currency', currency: (pricing?.currency ?? 'usd').toUpperCase() }).format(cents / 100);
  return (
    <div className="buy">
      <div>
        <h3>Bundles</h3>
        <div className="bundles">
          {pricing?.bundles.map((b) => (
            <div className="bundle" key={b.id}>
              <p className="bundle-name">{b.id.charAt(0).toUpperCase() + b.id.slice(1)}</p>
              <p className="bundle-credits">{b.credits.toLocaleString()} credits</p>
              <p className="muted">
                {price(b.price)}
                {pricing.creditPriceCents * b.credits > b.price &&
                  ` · save ${Math.round((1 - b.price / (pricing.creditPriceCents * b.credits)) * 100)}%`}
              </p>
              <BuyCreditsButton bundle={b.id}>Buy {b.credits.toLocaleString()}</BuyCreditsButton>
            </div>
          ))}
        </div>
      </div>
      <div>
        <h3>Or choose an amount</h3>
        <BuyCreditsForm defaultQuantity={100} />
        {pricing && <p className="muted small">{price(pricing.creditPriceCents)} a credit.</p>}
      </div>
      <p className="muted small buy-note">
        {simulator
          ? 'Checkout opens the demo’s Stripe simulator: pick the card that pays or the one that is declined. No real payment is made.'
          : 'Checkout opens Stripe in test mode: pay with card 4242 4242 4242 4242, any future date and any CVC.'}
      </p>
    </div>
  );
}

/** A plan next to the top-ups: its allowance each period, what expires when, and (simulated) a month passing. */
function PlanStep({ simulator }: { simulator: boolean }) {
  const { refresh } = useCredits();
  const [month, setMonth] = useState<MonthPassed | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const pass = async () => {
    setBusy(true);
    setError(null);
    try {
      setMonth(await postJson<MonthPassed>('/demo/month-passes', {}));
      await refresh(); // the balance, its breakdown, the history and the plan
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  const said: Record<MonthPassed['outcome'], string> = {
    renewed: 'the plan renewed: a new allowance, and the last period’s unspent credits expired (up to 100 rolled over)',
    ended: 'the plan ended at the end of its period: its unspent credits expired, up to 100 kept one more period',
    none: 'there is no active plan to renew',
  };
  return (
    <div className="plan">
      <h3>Or a plan: credits every month</h3>
      <PlanPicker />
      <p className="muted small">
        The allowance expires at the end of each period (up to 100 unspent credits roll over into the next); purchased
        credits never expire and are never touched by a renewal. <BalanceBadge showExpiry data-testid="expiry" />
      </p>
      {simulator && (
        <p>
          <button type="button" className="ck-button" disabled={busy} aria-busy={busy || undefined} onClick={() => void pass()}>
            A month passes (simulated)
          </button>{' '}
          {month && (
            <span role="status">
              Simulated date {new Date(month.now).toLocaleDateString(undefined, { timeZone: 'UTC' })}: {said[month.outcome]}
              {month.creditsExpired > 0 ? ` (${month.creditsExpired} credits expired).` : '.'}
            </span>
          )}
        </p>
      )}
      {error && (
        <p role="alert" className="ck-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** After Checkout: the kit's CheckoutReturn on /success, a short note on /cancel. */
function ReturnNotice() {
  const [path, setPath] = useState(() => window.location.pathname);
  if (path !== '/success' && path !== '/cancel') return null;
  const close = () => {
    window.history.replaceState(null, '', '/');
    setPath('/');
  };
  return (
    <section className={`notice notice--${path.slice(1)}`} aria-label="Checkout result">
      {path === '/success' ? (
        <CheckoutReturn />
      ) : (
        <p role="status" className="ck-status">
          Checkout cancelled. Nothing was charged.
        </p>
      )}
      <button type="button" className="link" onClick={close}>
        Dismiss
      </button>
    </section>
  );
}

/**
 * The demo's stand-in for Stripe.js `handleNextAction` when it runs on the Stripe simulator: the simulated bank
 * approves the payment (demo/stripe-simulator.ts). With Stripe keys, an app passes `loadStripe(publishableKey)`.
 */
const simulatedStripeJs: AutoRechargeStripe = {
  async handleNextAction({ clientSecret }) {
    const res = await fetch('/simulated-checkout/authenticate', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ clientSecret }),
    });
    return res.ok ? {} : { error: { message: 'The simulated bank refused.' } };
  },
};

/** Settings, the step a card that needs authentication asks for, and a refresh while a top-up is on its way. */
function AutoRechargeStep({ simulator }: { simulator: boolean }) {
  const { settings, refresh } = useAutoRecharge();
  // The credits of a top-up arrive with Stripe's event, a moment after the spend: the page asks again meanwhile.
  const waiting = settings?.enabled === true;
  useEffect(() => {
    if (!waiting) return;
    const timer = setInterval(() => void refresh(), 1500);
    return () => clearInterval(timer);
  }, [waiting, refresh]);
  return (
    <div className="auto-recharge">
      <p className="muted small">
        Save a card, choose a threshold and a top-up: when a spend takes your balance below the threshold, the kit charges
        the card once and adds the credits when Stripe confirms the payment.{' '}
        {simulator && 'The simulator offers a card that pays, one that needs authentication and one that is declined.'}
      </p>
      <AutoRechargeAction stripe={simulator ? simulatedStripeJs : null} />
      <AutoRechargeSettings />
    </div>
  );
}
