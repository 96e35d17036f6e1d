/**
 * Paired comparison of MME-SID run directories on the same split (README "MME-SID on Beauty"):
 * `node -r ts-node/register/transpile-only bench/paired.ts [--split test] RUN_A RUN_B [RUN_C ...]`.
 * Ranks each evaluated user's target under every run with the evaluator's protocol (all items, the
 * user's input items masked except the target, ties to the lower id) and prints per run HR@10 and
 * nDCG@10 (equal to `mmesid evaluate --run`), then for each pair (A vs the others): McNemar's z on the
 * discordant HR@10 hits and the paired z of the per-user nDCG@10 differences.
 */
import { evaluationInput, evaluationSplit, modelHistory } from '../lib/data/splits';
import { historyBatch, MmesidRun } from '../lib/mmesid/run';

const K = 10, BATCH = 256;

async function perUser(dir: string, split: 'test' | 'valid'): Promise<{ hit: Uint8Array; ndcg: Float64Array }> {
  const run = await MmesidRun.load(dir);
  try {
    const s = evaluationSplit(run.sequences, split, { maxHistory: run.config.maxHistory });
    const n = run.manifest.numItems + 1, users = s.users.length;
    const hit = new Uint8Array(users), ndcg = new Float64Array(users);
    const scores = new Float32Array(BATCH * n);
    for (let start = 0; start < users; start += BATCH) {
      const end = Math.min(users, start + BATCH);
      const histories = [];
      for (let e = start; e < end; e++) histories.push(modelHistory(s, e));
      await run.scoreInto(historyBatch(histories), scores.subarray(0, (end - start) * n));
      for (let e = start; e < end; e++) {
        const row = scores.subarray((e - start) * n, (e - start + 1) * n);
        const target = s.targets[e]!, st = row[target]!;
        const masked = new Set(evaluationInput(s, e));
        masked.delete(target);
        let rank = 0;
        for (let j = 1; j < n; j++) {
          if (j === target || masked.has(j)) continue;
          if (row[j]! > st || (row[j] === st && j < target)) rank += 1;
        }
        if (rank < K) {
          hit[e] = 1;
          ndcg[e] = 1 / Math.log2(rank + 2);
        }
      }
    }
    return { hit, ndcg };
  } finally {
    await run.dispose();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let split: 'test' | 'valid' = 'test';
  const at = args.indexOf('--split');
  if (at >= 0) {
    split = args[at + 1] === 'valid' ? 'valid' : 'test';
    args.splice(at, 2);
  }
  if (args.length < 2) throw new Error('usage: paired.ts [--split test|valid] RUN_A RUN_B [...]');
  const results = [];
  for (const dir of args) results.push({ dir, ...(await perUser(dir, split)) });
  const mean = (x: ArrayLike<number>): number => Array.from(x).reduce((a, v) => a + v, 0) / x.length;
  for (const r of results) console.log(`${r.dir}: HR@${K} ${mean(r.hit).toFixed(4)}  nDCG@${K} ${mean(r.ndcg).toFixed(4)}  (${r.hit.length} users)`);
  const a = results[0]!;
  for (const b of results.slice(1)) {
    let onlyA = 0, onlyB = 0;
    const diff = new Float64Array(a.hit.length);
    for (let e = 0; e < a.hit.length; e++) {
      if (a.hit[e] && !b.hit[e]) onlyA += 1;
      if (!a.hit[e] && b.hit[e]) onlyB += 1;
      diff[e] = a.ndcg[e]! - b.ndcg[e]!;
    }
    const m = mean(diff);
    const sd = Math.sqrt(Array.from(diff).reduce((acc, v) => acc + (v - m) ** 2, 0) / (diff.length - 1));
    console.log(
      `${a.dir} vs ${b.dir}: HR@${K} hits only in A ${onlyA}, only in B ${onlyB}, McNemar z ${((onlyA - onlyB) / Math.sqrt(onlyA + onlyB)).toFixed(2)};` +
        ` nDCG@${K} mean difference ${m.toFixed(5)}, paired z ${(m / (sd / Math.sqrt(diff.length))).toFixed(2)}`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
