/**
 * The client's size budgets, checked in CI: the whole of credit-kit/client, and what an app that only
 * shows a balance and sells bundles keeps of it after tree-shaking (tools/size.ts says why each).
 */
import { CLIENT_BUDGET_BYTES, STARTER_BUDGET_BYTES, STARTER_IMPORTS, clientBundleSize } from './size';

describe('credit-kit/client size', () => {
  it(`stays within ${CLIENT_BUDGET_BYTES} B gzipped as a whole`, () => {
    expect(clientBundleSize().gzipped).toBeLessThanOrEqual(CLIENT_BUDGET_BYTES);
  });

  it(`keeps only what is imported: { ${STARTER_IMPORTS.join(', ')} } within ${STARTER_BUDGET_BYTES} B`, () => {
    const whole = clientBundleSize();
    const starter = clientBundleSize(STARTER_IMPORTS);
    expect(starter.gzipped).toBeLessThanOrEqual(STARTER_BUDGET_BYTES);
    // Tree-shaking works at all: plans, auto-recharge, history and embedded checkout are left out.
    expect(starter.minified).toBeLessThan(whole.minified * 0.6);
  });
});
