/**
 * The client suite runs twice, on React 19 (`npm test`) and on React 18 (`npm run test:react18`); this
 * proves which React each run really used, for the kit, react-dom and the test renderer alike.
 */
import { version as react } from 'react';
import { version as reactDom } from 'react-dom';

declare const CREDIT_KIT_REACT_MAJOR: string | undefined;

it('runs on the React the suite is meant for', () => {
  const expected = typeof CREDIT_KIT_REACT_MAJOR === 'string' ? CREDIT_KIT_REACT_MAJOR : '19';
  expect(react.split('.')[0]).toBe(expected);
  expect(reactDom).toBe(react);
});
