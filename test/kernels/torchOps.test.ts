/**
 * The kernels registered as libtorch autograd ops (mmesid_torch.node) must give the numbers the core
 * kernels give: forward through the op, backward through libtorch's autograd engine.
 */
import * as assert from 'node:assert/strict';

import { InvalidArgumentError } from '../../lib/errors';
import { torch } from '../../lib/native';
import { optimized, reference, torchAvailable, torchOps } from '../support/backends';
import { assertClose } from '../support/assertClose';
import { checkGradient } from '../support/finiteDifference';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

describe('libtorch autograd ops (mmesid_torch.node)', function () {
  before(function () {
    // CI installs libtorch, so there this suite always runs; on a machine without it the addon is not built.
    if (!torchAvailable) {
      if (process.env.CI) throw new Error('mmesid_torch.node is missing in CI: libtorch should have been found');
      this.skip();
    }
  });
  const ops = () => torchOps!;
  const tol = tolerances.torchOps;

  it('rqEncode op gives the core kernel codes and errors', async () => {
    const rng = new Rng(1);
    const dim = 32, levels = 4, size = 64, n = 333;
    const x = rng.gaussian(n * dim);
    const codebooks = rng.gaussian(levels * size * dim);
    for (const beam of [1, 4]) {
      const a = await optimized.rqEncode({ x, dim, codebooks, levels, codes: size, beam, withError: true });
      const b = await ops().rqEncode({ x, dim, codebooks, levels, codes: size, beam, withError: true });
      assert.deepEqual(b.codes, a.codes);
      assertClose(b.sqError!, a.sqError!, tol.loss, 'sqError');
    }
  });

  it('mmd op: loss and autograd gradients equal the core kernel', async () => {
    const rng = new Rng(2);
    const n = 40, dim = 24;
    const x = rng.gaussian(n * dim);
    const y = rng.gaussian(n * dim, 1.3);
    for (const bw of [{ alphas: [0.5, 1] }, { sigma: 3 }]) {
      const a = await optimized.mmdGaussian({ x, y, dim, ...bw });
      const b = await ops().mmdGaussian({ x, y, dim, ...bw });
      assertClose(b.loss, a.loss, tol.loss, 'loss');
      assertClose(b.gradX, a.gradX, tol.grad, 'gradX');
      assertClose(b.gradY, a.gradY, tol.grad, 'gradY');
    }
  });

  it('infoNce op: loss and autograd gradients equal the core kernel', async () => {
    const rng = new Rng(3);
    const n = 50, dim = 20;
    const a = rng.gaussian(n * dim);
    const b = rng.gaussian(n * dim);
    for (const symmetric of [false, true]) {
      const p = await optimized.infoNce({ a, b, dim, temperature: 0.1, symmetric });
      const q = await ops().infoNce({ a, b, dim, temperature: 0.1, symmetric });
      assertClose(q.loss, p.loss, tol.loss, 'loss');
      assertClose(q.gradA, p.gradA, tol.grad, 'gradA');
      assertClose(q.gradB, p.gradB, tol.grad, 'gradB');
    }
  });

  it('lora op: forward and autograd gradients equal the core kernel', async () => {
    const rng = new Rng(4);
    const rows = 9, inDim = 40, outDim = 24, rank = 4;
    const opts = {
      x: rng.gaussian(rows * inDim),
      weight: rng.gaussian(outDim * inDim, 0.2),
      bias: rng.gaussian(outDim),
      loraA: rng.gaussian(rank * inDim, 0.2),
      loraB: rng.gaussian(outDim * rank),
      rows, inDim, outDim, rank, scale: 2,
    };
    const gradY = rng.gaussian(rows * outDim);
    const p = await optimized.loraLinear(opts);
    const q = await ops().loraLinear(opts);
    assertClose(q.y, p.y, tol.lora, 'y');
    const gp = await optimized.loraLinearBackward({ ...opts, gradY });
    const gq = await ops().loraLinearBackward({ ...opts, gradY });
    assertClose(gq.gradX, gp.gradX, tol.lora, 'gradX');
    assertClose(gq.gradA, gp.gradA, tol.lora, 'gradA');
    assertClose(gq.gradB, gp.gradB, tol.lora, 'gradB');
    assertClose(gq.gradBias!, gp.gradBias!, tol.lora, 'gradBias');
  });

  const loraProblem = (seed: number, rows: number, inDim: number, outDim: number, rank: number) => {
    const rng = new Rng(seed);
    const opts = {
      x: rng.gaussian(rows * inDim),
      xLora: rng.gaussian(rows * inDim),
      weight: rng.gaussian(outDim * inDim, 0.2),
      bias: rng.gaussian(outDim),
      loraA: rng.gaussian(rank * inDim, 0.2),
      loraB: rng.gaussian(outDim * rank),
      rows, inDim, outDim, rank, scale: 2,
    };
    return { rng, opts, gradY: rng.gaussian(rows * outDim) };
  };

  for (const rank of [4, 40]) {
    it(`lora op with x_lora (LoRA dropout): forward and autograd gradients, x_lora's included, equal the core kernel and the reference: r=${rank}`, async () => {
      const { opts, gradY } = loraProblem(5 + rank, 9, 40, 24, rank);
      const p = await optimized.loraLinear(opts);
      const q = await ops().loraLinear(opts);
      const s = await reference.loraLinear(opts);
      assertClose(q.y, p.y, tol.lora, 'y');
      assertClose(q.y, s.y, tolerances.lora.forward, 'y vs reference');
      const gp = await optimized.loraLinearBackward({ ...opts, gradY });
      const gq = await ops().loraLinearBackward({ ...opts, gradY });
      const gs = await reference.loraLinearBackward({ ...opts, gradY });
      for (const [name, a, b, c] of [
        ['gradX', gq.gradX, gp.gradX, gs.gradX],
        ['gradXLora', gq.gradXLora!, gp.gradXLora!, gs.gradXLora!],
        ['gradA', gq.gradA, gp.gradA, gs.gradA],
        ['gradB', gq.gradB, gp.gradB, gs.gradB],
        ['gradBias', gq.gradBias!, gp.gradBias!, gs.gradBias!],
      ] as const) {
        assertClose(a, b, tol.lora, name);
        assertClose(a, c, tolerances.lora.grad, `${name} vs reference`);
      }
    });
  }

  it('lora op with x_lora: autograd gradients match finite differences (x, x_lora, A, B, bias)', async () => {
    const { opts, gradY, rng } = loraProblem(21, 4, 6, 5, 3);
    const g = await ops().loraLinearBackward({ ...opts, gradY });
    const loss = async () => {
      const { y } = await reference.loraLinear(opts);
      return y.reduce((sum, v, i) => sum + v * (gradY[i] as number), 0);
    };
    const linear = tolerances.finiteDifferenceLinear;
    await checkGradient('lora op gradX', opts.x, g.gradX, loss, rng, linear);
    await checkGradient('lora op gradXLora', opts.xLora, g.gradXLora!, loss, rng, linear);
    await checkGradient('lora op gradA', opts.loraA, g.gradA, loss, rng, linear);
    await checkGradient('lora op gradB', opts.loraB, g.gradB, loss, rng, linear);
    await checkGradient('lora op gradBias', opts.bias, g.gradBias!, loss, rng, linear);
  });

  it('lora op: x_lora = x gives the plain op (y bit-identical, gradX + gradXLora = gradX); absent x_lora is unchanged', async () => {
    const { opts, gradY } = loraProblem(8, 9, 40, 24, 4);
    const { xLora: _unused, ...plainOpts } = opts;
    const same = { ...plainOpts, xLora: plainOpts.x.slice() };
    const plainY = (await ops().loraLinear(plainOpts)).y;
    const sameY = (await ops().loraLinear(same)).y;
    assert.ok(Buffer.from(sameY.buffer).equals(Buffer.from(plainY.buffer)), 'y: not bit-identical');
    const plain = await ops().loraLinearBackward({ ...plainOpts, gradY });
    const split = await ops().loraLinearBackward({ ...same, gradY });
    assert.equal(plain.gradXLora, undefined);
    assertClose(split.gradX.map((v, i) => v + (split.gradXLora![i] as number)), plain.gradX, tolerances.lora.grad, 'gradX + gradXLora');
    assertClose(split.gradA, plain.gradA, tol.lora, 'gradA');
    assertClose(split.gradB, plain.gradB, tol.lora, 'gradB');
    // The plain op still equals the core kernel without x_lora.
    const core = await optimized.loraLinearBackward({ ...plainOpts, gradY });
    assertClose(plain.gradX, core.gradX, tol.lora, 'gradX vs core');
  });

  it('lora op: a wrong xLora is rejected naming xLora', async () => {
    const { opts, gradY } = loraProblem(9, 2, 3, 4, 2);
    await assert.rejects(ops().loraLinear({ ...opts, xLora: new Float32Array(5) }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(e.argument, 'options.xLora');
      return true;
    });
    // The torch addon checks the length itself too (its tensors view the buffer with x's shape).
    const native = { ...opts, threads: 0 };
    await assert.rejects(async () => torch().loraLinear({ ...native, xLora: new Float32Array(5), y: new Float32Array(8) }), /Expected 6 elements in xLora but received 5/);
    const { xLora: _unused, ...noX } = native;
    await assert.rejects(async () => torch().loraLinearBackward({ ...noX, gradY, gradX: new Float32Array(6), gradXLora: new Float32Array(6) }), /gradXLora needs xLora/);
  });
});
