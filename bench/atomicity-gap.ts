/**
 * Measures what the embedded server's atomicity gate is for: 300 concurrent guarded decrements of a
 * document holding 100, against FerretDB with the gate and without it (FerretDB's own behaviour).
 *
 *   npx tsx bench/atomicity-gap.ts [rounds]
 */
import mongoose from 'mongoose';
import { startEmbeddedMongo } from '../tools/embedded';

async function round(uri: string, db: string): Promise<{ successes: number; final: number }> {
  const conn = await mongoose.createConnection(uri, { dbName: db, maxPoolSize: 100 }).asPromise();
  const accounts = conn.collection<{ _id: string; balance: number }>('accounts');
  await accounts.insertOne({ _id: 'hot', balance: 100 });
  const results = await Promise.all(
    Array.from({ length: 300 }, () =>
      accounts.findOneAndUpdate({ _id: 'hot', balance: { $gte: 1 } }, { $inc: { balance: -1 } }, { returnDocument: 'after' }),
    ),
  );
  const final = (await accounts.findOne({ _id: 'hot' }))!.balance;
  await conn.close();
  return { successes: results.filter(Boolean).length, final };
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 5);
  console.log('| server | round | successes (want 100) | final balance (want 0) | credits spent twice |');
  console.log('|---|---|---|---|---|');
  for (const noGate of [true, false]) {
    const server = await startEmbeddedMongo({ noGate });
    try {
      for (let i = 1; i <= rounds; i++) {
        const r = await round(server.uri, `gap_${noGate ? 'raw' : 'gated'}_${i}`);
        // Each success claimed one credit; credits actually removed = 100 - final.
        const doubleSpent = r.successes - (100 - r.final);
        console.log(`| ${noGate ? 'FerretDB alone' : 'FerretDB + gate'} | ${i} | ${r.successes} | ${r.final} | ${doubleSpent} |`);
      }
    } finally {
      await server.stop();
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
