/**
 * The server suite runs twice, on Express 5 and mongoose 9 (`npm test`) and on Express 4 and mongoose 8
 * (`npm run test:express4-mongoose8`); this proves which each run really loaded, for the kit and the tests
 * alike (both import them by name, so both go through the same mapping).
 */
import { dirname } from 'node:path';
import express from 'express';
import mongoose from 'mongoose';
import { connect } from './helpers';

declare const CREDIT_KIT_EXPRESS_MAJOR: string | undefined;
declare const CREDIT_KIT_MONGOOSE_MAJOR: string | undefined;

const expected = {
  express: typeof CREDIT_KIT_EXPRESS_MAJOR === 'string' ? CREDIT_KIT_EXPRESS_MAJOR : '5',
  mongoose: typeof CREDIT_KIT_MONGOOSE_MAJOR === 'string' ? CREDIT_KIT_MONGOOSE_MAJOR : '9',
};

it('runs on the Express the suite is meant for', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { version } = require('express/package.json') as { version: string };
  expect(version.split('.')[0]).toBe(expected.express);
  // The package.json read is the package the module `express` was loaded from.
  expect(dirname(require.resolve('express'))).toBe(dirname(require.resolve('express/package.json')));
  expect(typeof express.Router).toBe('function');
});

it('runs on the mongoose the suite is meant for, with that mongoose’s own MongoDB driver', async () => {
  expect(mongoose.version.split('.')[0]).toBe(expected.mongoose);
  const connection = await connect();
  try {
    // The driver the connection really uses: the one mongoose depends on, not the repository's.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const driverOfMongoose = require(require.resolve('mongodb', { paths: [require.resolve('mongoose')] })) as typeof import('mongodb');
    expect(connection.getClient()).toBeInstanceOf(driverOfMongoose.MongoClient);
  } finally {
    await connection.close();
  }
});
