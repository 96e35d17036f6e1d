/**
 * The synthetic data generator: determinism, shapes, 5-core-like users, long-tail popularity,
 * cluster-structured features and transitions, and that the unchanged splits + evaluator run on it
 * (popularity beats a random ranking).
 */
import * as assert from 'node:assert/strict';

import { generateSynthetic } from '../../lib/data/synthetic';
import { evaluationSplit } from '../../lib/data/splits';
import { evaluatePopularity } from '../../lib/evaluate/popularity';
import { evaluateRanking } from '../../lib/evaluate/ranking';
import { InvalidArgumentError } from '../../lib/errors';

describe('data: synthetic generator', () => {
  const data = generateSynthetic({ seed: 7, numUsers: 2000, numItems: 400, numClusters: 8 });
  const { sequences: s } = data;

  it('is deterministic: same seed → identical output; another seed → different interactions', () => {
    const again = generateSynthetic({ seed: 7, numUsers: 2000, numItems: 400, numClusters: 8 });
    assert.equal(again.sequences.sha256, s.sha256);
    assert.deepEqual(again.sequences.items, s.items);
    assert.deepEqual(again.sequences.offsets, s.offsets);
    assert.deepEqual(again.text.data, data.text.data);
    assert.deepEqual(again.visual.data, data.visual.data);
    assert.deepEqual(again.clusters, data.clusters);
    const other = generateSynthetic({ seed: 8, numUsers: 2000, numItems: 400, numClusters: 8 });
    assert.notEqual(other.sequences.sha256, s.sha256);
    // feature dims use their own random stream: the interactions do not change with them
    const wider = generateSynthetic({ seed: 7, numUsers: 2000, numItems: 400, numClusters: 8, textDim: 8 });
    assert.equal(wider.sequences.sha256, s.sha256);
  });

  it('has the loadSequences shape; every user has 5..30 distinct items with ids in 1..numItems', () => {
    assert.deepEqual([s.numUsers, s.numItems, s.userIds.length, s.offsets.length], [2000, 400, 2000, 2001]);
    assert.equal(s.offsets[0], 0);
    assert.equal(s.offsets[s.numUsers], s.numInteractions);
    assert.equal(s.items.length, s.numInteractions);
    assert.ok(s.items instanceof Int32Array && s.offsets instanceof Int32Array && s.userIds instanceof Int32Array);
    assert.match(s.sha256, /^[0-9a-f]{64}$/);
    let repeats = 0;
    for (let u = 0; u < s.numUsers; u += 1) {
      const items = s.items.subarray(s.offsets[u], s.offsets[u + 1]);
      assert.ok(items.length >= 5 && items.length <= 30, `user ${u} has ${items.length} items`);
      repeats += items.length - new Set(items).size;
      for (const item of items) assert.ok(item >= 1 && item <= s.numItems);
    }
    assert.ok(repeats < s.numInteractions * 0.01, `${repeats} repeated items`);
    const distinct = new Set(s.items).size;
    assert.equal(s.distinctItems, distinct);
  });

  it('popularity is long-tailed: the top 10 % of items take > 40 % of the interactions', () => {
    const counts = new Array<number>(s.numItems + 1).fill(0);
    for (const item of s.items) counts[item]! += 1;
    const sorted = counts.slice(1).sort((a, b) => b - a);
    const top = sorted.slice(0, s.numItems / 10).reduce((a, b) => a + b, 0);
    assert.ok(top / s.numInteractions > 0.4, `top 10 % share ${top / s.numInteractions}`);
  });

  it('transitions follow the cluster matrix: the next item stays in or moves to a preferred cluster far above chance', () => {
    const k = data.options.numClusters;
    for (let c = 0; c < k; c += 1) {
      const row = data.transitions.subarray(c * k, (c + 1) * k);
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    }
    let likely = 0;
    let pairs = 0;
    for (let u = 0; u < s.numUsers; u += 1) {
      for (let p = s.offsets[u]! + 1; p < s.offsets[u + 1]!; p += 1) {
        const from = data.clusters[s.items[p - 1]!]!;
        const to = data.clusters[s.items[p]!]!;
        if (data.transitions[from * k + to]! > 0.1) likely += 1;
        pairs += 1;
      }
    }
    // 3 of 8 clusters hold 0.9 + 3 · 0.1 / 8 of the mass; chance would be ~3 / 8
    assert.ok(likely / pairs > 0.8, `share of likely transitions ${likely / pairs}`);
  });

  it('feature tables: [numItems + 1, dim], row 0 = 0, different dims, items closer to their own cluster', () => {
    assert.deepEqual([data.text.rows, data.text.dim, data.text.data.length], [401, 32, 401 * 32]);
    assert.deepEqual([data.visual.rows, data.visual.dim, data.visual.data.length], [401, 16, 401 * 16]);
    for (const table of [data.text, data.visual]) {
      assert.ok(table.data.subarray(0, table.dim).every((v) => v === 0));
      assert.ok(table.data.every(Number.isFinite));
      // mean squared distance within a cluster vs across clusters
      const dist = (a: number, b: number): number => {
        let sum = 0;
        for (let d = 0; d < table.dim; d += 1) sum += (table.data[a * table.dim + d]! - table.data[b * table.dim + d]!) ** 2;
        return sum;
      };
      let within = 0;
      let withinN = 0;
      let across = 0;
      let acrossN = 0;
      for (let a = 1; a <= 100; a += 1) {
        for (let b = a + 1; b <= 100; b += 1) {
          if (data.clusters[a] === data.clusters[b]) {
            within += dist(a, b);
            withinN += 1;
          } else {
            across += dist(a, b);
            acrossN += 1;
          }
        }
      }
      assert.ok(within / withinN < 0.5 * (across / acrossN), `${within / withinN} vs ${across / acrossN}`);
    }
  });

  it('the unchanged splits and evaluator run on it, and popularity beats a random ranking', async () => {
    const popularity = await evaluatePopularity(s, { split: 'test' });
    const test = evaluationSplit(s, 'test');
    assert.equal(test.users.length, s.numUsers);
    let state = 12345;
    const stride = s.numItems + 1;
    const random = await evaluateRanking({
      numItems: s.numItems,
      targets: test.targets,
      historyOffsets: test.inputOffsets,
      historyItems: test.inputItems,
      score: (start, end) =>
        new Float32Array((end - start) * stride).map(() => {
          state = (Math.imul(state, 1103515245) + 12345) >>> 0;
          return state / 4294967296;
        }),
    });
    for (const metric of ['HR@10', 'nDCG@10']) {
      const [pop, rnd] = [popularity.metrics[metric]!, random.metrics[metric]!];
      assert.ok(pop > 2 * rnd, `popularity ${metric} ${pop} vs random ${rnd}`);
    }
    // a random ranking's HR@10 is about 10 / (items not masked)
    assert.ok(Math.abs(random.metrics['HR@10']! - 10 / (s.numItems - 10)) < 0.015, String(random.metrics['HR@10']));
  });

  it('rejects bad options with InvalidArgumentError', () => {
    assert.throws(() => generateSynthetic({ seed: -1 }), InvalidArgumentError);
    assert.throws(() => generateSynthetic({ numItems: 10, numClusters: 11 }), /options\.numClusters/);
    assert.throws(() => generateSynthetic({ minLength: 6, maxLength: 5 }), /options\.maxLength/);
    assert.throws(() => generateSynthetic({ selfTransition: 0.95, uniformTransition: 0.1 }), /options\.uniformTransition/);
    assert.throws(() => generateSynthetic('x' as never), /options/);
  });
});
