/**
 * The kernels registered as libtorch autograd ops (mmesid_torch.node) must give the numbers the core
 * kernels give: forward through the op, backward through libtorch's autograd engine.
 */
import * as assert from 'node:assert/strict';

import { optimized, torchAvailable, torchOps } from '../support/backends';
import { assertClose } from '../support/assertClose';
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
});
