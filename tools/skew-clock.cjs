/**
 * A --require preload that shifts this process's wall clock by CK_CLOCK_SKEW_MS milliseconds (may be
 * negative): Date.now(), new Date() and Date() read the real time plus the skew. Dates built from a value
 * (new Date(ms), new Date(string)) are left as they are, and so are the monotonic clocks (performance.now,
 * process.hrtime) that timers run on, as on a host whose wall clock is off.
 *
 *   CK_CLOCK_SKEW_MS=70000 node --require ./tools/skew-clock.cjs app.js
 *
 * The reliability checker (server/reliability/checker.test.ts) runs its instances with it, so that each one
 * judges leases and timestamps by a clock minutes away from the others'.
 */
'use strict';

const skew = Number(process.env.CK_CLOCK_SKEW_MS ?? 0);
if (!Number.isFinite(skew)) {
  throw new Error(`skew-clock: CK_CLOCK_SKEW_MS must be a number of milliseconds, got ${process.env.CK_CLOCK_SKEW_MS}`);
}

if (skew !== 0 && !globalThis.__ckSkewedClock) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  const now = () => realNow() + skew;

  // A function rather than a subclass: Date() called without `new` must still answer a string.
  function SkewedDate(...args) {
    if (!new.target) return new RealDate(now()).toString();
    // Instances are real Dates (their prototype is Date.prototype), so instanceof, BSON and JSON see dates.
    const target = new.target === SkewedDate ? RealDate : new.target;
    return Reflect.construct(RealDate, args.length === 0 ? [now()] : args, target);
  }
  Object.setPrototypeOf(SkewedDate, RealDate); // Date.UTC, Date.parse, …
  Object.defineProperty(SkewedDate, 'prototype', { value: RealDate.prototype, writable: false });
  Object.defineProperty(SkewedDate, 'length', { value: 7 });
  Object.defineProperty(SkewedDate, 'name', { value: 'Date' });
  SkewedDate.now = now;
  SkewedDate.toString = () => RealDate.toString();

  globalThis.Date = SkewedDate;
  globalThis.__ckSkewedClock = { skewMs: skew, RealDate };
}
