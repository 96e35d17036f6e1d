/**
 * The native full-ranking evaluator against the TypeScript reference (the oracle) on small random
 * batches full of ties, repeated history items, padding and targets inside their own history; plus the
 * rules themselves on hand-made cases and argument errors.
 */
import * as assert from 'node:assert/strict';

import { CancelledError, InvalidArgumentError } from '../../lib';
import { RankingAccumulator, evaluateRanking, rankBatch } from '../../lib/evaluate/ranking';
import type { RankBatchOptions } from '../../lib/evaluate/ranking';
import { rankBatchReference } from '../../lib/evaluate/rankingReference';
import { assertClose } from '../support/assertClose';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

/** A random batch; scores drawn from `levels` distinct values so ties are everywhere. */
function randomBatch(rng: Rng, batch: number, numItems: number, levels: number, withFrequency: boolean): RankBatchOptions {
  const scores = new Float32Array(batch * (numItems + 1));
  for (let i = 0; i < scores.length; i += 1) scores[i] = rng.int(levels) - levels / 2;
  const targets = new Int32Array(batch);
  const offsets = new Int32Array(batch + 1);
  const history: number[] = [];
  for (let u = 0; u < batch; u += 1) {
    targets[u] = 1 + rng.int(numItems);
    const length = rng.int(Math.min(12, numItems + 3));
    for (let p = 0; p < length; p += 1) {
      const r = rng.next();
      // padding, the target itself, a repeat, or any item
      history.push(r < 0.05 ? 0 : r < 0.15 ? targets[u]! : r < 0.25 && history.length > offsets[u]! ? history[history.length - 1]! : 1 + rng.int(numItems));
    }
    offsets[u + 1] = history.length;
  }
  const options: RankBatchOptions = { scores, numItems, targets, historyOffsets: offsets, historyItems: Int32Array.from(history) };
  if (withFrequency) {
    const frequency = new Int32Array(numItems + 1);
    for (let i = 1; i <= numItems; i += 1) frequency[i] = rng.int(12);
    options.trainFrequency = frequency;
    options.coldThreshold = 5;
  }
  return options;
}

describe('evaluate: ranking (native vs reference)', () => {
  it('hand-made: lower id wins ties, history masked, target in its history still ranked, padding ignored', async () => {
    // items 1..6; scores  [pad, 1:5, 2:7, 3:5, 4:5, 5:9, 6:1]
    const row = [100, 5, 7, 5, 5, 9, 1];
    const cases: { target: number; history: number[]; rank: number }[] = [
      { target: 3, history: [], rank: 3 }, // beaten by 2 (7), 5 (9), and 1 (tie, lower id); 4 ties but is higher
      { target: 1, history: [], rank: 2 }, // 2 and 5 only
      { target: 4, history: [], rank: 4 }, // 2, 5, 1, 3
      { target: 3, history: [5, 5, 1, 0], rank: 1 }, // 5 and 1 masked (5 twice), padding ignored: only 2
      { target: 3, history: [3, 2], rank: 2 }, // the target is in its history: ranked, not masked; 2 masked
      { target: 6, history: [], rank: 5 },
    ];
    const batch = cases.length;
    const scores = new Float32Array(batch * 7);
    cases.forEach((_, u) => scores.set(row, u * 7));
    const offsets = new Int32Array(batch + 1);
    cases.forEach((c, u) => (offsets[u + 1] = offsets[u]! + c.history.length));
    const options: RankBatchOptions = {
      scores,
      numItems: 6,
      targets: Int32Array.from(cases.map((c) => c.target)),
      historyOffsets: offsets,
      historyItems: Int32Array.from(cases.flatMap((c) => c.history)),
      ks: [1, 2, 5],
    };
    const native = await rankBatch(options);
    const reference = rankBatchReference(options);
    assert.deepEqual(Array.from(native.ranks), cases.map((c) => c.rank));
    assert.deepEqual(Array.from(reference.ranks), cases.map((c) => c.rank));
    // all-group sums: users 6; HR@1 0, HR@2 1 (rank 1), HR@5 5 (ranks 3,2,4,1,2)
    assert.equal(native.sums[0], 6);
    assert.deepEqual(Array.from(native.sums.subarray(1, 4)), [0, 1, 5]);
    const ndcg5 = [3, 2, 4, 1, 2].reduce((s, r) => s + 1 / Math.log2(r + 2), 0);
    assert.ok(Math.abs(native.sums[6]! - ndcg5) < 1e-12);
    const mrr5 = [3, 2, 4, 1, 2].reduce((s, r) => s + 1 / (r + 1), 0);
    assert.ok(Math.abs(native.sums[9]! - mrr5) < 1e-12);
  });

  it('random batches with ties: ranks identical, sums within tolerance, cold/warm groups', async () => {
    const rng = new Rng(20251123);
    for (let trial = 0; trial < 40; trial += 1) {
      const numItems = 1 + rng.int(60);
      const batch = rng.int(24);
      const options = randomBatch(rng, batch, numItems, 1 + rng.int(5), trial % 2 === 0);
      options.ks = trial % 3 === 0 ? [1, 3, 7, 100] : undefined;
      const native = await rankBatch(options);
      const reference = rankBatchReference(options);
      assert.deepEqual(Array.from(native.ranks), Array.from(reference.ranks), `trial ${trial}: ranks`);
      assertClose(native.sums, reference.sums, tolerances.evaluate.sums, `trial ${trial}: sums`);
      if (options.trainFrequency) assert.equal(native.sums[0], batch);
    }
  });

  it('results do not depend on the thread count', async () => {
    const options = randomBatch(new Rng(7), 300, 500, 3, true);
    const one = await rankBatch({ ...options, threads: 1 });
    const two = await rankBatch({ ...options, threads: 2 });
    const all = await rankBatch({ ...options, threads: 0 });
    assert.deepEqual(one.ranks, two.ranks);
    assert.deepEqual(one.sums, two.sums);
    assert.deepEqual(one.sums, all.sums);
  });

  it('±Infinity scores are ordinary values', async () => {
    const scores = Float32Array.from([0, -Infinity, Infinity, -Infinity, 0]);
    const base = { scores, numItems: 4, historyOffsets: Int32Array.from([0, 0]), historyItems: new Int32Array(0) };
    for (const target of [1, 2, 3, 4]) {
      const options = { ...base, targets: Int32Array.from([target]) };
      assert.deepEqual((await rankBatch(options)).ranks, rankBatchReference(options).ranks, `target ${target}`);
    }
    assert.equal((await rankBatch({ ...base, targets: Int32Array.from([3]) })).ranks[0], 3);
  });

  it('evaluateRanking over batches equals one batch; accumulator averages', async () => {
    const options = randomBatch(new Rng(11), 257, 90, 4, true);
    const stride = 91;
    const summary = await evaluateRanking({
      numItems: 90,
      targets: options.targets,
      historyOffsets: options.historyOffsets,
      historyItems: options.historyItems,
      score: (start, end) => options.scores.subarray(start * stride, end * stride),
      batchSize: 50,
      trainFrequency: options.trainFrequency!,
    });
    const whole = rankBatchReference(options);
    const acc = new RankingAccumulator(undefined, 5);
    acc.add(whole);
    const expected = acc.summary();
    assert.equal(summary.users, 257);
    assert.deepEqual(Object.keys(summary.metrics), ['HR@5', 'HR@10', 'HR@20', 'nDCG@5', 'nDCG@10', 'nDCG@20', 'MRR@5', 'MRR@10', 'MRR@20']);
    for (const key of Object.keys(expected.metrics)) {
      assert.ok(Math.abs(summary.metrics[key]! - expected.metrics[key]!) < 1e-12, key);
      assert.ok(Math.abs(summary.coldWarm!.cold.metrics[key]! - expected.coldWarm!.cold.metrics[key]!) < 1e-12, key);
    }
    assert.equal(summary.coldWarm!.cold.users + summary.coldWarm!.warm.users, 257);
  });

  it('evaluateRanking reports progress per batch and stops between batches when cancelled', async () => {
    const options = randomBatch(new Rng(5), 100, 20, 3, false);
    const base = {
      numItems: 20,
      targets: options.targets,
      historyOffsets: options.historyOffsets,
      historyItems: options.historyItems,
      batchSize: 30,
    };
    const progress: number[] = [];
    const summary = await evaluateRanking({ ...base, score: (a, b) => options.scores.subarray(a * 21, b * 21), onProgress: (done) => progress.push(done) });
    assert.deepEqual(progress, [30, 60, 90, 100]);
    assert.equal(summary.coldWarm, undefined);
    const ac = new AbortController();
    let scored = 0;
    const run = evaluateRanking({
      ...base,
      signal: ac.signal,
      score: (a, b) => {
        scored += 1;
        if (scored === 2) ac.abort();
        return options.scores.subarray(a * 21, b * 21);
      },
    });
    await assert.rejects(run, CancelledError);
    assert.equal(scored, 2);
  });

  it('rejects bad arguments, naming them (NaN scores and bad ids found off the JS thread)', async () => {
    const options = randomBatch(new Rng(3), 4, 10, 3, false);
    const invalid = (argument: string) => (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.argument, argument);
      return true;
    };
    const nan = options.scores.slice();
    nan[2 * 11 + 7] = NaN;
    await assert.rejects(rankBatch({ ...options, scores: nan }), invalid('options.scores[29]'));
    assert.throws(() => rankBatchReference({ ...options, scores: nan }), invalid('options.scores[29]'));
    await assert.rejects(rankBatch({ ...options, targets: Int32Array.from([1, 11, 2, 3]) }), invalid('options.targets[1]'));
    await assert.rejects(rankBatch({ ...options, targets: Int32Array.from([1, 0, 2, 3]) }), invalid('options.targets[1]'));
    const badHistory = options.historyItems.slice();
    if (badHistory.length > 0) {
      badHistory[0] = 11;
      await assert.rejects(rankBatch({ ...options, historyItems: badHistory }), invalid('options.historyItems[0]'));
    }
    await assert.rejects(rankBatch({ ...options, historyOffsets: Int32Array.from([1, 2, 3, 4, 5]) }), invalid('options.historyOffsets[0]'));
    await assert.rejects(rankBatch({ ...options, scores: options.scores.subarray(1) }), invalid('options.scores'));
    await assert.rejects(rankBatch({ ...options, ks: [0] }), invalid('options.ks[0]'));
    await assert.rejects(rankBatch({ ...options, ks: [] }), invalid('options.ks'));
    await assert.rejects(rankBatch({ ...options, trainFrequency: new Int32Array(3) }), invalid('options.trainFrequency'));
  });
});
