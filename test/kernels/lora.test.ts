import * as assert from 'node:assert/strict';

import { InvalidArgumentError } from '../../lib/errors';
import { core } from '../../lib/native';
import { optimized, reference } from '../support/backends';
import { assertClose } from '../support/assertClose';
import { checkGradient } from '../support/finiteDifference';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

function problem(seed: number, rows: number, inDim: number, outDim: number, rank: number, withBias: boolean) {
  const rng = new Rng(seed);
  return {
    rng,
    opts: {
      x: rng.gaussian(rows * inDim),
      weight: rng.gaussian(outDim * inDim, 1 / Math.sqrt(inDim)),
      ...(withBias ? { bias: rng.gaussian(outDim) } : {}),
      loraA: rng.gaussian(rank * inDim, 1 / Math.sqrt(inDim)),
      loraB: rng.gaussian(outDim * rank, 0.5),
      rows,
      inDim,
      outDim,
      rank,
      scale: 16 / rank,
    },
    gradY: rng.gaussian(rows * outDim),
  };
}

/** Byte-for-byte equality of two float buffers (NaN payloads and ±0 included). */
function assertBitIdentical(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.ok(
    Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)),
    `${what}: not bit-identical`,
  );
}

describe('kernels.loraLinear', () => {
  const shapes = [
    { rows: 1, inDim: 1, outDim: 1, rank: 1 },
    { rows: 1, inDim: 7, outDim: 5, rank: 2 },
    { rows: 3, inDim: 33, outDim: 17, rank: 8 },
    { rows: 64, inDim: 128, outDim: 96, rank: 8 },
    { rows: 65, inDim: 257, outDim: 129, rank: 16 },
    { rows: 10, inDim: 12, outDim: 9, rank: 9 },
    // rank > 32: the low-rank products go through sgemm instead of the streaming loops
    { rows: 7, inDim: 50, outDim: 40, rank: 40 },
  ];
  for (const { rows, inDim, outDim, rank } of shapes) {
    for (const withBias of [false, true]) {
      it(`forward and backward match the reference: rows=${rows} in=${inDim} out=${outDim} r=${rank} bias=${withBias}`, async () => {
        const { opts, gradY } = problem(rows * 13 + inDim + outDim + rank, rows, inDim, outDim, rank, withBias);
        const fast = await optimized.loraLinear(opts);
        const slow = await reference.loraLinear(opts);
        assertClose(fast.y, slow.y, tolerances.lora.forward, 'y');
        const gf = await optimized.loraLinearBackward({ ...opts, gradY });
        const gs = await reference.loraLinearBackward({ ...opts, gradY });
        assert.equal(gf.gradXLora, undefined);
        assertClose(gf.gradX, gs.gradX, tolerances.lora.grad, 'gradX');
        assertClose(gf.gradA, gs.gradA, tolerances.lora.grad, 'gradA');
        assertClose(gf.gradB, gs.gradB, tolerances.lora.grad, 'gradB');
        if (withBias) assertClose(gf.gradBias!, gs.gradBias!, tolerances.lora.grad, 'gradBias');
      });

      it(`with xLora (LoRA dropout), forward and backward match the reference: rows=${rows} in=${inDim} out=${outDim} r=${rank} bias=${withBias}`, async () => {
        const { opts, gradY, rng } = problem(rows * 17 + inDim + outDim + rank, rows, inDim, outDim, rank, withBias);
        const xLora = rng.gaussian(rows * inDim);
        const withX = { ...opts, xLora };
        const fast = await optimized.loraLinear(withX);
        const slow = await reference.loraLinear(withX);
        assertClose(fast.y, slow.y, tolerances.lora.forward, 'y');
        const gf = await optimized.loraLinearBackward({ ...withX, gradY });
        const gs = await reference.loraLinearBackward({ ...withX, gradY });
        assertClose(gf.gradX, gs.gradX, tolerances.lora.grad, 'gradX');
        assertClose(gf.gradXLora!, gs.gradXLora!, tolerances.lora.grad, 'gradXLora');
        assertClose(gf.gradA, gs.gradA, tolerances.lora.grad, 'gradA');
        assertClose(gf.gradB, gs.gradB, tolerances.lora.grad, 'gradB');
        if (withBias) assertClose(gf.gradBias!, gs.gradBias!, tolerances.lora.grad, 'gradBias');
        // The low-rank path really reads xLora: with xLora = x the output differs.
        const plain = await reference.loraLinear(opts);
        assert.ok(plain.y.some((v, i) => Math.abs(v - (slow.y[i] as number)) > 1e-3), 'xLora should change y');
      });
    }
  }

  for (const rank of [3, 34]) {
    it(`gradients match finite differences of Σ gradY ⊙ y: r=${rank}`, async () => {
      const { opts, gradY, rng } = problem(77 + rank, 4, 6, 5, rank, true);
      const g = await optimized.loraLinearBackward({ ...opts, gradY });
      const loss = async () => {
        const { y } = await reference.loraLinear(opts);
        return y.reduce((s, v, i) => s + v * (gradY[i] as number), 0);
      };
      const linear = tolerances.finiteDifferenceLinear;
      await checkGradient('lora gradX', opts.x, g.gradX, loss, rng, linear);
      await checkGradient('lora gradA', opts.loraA, g.gradA, loss, rng, linear);
      await checkGradient('lora gradB', opts.loraB, g.gradB, loss, rng, linear);
      await checkGradient('lora gradBias', opts.bias!, g.gradBias!, loss, rng, linear);
    });

    it(`with xLora, gradients w.r.t. x, xLora, A, B and bias match finite differences: r=${rank}`, async () => {
      const { opts, gradY, rng } = problem(91 + rank, 4, 6, 5, rank, true);
      const withX = { ...opts, xLora: rng.gaussian(4 * 6) };
      const g = await optimized.loraLinearBackward({ ...withX, gradY });
      const loss = async () => {
        const { y } = await reference.loraLinear(withX);
        return y.reduce((s, v, i) => s + v * (gradY[i] as number), 0);
      };
      const linear = tolerances.finiteDifferenceLinear;
      await checkGradient('lora(xLora) gradX', withX.x, g.gradX, loss, rng, linear);
      await checkGradient('lora(xLora) gradXLora', withX.xLora, g.gradXLora!, loss, rng, linear);
      await checkGradient('lora(xLora) gradA', withX.loraA, g.gradA, loss, rng, linear);
      await checkGradient('lora(xLora) gradB', withX.loraB, g.gradB, loss, rng, linear);
      await checkGradient('lora(xLora) gradBias', withX.bias!, g.gradBias!, loss, rng, linear);
    });
  }

  for (const rank of [8, 40]) {
    it(`xLora = x gives the plain layer: y, gradA, gradB, gradBias bit-identical, gradX + gradXLora = gradX: r=${rank}`, async () => {
      for (const backend of [optimized, reference]) {
        const { opts, gradY } = problem(5 + rank, 33, 70, 65, rank, true);
        const same = { ...opts, xLora: opts.x.slice() };
        assertBitIdentical((await backend.loraLinear(same)).y, (await backend.loraLinear(opts)).y, 'y');
        const plain = await backend.loraLinearBackward({ ...opts, gradY });
        const split = await backend.loraLinearBackward({ ...same, gradY });
        assertBitIdentical(split.gradA, plain.gradA, 'gradA');
        assertBitIdentical(split.gradB, plain.gradB, 'gradB');
        assertBitIdentical(split.gradBias!, plain.gradBias!, 'gradBias');
        const summed = split.gradX.map((v, i) => v + (split.gradXLora![i] as number));
        assertClose(summed, plain.gradX, tolerances.lora.grad, 'gradX + gradXLora vs gradX');
        // Absent, undefined and null xLora are the same call.
        const undef = await backend.loraLinearBackward({ ...opts, xLora: undefined, gradY });
        assert.equal(undef.gradXLora, undefined);
        assertBitIdentical(undef.gradX, plain.gradX, 'gradX (xLora: undefined)');
      }
    });
  }

  it('a wrong xLora is rejected naming options.xLora (shape, type, non-finite values)', async () => {
    const { opts, gradY } = problem(3, 2, 3, 4, 2, false);
    const named = (received: string) => (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
      assert.equal(e.argument, 'options.xLora');
      assert.ok(e.message.includes(received), `"${e.message}" should mention ${received}`);
      return true;
    };
    await assert.rejects(optimized.loraLinear({ ...opts, xLora: new Float32Array(5) }), named('Float32Array(5)'));
    await assert.rejects(optimized.loraLinear({ ...opts, xLora: new Float32Array(12) }), named('6 elements ([rows=2, inDim=3] like options.x)'));
    await assert.rejects(optimized.loraLinearBackward({ ...opts, xLora: new Float32Array(7), gradY }), named('Float32Array(7)'));
    await assert.rejects(reference.loraLinear({ ...opts, xLora: new Float64Array(6) as unknown as Float32Array }), named('Float64Array(6)'));
    const nan = new Float32Array(6).fill(0.5);
    nan[4] = NaN;
    await assert.rejects(optimized.loraLinear({ ...opts, xLora: nan }), named('NaN at index 4 (row 1, column 1)'));
    await assert.rejects(optimized.loraLinearBackward({ ...opts, xLora: nan, gradY }), named('NaN at index 4'));
    // The addon checks the length itself too, and a gradXLora without xLora (synchronous throws).
    const native = { ...opts, threads: 0 };
    await assert.rejects(async () => core().loraLinear({ ...native, xLora: new Float32Array(5), y: new Float32Array(8) }), /Expected 6 elements in xLora but received 5/);
    await assert.rejects(
      async () => core().loraLinearBackward({ ...native, gradY, gradX: new Float32Array(6), gradXLora: new Float32Array(6) }),
      /gradXLora needs xLora/,
    );
  });
});
