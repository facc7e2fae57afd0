/**
 * Idempotency keys, one constructor each. A key names the one change it stands for: the ledger applies at
 * most one entry per (user, key), so two places that build the same key must mean the same change, and
 * two different changes must never share one. Tests build keys through these too.
 */

/** A guarded request sent with an `Idempotency-Key` header. */
export const requestKey = (header: string) => `request:${header}` as const;
/** `deductCredits(userId, amount, { idempotencyKey })`. */
export const deductKey = (key: string) => `deduct:${key}` as const;
/** `grantCredits(userId, amount, { idempotencyKey })`. */
export const grantKey = (key: string) => `grant:${key}` as const;
/**
 * Everything given back to one charged request: the failure refund, and the undo of a charge whose request
 * was refused. One key, so a request is given back at most once, whichever path gets there first.
 */
export const giveBackKey = (chargeId: string) => `refund:${chargeId}` as const;
/** The settlement of a metered request (`settle(actual)`): at most one per charge. */
export const settleKey = (chargeId: string) => `settle:${chargeId}` as const;
/** The n-th ledger change decided on a Checkout purchase (credit, clawback or reversal). */
export const purchaseKey = (sessionId: string, step: number) => `checkout:${sessionId}:${step}` as const;

/** The grant a Checkout purchase's credits belong to: its clawbacks take from it, its reversals add to it. */
export const purchaseGrantId = (sessionId: string) => `checkout:${sessionId}` as const;
/** The expiry of one grant: its unspent rest leaves the balance once, under this key. */
export const expireKey = (grantId: string) => `expire:${grantId}` as const;
/** The revocation of one grant (`revokeGrant`, unless the caller names its own key): its rest leaves once. */
export const revokeKey = (grantId: string) => `revoke:${grantId}` as const;

/** Prefix of the request keys, for reporting the client's own key back to it. */
export const REQUEST_KEY_PREFIX = 'request:';
