// Runs once when `next start` starts the server, before it answers a request: the kit is created, its
// indexes made, what a crash may have left half done repaired, and the reconciler started.
export async function register(): Promise<void> {
  // Not on the Edge runtime (mongoose needs Node), nor while `next build` prerenders.
  if (process.env.NEXT_RUNTIME !== 'nodejs' || process.env.NEXT_PHASE === 'phase-production-build') return;
  const { getKit } = await import('./lib/credits');
  const { credits, ready } = getKit();
  await ready;
  const report = await credits.reconcile();
  if (report.adjustmentsApplied > 0) console.log(`[example] Reconciled ${report.adjustmentsApplied} purchase adjustments left by a previous run`);
  credits.startReconciler({ onError: (err) => console.error('[example] reconcile failed:', err) });
  console.log('[example] credit-kit is ready (credit-kit/fetch on mongoose)');
}
