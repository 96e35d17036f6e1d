import * as assert from 'node:assert/strict';

import { optimized, reference } from '../support/backends';
import { assertClose } from '../support/assertClose';
import { checkGradient } from '../support/finiteDifference';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

/** The transfer-learning-library MK-MMD written out plainly in JS (independent of the native code). */
function mmdPlain(x: Float32Array, y: Float32Array, n: number, dim: number, alphas: number[]): number {
  const z = (i: number, k: number) => (i < n ? (x[i * dim + k] as number) : (y[(i - n) * dim + k] as number));
  const d2 = (i: number, j: number) => {
    let s = 0;
    for (let k = 0; k < dim; k += 1) s += (z(i, k) - z(j, k)) ** 2;
    return s;
  };
  let mean = 0;
  for (let i = 0; i < 2 * n; i += 1) for (let j = 0; j < 2 * n; j += 1) mean += d2(i, j);
  mean /= (2 * n) ** 2;
  const kernel = (i: number, j: number) => alphas.reduce((s, a) => s + Math.exp(-d2(i, j) / (2 * a * mean)), 0);
  let loss = 2 / (n - 1);
  for (let i = 0; i < 2 * n; i += 1) {
    for (let j = 0; j < 2 * n; j += 1) {
      const sameSide = i < n === j < n;
      if (sameSide && i !== j) loss += kernel(i, j) / (n * (n - 1));
      if (!sameSide) loss -= kernel(i, j) / (n * n);
    }
  }
  return loss;
}

/** InfoNCE written out plainly in JS. */
function infoNcePlain(a: Float32Array, b: Float32Array, n: number, dim: number, tau: number, symmetric: boolean): number {
  const unit = (v: Float32Array, i: number) => {
    const row = Array.from(v.subarray(i * dim, (i + 1) * dim));
    const norm = Math.max(Math.hypot(...row), 1e-12);
    return row.map((e) => e / norm);
  };
  const A = Array.from({ length: n }, (_, i) => unit(a, i));
  const B = Array.from({ length: n }, (_, i) => unit(b, i));
  const s = (i: number, j: number) => A[i]!.reduce((acc, e, k) => acc + e * B[j]![k]!, 0) / tau;
  let rows = 0;
  let cols = 0;
  for (let i = 0; i < n; i += 1) {
    rows += Math.log(Array.from({ length: n }, (_, j) => Math.exp(s(i, j))).reduce((p, q) => p + q)) - s(i, i);
    cols += Math.log(Array.from({ length: n }, (_, j) => Math.exp(s(j, i))).reduce((p, q) => p + q)) - s(i, i);
  }
  return symmetric ? (rows + cols) / (2 * n) : rows / n;
}

describe('kernels.mmdGaussian', () => {
  it('reference matches the estimator written out in JS', async () => {
    const rng = new Rng(1);
    const n = 5, dim = 3;
    const x = rng.gaussian(n * dim);
    const y = rng.gaussian(n * dim, 1.5);
    for (const alphas of [[0.5], [0.25, 0.5, 1, 2]]) {
      const { loss } = await reference.mmdGaussian({ x, y, dim, alphas });
      assertClose(loss, mmdPlain(x, y, n, dim, alphas), { rtol: 1e-5, atol: 1e-7 }, `alphas ${alphas.join(',')}`);
    }
  });

  const shapes = [
    { n: 2, dim: 1 },
    { n: 3, dim: 5 },
    { n: 17, dim: 33 },
    { n: 130, dim: 64 },
    { n: 257, dim: 129 },
  ];
  for (const { n, dim } of shapes) {
    for (const mode of ['alphas', 'sigma'] as const) {
      it(`optimized matches the reference: n=${n} d=${dim} ${mode}`, async () => {
        const rng = new Rng(n * 100 + dim);
        const x = rng.gaussian(n * dim);
        const y = rng.gaussian(n * dim, 0.8);
        for (let i = 0; i < y.length; i += 1) y[i] = (y[i] as number) + 0.3;
        const bw = mode === 'alphas' ? { alphas: [0.5, 1, 2] } : { sigma: [Math.sqrt(dim), 2 * Math.sqrt(dim)] };
        const fast = await optimized.mmdGaussian({ x, y, dim, ...bw });
        const slow = await reference.mmdGaussian({ x, y, dim, ...bw });
        assertClose(fast.loss, slow.loss, tolerances.mmd.loss, 'loss');
        assertClose(fast.gradX, slow.gradX, tolerances.mmd.grad, 'gradX');
        assertClose(fast.gradY, slow.gradY, tolerances.mmd.grad, 'gradY');
      });
    }
  }

  it('gradients match finite differences (σ held constant, fixed mode)', async () => {
    const rng = new Rng(21);
    const n = 9, dim = 4;
    const x = rng.gaussian(n * dim);
    const y = rng.gaussian(n * dim);
    const sigma = [1.5, 3];
    const { gradX, gradY } = await optimized.mmdGaussian({ x, y, dim, sigma });
    const loss = async () => (await reference.mmdGaussian({ x, y, dim, sigma })).loss;
    await checkGradient('mmd gradX', x, gradX, loss, rng);
    await checkGradient('mmd gradY', y, gradY, loss, rng);
  });
});

describe('kernels.infoNce', () => {
  it('reference matches InfoNCE written out in JS', async () => {
    const rng = new Rng(2);
    const n = 6, dim = 4;
    const a = rng.gaussian(n * dim);
    const b = rng.gaussian(n * dim);
    for (const symmetric of [false, true]) {
      const { loss } = await reference.infoNce({ a, b, dim, temperature: 0.2, symmetric });
      assertClose(loss, infoNcePlain(a, b, n, dim, 0.2, symmetric), { rtol: 1e-5, atol: 1e-7 }, `symmetric=${symmetric}`);
    }
  });

  const shapes = [
    { n: 1, dim: 1 },
    { n: 1, dim: 9 },
    { n: 3, dim: 2 },
    { n: 31, dim: 17 },
    { n: 200, dim: 64 },
    { n: 129, dim: 300 }, // n <= d: symmetric keeps the similarities between passes
    { n: 40, dim: 333 },
  ];
  for (const { n, dim } of shapes) {
    for (const symmetric of [false, true]) {
      it(`optimized matches the reference: n=${n} d=${dim} symmetric=${symmetric}`, async () => {
        const rng = new Rng(n * 31 + dim);
        const a = rng.gaussian(n * dim);
        const b = rng.gaussian(n * dim);
        for (let i = 0; i < b.length; i += 1) b[i] = (b[i] as number) * 0.5 + (a[i] as number);
        const opts = { a, b, dim, temperature: 0.07, symmetric };
        const fast = await optimized.infoNce(opts);
        const slow = await reference.infoNce(opts);
        assertClose(fast.loss, slow.loss, tolerances.infoNce.loss, 'loss');
        assertClose(fast.gradA, slow.gradA, tolerances.infoNce.grad, 'gradA');
        assertClose(fast.gradB, slow.gradB, tolerances.infoNce.grad, 'gradB');
      });
    }
  }

  it('gradients (through the normalisation) match finite differences', async () => {
    const rng = new Rng(8);
    const n = 7, dim = 5;
    const a = rng.gaussian(n * dim);
    const b = rng.gaussian(n * dim);
    for (const symmetric of [false, true]) {
      const { gradA, gradB } = await optimized.infoNce({ a, b, dim, temperature: 0.5, symmetric });
      const loss = async () => (await reference.infoNce({ a, b, dim, temperature: 0.5, symmetric })).loss;
      await checkGradient(`infoNce gradA symmetric=${symmetric}`, a, gradA, loss, rng);
      await checkGradient(`infoNce gradB symmetric=${symmetric}`, b, gradB, loss, rng);
    }
  });

  it('is finite for zero vectors (the 1e-12 norm clamp)', async () => {
    const a = new Float32Array(8);
    const b = new Float32Array(8).fill(1);
    const r = await optimized.infoNce({ a, b, dim: 4, temperature: 0.1, symmetric: true });
    assert.ok(Number.isFinite(r.loss));
    assert.ok(r.gradA.every(Number.isFinite) && r.gradB.every(Number.isFinite));
  });
});

describe('determinism (same inputs, same thread count, same bits)', () => {
  it('mmdGaussian, infoNce and loraLinear repeat bitwise with 2 threads', async () => {
    const rng = new Rng(99);
    const n = 300, dim = 70;
    const x = rng.gaussian(n * dim);
    const y = rng.gaussian(n * dim);
    const runs = async () => [
      await optimized.mmdGaussian({ x, y, dim, alphas: [0.5, 2], threads: 2 }),
      await optimized.infoNce({ a: x, b: y, dim, temperature: 0.1, symmetric: true, threads: 2 }),
      await optimized.infoNce({ a: x, b: y, dim, temperature: 0.1, symmetric: false, threads: 2 }),
      await optimized.loraLinearBackward({
        x, weight: y.subarray(0, 50 * dim), loraA: y.subarray(0, 8 * dim), loraB: x.subarray(0, 50 * 8),
        rows: n, inDim: dim, outDim: 50, rank: 8, scale: 2, gradY: x.subarray(0, n * 50), threads: 2,
      }),
    ];
    const first = await runs();
    for (let r = 0; r < 3; r += 1) assert.deepEqual(await runs(), first);
  });
});
