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

describe('kernels.loraLinear', () => {
  const shapes = [
    { rows: 1, inDim: 1, outDim: 1, rank: 1 },
    { rows: 1, inDim: 7, outDim: 5, rank: 2 },
    { rows: 3, inDim: 33, outDim: 17, rank: 8 },
    { rows: 64, inDim: 128, outDim: 96, rank: 8 },
    { rows: 65, inDim: 257, outDim: 129, rank: 16 },
    { rows: 10, inDim: 12, outDim: 9, rank: 9 },
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
        assertClose(gf.gradX, gs.gradX, tolerances.lora.grad, 'gradX');
        assertClose(gf.gradA, gs.gradA, tolerances.lora.grad, 'gradA');
        assertClose(gf.gradB, gs.gradB, tolerances.lora.grad, 'gradB');
        if (withBias) assertClose(gf.gradBias!, gs.gradBias!, tolerances.lora.grad, 'gradBias');
      });
    }
  }

  it('gradients match finite differences of Σ gradY ⊙ y', async () => {
    const { opts, gradY, rng } = problem(77, 4, 6, 5, 3, true);
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
});
