// Types for `import 'credit-kit/client/styles.css'` (the package's exports point TypeScript here), so that
// the side-effect import type-checks where TypeScript checks that such imports resolve (TypeScript 7's default).
// The stylesheet exports nothing.
export {};
