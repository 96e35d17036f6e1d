/** Tokenizer quality measures against brute-force definitions. */
import * as assert from 'node:assert/strict';

import { InvalidArgumentError } from '../../lib/errors';
import { codebookUsage, collisionRate, distanceKendallTau, kendallTau } from '../../lib/tokenizer/metrics';

/** τ-b straight from its definition, O(n²). */
function bruteTau(x: number[], y: number[]): number {
  let concordant = 0;
  let discordant = 0;
  let xOnly = 0;
  let yOnly = 0;
  for (let i = 0; i < x.length; i += 1) {
    for (let j = i + 1; j < x.length; j += 1) {
      const dx = Math.sign(x[i]! - x[j]!);
      const dy = Math.sign(y[i]! - y[j]!);
      if (dx === 0 && dy === 0) continue;
      if (dx === 0) xOnly += 1;
      else if (dy === 0) yOnly += 1;
      else if (dx === dy) concordant += 1;
      else discordant += 1;
    }
  }
  return (concordant - discordant) / Math.sqrt((concordant + discordant + yOnly) * (concordant + discordant + xOnly));
}

function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

describe('tokenizer metrics', () => {
  it('kendallTau equals the O(n²) definition, with and without ties', () => {
    const next = lcg(7);
    for (const [n, levels] of [[50, 1000], [200, 5], [333, 3], [2, 10]] as const) {
      const x = Array.from({ length: n }, () => Math.floor(next() * levels));
      const y = x.map((v) => (next() < 0.7 ? v + Math.floor(next() * levels) : Math.floor(next() * levels)));
      assert.ok(Math.abs(kendallTau(x, y) - bruteTau(x, y)) < 1e-12, `n=${n} levels=${levels}`);
    }
    assert.equal(kendallTau([1, 2, 3, 4], [10, 20, 30, 40]), 1);
    assert.equal(kendallTau([1, 2, 3, 4], [4, 3, 2, 1]), -1);
    assert.ok(Number.isNaN(kendallTau([1, 1, 1], [1, 2, 3])));
    assert.throws(() => kendallTau([1, 2], [1]), InvalidArgumentError);
    assert.throws(() => kendallTau([1, NaN], [1, 2]), /x\[1\]/);
  });

  it('codebookUsage counts used codes and the perplexity; collisionRate counts items sharing a full ID', () => {
    // 4 items, 2 levels, K = 4: level 0 uses {0, 1} evenly, level 1 uses {3} only.
    const codes = Int32Array.of(0, 3, 1, 3, 0, 3, 1, 3);
    const usage = codebookUsage(codes, 2, 4);
    assert.deepEqual(usage.map((u) => u.used), [2, 1]);
    assert.deepEqual(usage.map((u) => u.fraction), [0.5, 0.25]);
    assert.ok(Math.abs(usage[0]!.perplexity - 2) < 1e-12);
    assert.ok(Math.abs(usage[1]!.perplexity - 1) < 1e-12);
    assert.equal(collisionRate(codes, 2), 1);
    assert.equal(collisionRate(Int32Array.of(0, 1, 0, 2, 0, 1), 2), 2 / 3);
    assert.equal(collisionRate(Int32Array.of(0, 1, 1, 0), 2), 0);
    assert.throws(() => codebookUsage(Int32Array.of(0, 4), 2, 4), /codes\[1\]/);
  });

  it('distanceKendallTau: 1 for a scaled copy, near 0 for unrelated vectors, seeded and reproducible', () => {
    const next = lcg(3);
    const n = 300;
    const x = Float32Array.from({ length: n * 8 }, () => next() - 0.5);
    const scaled = x.map((v) => v * 3);
    assert.equal(distanceKendallTau(x, 8, scaled, 8, { pairs: 2000 }).tau, 1);
    const noise = Float32Array.from({ length: n * 4 }, () => next() - 0.5);
    const unrelated = distanceKendallTau(x, 8, noise, 4, { pairs: 4000, seed: 9 });
    assert.ok(Math.abs(unrelated.tau) < 0.05, `tau ${unrelated.tau}`);
    assert.equal(distanceKendallTau(x, 8, noise, 4, { pairs: 4000, seed: 9 }).tau, unrelated.tau);
    assert.throws(() => distanceKendallTau(x, 8, noise.subarray(4), 4), InvalidArgumentError);
  });
});
