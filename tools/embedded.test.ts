/**
 * The embedded servers as the tests use them: the atomicity gate makes FerretDB apply concurrent guarded
 * $inc updates exactly as MongoDB would, and stripe-mock accepts the seed's Checkout request.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Schema } from 'mongoose';
import { connect, stripeMockClient } from '../server/test/helpers';
import { ensureBinary, startEmbeddedMongo } from './embedded';

describe('embedded MongoDB-compatible server', () => {
  it('applies 300 concurrent guarded $inc updates on one document holding 100 exactly 100 times', async () => {
    const connection = await connect();
    try {
      const Account = connection.model('Account', new Schema({ _id: String, balance: Number }));
      await Account.create({ _id: 'hot', balance: 100 });
      const results = await Promise.all(
        Array.from({ length: 300 }, () =>
          Account.findOneAndUpdate({ _id: 'hot', balance: { $gte: 1 } }, { $inc: { balance: -1 } }, { returnDocument: 'after' }).lean(),
        ),
      );
      expect(results.filter((r) => r !== null)).toHaveLength(100);
      expect((await Account.findById('hot').lean())?.balance).toBe(0);
    } finally {
      await connection.close();
    }
  });

  it('says both ways out when there is no Go toolchain and no MONGODB_URI', () => {
    const cache = mkdtempSync(join(tmpdir(), 'ck-empty-cache-'));
    const script =
      "require('./tools/embedded').startEmbeddedMongo().then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3); })";
    const res = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', script], {
      cwd: join(__dirname, '..'),
      env: { PATH: '/nonexistent', CREDIT_KIT_CACHE_DIR: cache, HOME: tmpdir() },
      encoding: 'utf8',
    });
    expect(res.status).toBe(3);
    expect(res.stderr).toMatch(/no `go` command was found/);
    expect(res.stderr).toMatch(/install Go/);
    expect(res.stderr).toMatch(/set MONGODB_URI/);
  });

  it('serves a CPU profile of itself on loopback with pprof (bench/db-profile.ts), and refuses any other address', async () => {
    const mongo = await startEmbeddedMongo({ pprof: true });
    try {
      expect(mongo.pprofUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/debug\/pprof\/$/);
      const profile = await fetch(`${mongo.pprofUrl}profile?seconds=1`);
      expect(profile.status).toBe(200);
      // A pprof profile is a gzipped protocol buffer.
      expect([...new Uint8Array(await profile.arrayBuffer()).slice(0, 2)]).toEqual([0x1f, 0x8b]);
    } finally {
      await mongo.stop();
    }
    const open = spawnSync(ensureBinary('mongo'), ['-pprof-listen', '0.0.0.0:0'], { encoding: 'utf8', timeout: 30_000 });
    expect(open.status).toBe(1);
    expect(open.stderr).toMatch(/is not a loopback address/);
  });
});

describe('stripe-mock', () => {
  it("creates a Checkout Session from the seed's price_data request", async () => {
    const stripe = stripeMockClient();
    const creditName = 'Credits';
    const quantity = 100;
    const session = await stripe.checkout.sessions.create({
      line_items: [
        {
          price_data: {
            currency: 'usd',
            product_data: { name: `${creditName} Bundle`, description: `Bundle of ${quantity} ${creditName}` },
            unit_amount: 10,
          },
          quantity,
        },
      ],
      mode: 'payment',
      success_url: 'http://localhost:3000/success?session_id={CHECKOUT_SESSION_ID}',
      cancel_url: 'http://localhost:3000/cancel',
    });
    expect(session.object).toBe('checkout.session');
    expect(session.id).toMatch(/^cs_/);
  });

  it('refuses a request that breaks Stripe’s API spec', async () => {
    const stripe = stripeMockClient();
    await expect(
      stripe.checkout.sessions.create({
        mode: 'not-a-mode' as never,
        line_items: [{ price_data: { currency: 'usd', unit_amount: 10, product_data: { name: 'x' } }, quantity: 1 }],
        success_url: 'http://localhost:3000/success',
      }),
    ).rejects.toMatchObject({ type: 'StripeInvalidRequestError', message: expect.stringMatching(/mode/) });
  });
});
