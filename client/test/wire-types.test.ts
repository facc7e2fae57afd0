/**
 * @jest-environment node
 */
/**
 * The client's response types are the server's wire types (server/http/wire.ts), not copies: these checks
 * are compile-time (tsc and ts-jest fail on a mismatch); the assertions only make the suite run them.
 */
import type { CreditTransaction, CreditsErrorCode, CreditsRequestErrorCode, TransactionKind, TransactionPage } from 'credit-kit/client';
import type { CreditsErrorCode as ServerErrorCode, EntryKind, Transaction, TransactionPage as ServerPage } from 'credit-kit/server';
import { ERROR_CODES } from '../../server/errors';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <A, B>(value: Same<A, B>) => value;

describe('wire types', () => {
  it('are the same on both sides', () => {
    expect(same<CreditTransaction, Transaction>(true)).toBe(true);
    expect(same<TransactionPage, ServerPage>(true)).toBe(true);
    expect(same<TransactionKind, EntryKind>(true)).toBe(true);
    expect(same<CreditsErrorCode, ServerErrorCode>(true)).toBe(true);
    expect(same<NonNullable<CreditTransaction['ref']>['requested'], number | undefined>(true)).toBe(true);
  });

  it("lets an app switch on a CreditsRequestError's code", () => {
    const codes: CreditsRequestErrorCode[] = Object.keys(ERROR_CODES) as Array<keyof typeof ERROR_CODES>;
    codes.push('network_error', 'bad_response');
    // @ts-expect-error not a code the kit ever reports
    codes.push('no_such_code');
    expect(codes).toContain('insufficient_credits');
  });
});
