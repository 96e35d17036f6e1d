/**
 * The naive TypeScript reference of the native ranking evaluator: the same signature and rules as
 * {@link rankBatch} (see lib/evaluate/ranking.ts), written for obviousness — one pass over every item
 * with an explicit mask set — and used as the oracle in tests.
 */
import { InvalidArgumentError } from '../errors';
import { normalizeRankBatch, sumsLength } from './ranking';
import type { BatchRanking, RankBatchOptions } from './ranking';

/**
 * Ranks one batch in plain TypeScript (synchronous, single-threaded).
 * @throws InvalidArgumentError on the inputs the native evaluator rejects.
 */
export function rankBatchReference(options: RankBatchOptions): BatchRanking {
  const n = normalizeRankBatch(options);
  const stride = n.numItems + 1;
  const ranks = new Int32Array(n.batch);
  const sums = new Float64Array(sumsLength(n.ks.length));
  const groupStride = 1 + 3 * n.ks.length;
  if (n.historyOffsets[0] !== 0) throw new InvalidArgumentError('options.historyOffsets[0]', '0', n.historyOffsets[0]);
  if (n.historyOffsets[n.batch] !== n.historyItems.length) {
    throw new InvalidArgumentError(`options.historyOffsets[${n.batch}]`, `the length of options.historyItems (${n.historyItems.length})`, n.historyOffsets[n.batch]);
  }
  for (let u = 0; u < n.batch; u += 1) {
    const target = n.targets[u]!;
    if (target < 1 || target > n.numItems) throw new InvalidArgumentError(`options.targets[${u}]`, `an item id in [1, ${n.numItems}]`, target);
    const from = n.historyOffsets[u]!;
    const to = n.historyOffsets[u + 1]!;
    if (to < from) throw new InvalidArgumentError(`options.historyOffsets[${u + 1}]`, 'non-decreasing offsets', to);
    const masked = new Set<number>();
    for (let p = from; p < to; p += 1) {
      const item = n.historyItems[p]!;
      if (item < 0 || item > n.numItems) throw new InvalidArgumentError(`options.historyItems[${p}]`, `an item id in [0, ${n.numItems}]`, item);
      if (item !== target) masked.add(item);
    }
    const row = n.scores.subarray(u * stride, (u + 1) * stride);
    const own = row[target]!;
    let rank = 0;
    for (let item = 1; item <= n.numItems; item += 1) {
      const s = row[item]!;
      if (Number.isNaN(s)) throw new InvalidArgumentError(`options.scores[${u * stride + item}]`, 'a score that is not NaN', s);
      if (item === target || masked.has(item)) continue;
      if (s > own || (s === own && item < target)) rank += 1;
    }
    ranks[u] = rank;
    const groups = [0];
    if (n.trainFrequency) groups.push(n.trainFrequency[target]! <= n.coldThreshold ? 1 : 2);
    for (const g of groups) {
      const base = g * groupStride;
      sums[base] = sums[base]! + 1;
      n.ks.forEach((k, i) => {
        if (rank >= k) return;
        sums[base + 1 + i] = sums[base + 1 + i]! + 1;
        sums[base + 1 + n.ks.length + i] = sums[base + 1 + n.ks.length + i]! + 1 / Math.log2(rank + 2);
        sums[base + 1 + 2 * n.ks.length + i] = sums[base + 1 + 2 * n.ks.length + i]! + 1 / (rank + 1);
      });
    }
  }
  return { ranks, sums, ks: n.ks };
}
