import * as assert from 'node:assert/strict';

import { optimized, reference, rqExplicit, rqTable } from '../support/backends';
import { assertClose } from '../support/assertClose';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

/**
 * Codebooks with geometrically shrinking scales and items built from known codes plus small noise:
 * the nearest codeword at every level is unambiguous, so every correct encoder must recover the codes.
 */
function separable(rng: Rng, n: number, dim: number, levels: number, size: number) {
  const codebooks = new Float32Array(levels * size * dim);
  for (let l = 0; l < levels; l += 1) {
    const scale = 4 ** -l;
    for (let i = 0; i < size * dim; i += 1) codebooks[l * size * dim + i] = rng.normal() * scale;
  }
  const truth = new Int32Array(n * levels);
  const x = new Float32Array(n * dim);
  for (let i = 0; i < n; i += 1) {
    for (let l = 0; l < levels; l += 1) {
      const c = rng.int(size);
      truth[i * levels + l] = c;
      for (let k = 0; k < dim; k += 1) x[i * dim + k] = (x[i * dim + k] as number) + (codebooks[(l * size + c) * dim + k] as number);
    }
    for (let k = 0; k < dim; k += 1) x[i * dim + k] = (x[i * dim + k] as number) + rng.normal() * 1e-4;
  }
  return { codebooks, truth, x };
}

describe('kernels.rqEncode', () => {
  const shapes = [
    { n: 1, dim: 1, levels: 1, size: 1 },
    { n: 1, dim: 7, levels: 3, size: 5 },
    { n: 37, dim: 13, levels: 4, size: 16 },
    { n: 257, dim: 64, levels: 4, size: 256 },
    { n: 301, dim: 65, levels: 2, size: 33 },
    { n: 130, dim: 1024, levels: 4, size: 64 },
  ];

  const strategies = [
    { label: 'automatic', impl: optimized },
    { label: 'explicit residuals', impl: rqExplicit },
    { label: 'cross-product table', impl: rqTable },
  ];
  for (const { n, dim, levels, size } of shapes) {
    for (const beam of [1, 5]) {
      for (const { label, impl } of strategies) {
      if (beam > size ** levels) continue;
      it(`matches the reference: n=${n} d=${dim} L=${levels} K=${size} beam=${beam} (${label})`, async () => {
        const rng = new Rng(n * 7919 + dim * 31 + levels + size + beam);
        const x = rng.gaussian(n * dim);
        const codebooks = rng.gaussian(levels * size * dim, 0.7);
        const opts = { x, dim, codebooks, levels, codes: size, beam, withError: true };
        const fast = await impl.rqEncode(opts);
        const slow = await reference.rqEncode(opts);
        let mismatched = 0;
        const fastErr: number[] = [];
        const slowErr: number[] = [];
        for (let i = 0; i < n; i += 1) {
          const same = fast.codes.subarray(i * levels, (i + 1) * levels).every((c, l) => c === slow.codes[i * levels + l]);
          if (same) {
            fastErr.push(fast.sqError![i] as number);
            slowErr.push(slow.sqError![i] as number);
          } else {
            mismatched += 1;
            // A different choice is only acceptable as a near tie: its error must be as good.
            const allowed = (slow.sqError![i] as number) * (1 + 1e-3) + 1e-4;
            assert.ok((fast.sqError![i] as number) <= allowed, `item ${i}: error ${fast.sqError![i]} vs reference ${slow.sqError![i]}`);
          }
        }
        assert.ok(mismatched <= Math.ceil(n * tolerances.rqEncode.maxCodeMismatchRate), `${mismatched} of ${n} items differ`);
        assertClose(fastErr, slowErr, tolerances.rqEncode.sqError, 'sqError');
        for (const c of fast.codes) assert.ok(c >= 0 && c < size);
      });
      }
    }
  }

  it('resolves exact ties like the reference on integer-valued data (all float32 arithmetic exact)', async () => {
    const rng = new Rng(17);
    const n = 400, dim = 8, levels = 3, size = 16;
    const round = (a: Float32Array) => a.map((v) => Math.round(v * 2));
    const x = round(rng.gaussian(n * dim));
    const codebooks = round(rng.gaussian(levels * size * dim));
    codebooks.copyWithin(size * dim + 5 * dim, size * dim, size * dim + dim); // duplicate codeword: ties
    for (const beam of [1, 4]) {
      const slow = await reference.rqEncode({ x, dim, codebooks, levels, codes: size, beam });
      for (const impl of [optimized, rqExplicit, rqTable]) {
        const fast = await impl.rqEncode({ x, dim, codebooks, levels, codes: size, beam });
        assert.deepEqual(fast.codes, slow.codes);
      }
    }
  });

  it('recovers known codes exactly (greedy and beam) and the error matches a direct computation', async () => {
    const rng = new Rng(11);
    const n = 500, dim = 48, levels = 4, size = 32;
    const { codebooks, truth, x } = separable(rng, n, dim, levels, size);
    for (const beam of [1, 3]) {
      const { codes, sqError } = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, beam, withError: true });
      assert.deepEqual(Array.from(codes), Array.from(truth));
      for (let i = 0; i < n; i += 1) {
        let err = 0;
        for (let k = 0; k < dim; k += 1) {
          let r = x[i * dim + k] as number;
          for (let l = 0; l < levels; l += 1) r -= codebooks[(l * size + (codes[i * levels + l] as number)) * dim + k] as number;
          err += r * r;
        }
        assertClose(sqError![i] as number, err, { rtol: 1e-3, atol: 1e-9 }, `sqError[${i}]`);
      }
    }
  });

  it('beam search never does worse than greedy and is exhaustive when the beam covers every path', async () => {
    const rng = new Rng(5);
    const n = 64, dim = 6, levels = 2, size = 4;
    const x = rng.gaussian(n * dim);
    const codebooks = rng.gaussian(levels * size * dim);
    const greedy = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, withError: true });
    const full = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, beam: size ** levels, withError: true });
    for (let i = 0; i < n; i += 1) {
      let best = Infinity;
      for (let a = 0; a < size; a += 1) {
        for (let b = 0; b < size; b += 1) {
          let err = 0;
          for (let k = 0; k < dim; k += 1) {
            const r = (x[i * dim + k] as number) - (codebooks[a * dim + k] as number) - (codebooks[(size + b) * dim + k] as number);
            err += r * r;
          }
          best = Math.min(best, err);
        }
      }
      assertClose(full.sqError![i] as number, best, { rtol: 1e-4, atol: 1e-6 }, `exhaustive beam, item ${i}`);
      assert.ok((full.sqError![i] as number) <= (greedy.sqError![i] as number) * (1 + 1e-5) + 1e-6);
    }
  });

  it('is deterministic and independent of the thread count', async () => {
    const rng = new Rng(3);
    const n = 999, dim = 64, levels = 4, size = 64;
    const x = rng.gaussian(n * dim);
    const codebooks = rng.gaussian(levels * size * dim);
    const one = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, beam: 2, threads: 1, withError: true });
    const two = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, beam: 2, threads: 2, withError: true });
    const again = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, beam: 2, threads: 2, withError: true });
    assert.deepEqual(one.codes, two.codes);
    assert.deepEqual(two.codes, again.codes);
    assert.deepEqual(two.sqError, again.sqError);
  });

  it('reports progress per chunk and can be cancelled', async () => {
    const rng = new Rng(9);
    const dim = 8, levels = 1, size = 2;
    const n = 40000; // > one chunk (16384 rows)
    const x = rng.gaussian(n * dim);
    const codebooks = rng.gaussian(levels * size * dim);
    const seen: number[] = [];
    await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, onProgress: (done) => seen.push(done) });
    assert.deepEqual(seen, [16384, 32768, 40000]);
    const controller = new AbortController();
    const pending = optimized.rqEncode({
      x, dim, codebooks, levels, codes: size,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    await assert.rejects(pending, (e: Error & { code?: string }) => e.code === 'ERR_MMESID_CANCELLED');
  });
});
