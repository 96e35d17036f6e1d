import * as assert from 'node:assert/strict';

import { InvalidArgumentError, kernels } from '../../lib';

type Check = (e: unknown) => boolean;

/** An InvalidArgumentError for `argument`, whose message says what was received. */
const invalid =
  (argument: string, received?: string): Check =>
  (e) => {
    assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
    assert.equal(e.code, 'ERR_MMESID_INVALID_ARGUMENT');
    assert.equal(e.argument, argument);
    assert.match(e.message, /^Expected .+ for .+ but received .+/);
    if (received) assert.ok(e.message.includes(received), `"${e.message}" should mention ${received}`);
    return true;
  };

describe('argument validation', () => {
  const dim = 4, levels = 2, codes = 3;
  const x = new Float32Array(5 * dim).fill(0.5);
  const codebooks = new Float32Array(levels * codes * dim).fill(0.25);
  const rq = { x, dim, codebooks, levels, codes };

  it('rqEncode: types, dims, lengths and ranges', async () => {
    await assert.rejects(kernels.rqEncode({ ...rq, x: Array.from(x) as unknown as Float32Array }), invalid('options.x', 'Array(20)'));
    await assert.rejects(kernels.rqEncode({ ...rq, x: new Float64Array(20) as unknown as Float32Array }), invalid('options.x', 'Float64Array(20)'));
    await assert.rejects(kernels.rqEncode({ ...rq, dim: 0 }), invalid('options.dim', '0'));
    await assert.rejects(kernels.rqEncode({ ...rq, dim: -3 }), invalid('options.dim', '-3'));
    await assert.rejects(kernels.rqEncode({ ...rq, dim: 2.5 }), invalid('options.dim', '2.5'));
    await assert.rejects(kernels.rqEncode({ ...rq, dim: NaN }), invalid('options.dim', 'NaN'));
    await assert.rejects(kernels.rqEncode({ ...rq, dim: 3 }), invalid('options.x'));
    await assert.rejects(kernels.rqEncode({ ...rq, x: new Float32Array(0) }), invalid('options.x', 'Float32Array(0)'));
    await assert.rejects(kernels.rqEncode({ ...rq, levels: 3 }), invalid('options.codebooks', 'Float32Array(24)'));
    await assert.rejects(kernels.rqEncode({ ...rq, codes: 4 }), invalid('options.codebooks'));
    await assert.rejects(kernels.rqEncode({ ...rq, levels: 0 }), invalid('options.levels', '0'));
    await assert.rejects(kernels.rqEncode({ ...rq, beam: 0 }), invalid('options.beam', '0'));
    await assert.rejects(kernels.rqEncode({ ...rq, beam: 10 }), invalid('options.beam', '10'));
    await assert.rejects(kernels.rqEncode({ ...rq, threads: -1 }), invalid('options.threads', '-1'));
    await assert.rejects(kernels.rqEncode(null as unknown as never), invalid('options', 'null'));
  });

  it('rqEncode: NaN and Infinity inside the buffers are found off the JS thread and named', async () => {
    const bad = x.slice();
    bad[9] = NaN;
    await assert.rejects(kernels.rqEncode({ ...rq, x: bad }), invalid('options.x', 'NaN at index 9 (row 2, column 1)'));
    const badBook = codebooks.slice();
    badBook[5] = -Infinity;
    await assert.rejects(kernels.rqEncode({ ...rq, codebooks: badBook }), invalid('options.codebooks', '-Infinity at index 5'));
  });

  it('mmdGaussian, infoNce: shapes, bandwidths, temperature, NaN', async () => {
    const y = new Float32Array(x.length).fill(0.1);
    await assert.rejects(kernels.mmdGaussian({ x, y: y.subarray(4), dim }), invalid('options.y'));
    await assert.rejects(kernels.mmdGaussian({ x: x.subarray(0, 4), y: y.subarray(0, 4), dim }), invalid('options.x'));
    await assert.rejects(kernels.mmdGaussian({ x, y, dim, alphas: [] }), invalid('options.alphas'));
    await assert.rejects(kernels.mmdGaussian({ x, y, dim, alphas: [0.5, -1] }), invalid('options.alphas[1]', '-1'));
    await assert.rejects(kernels.mmdGaussian({ x, y, dim, sigma: 0 }), invalid('options.sigma[0]', '0'));
    await assert.rejects(kernels.mmdGaussian({ x, y, dim, sigma: 1, alphas: 1 }), invalid('options.sigma'));
    const nanY = y.slice();
    nanY[3] = NaN;
    await assert.rejects(kernels.mmdGaussian({ x, y: nanY, dim }), invalid('options.y', 'NaN at index 3'));
    await assert.rejects(kernels.infoNce({ a: x, b: y, dim, temperature: 0 }), invalid('options.temperature', '0'));
    await assert.rejects(kernels.infoNce({ a: x, b: y, dim, temperature: NaN }), invalid('options.temperature', 'NaN'));
    await assert.rejects(kernels.infoNce({ a: x, b: y.subarray(1), dim, temperature: 1 }), invalid('options.b'));
    await assert.rejects(kernels.infoNce({ a: x, b: nanY, dim, temperature: 1 }), invalid('options.b', 'NaN at index 3'));
    await assert.rejects(
      kernels.infoNce({ a: x, b: y, dim, temperature: 1, symmetric: 'yes' as unknown as boolean }),
      invalid('options.symmetric', '"yes"'),
    );
  });

  it('loraLinear: every buffer length is checked against the declared shape; NaN is named', async () => {
    const rows = 2, inDim = 3, outDim = 4, rank = 2;
    const base = {
      x: new Float32Array(rows * inDim).fill(1),
      weight: new Float32Array(outDim * inDim).fill(0.5),
      loraA: new Float32Array(rank * inDim).fill(0.1),
      loraB: new Float32Array(outDim * rank).fill(0.2),
      rows, inDim, outDim, rank, scale: 2,
    };
    await assert.rejects(kernels.loraLinear({ ...base, weight: new Float32Array(11) }), invalid('options.weight', 'Float32Array(11)'));
    await assert.rejects(kernels.loraLinear({ ...base, loraA: new Float32Array(5) }), invalid('options.loraA'));
    await assert.rejects(kernels.loraLinear({ ...base, loraB: new Float32Array(9) }), invalid('options.loraB'));
    await assert.rejects(kernels.loraLinear({ ...base, bias: new Float32Array(3) }), invalid('options.bias'));
    await assert.rejects(kernels.loraLinear({ ...base, rank: 0 }), invalid('options.rank', '0'));
    await assert.rejects(kernels.loraLinear({ ...base, scale: Infinity }), invalid('options.scale', 'Infinity'));
    await assert.rejects(kernels.loraLinearBackward({ ...base, gradY: new Float32Array(7) }), invalid('options.gradY'));
    const w = base.weight.slice();
    w[7] = NaN;
    await assert.rejects(kernels.loraLinear({ ...base, weight: w }), invalid('options.weight', 'NaN at index 7 (row 2, column 1)'));
    const gy = new Float32Array(rows * outDim).fill(1);
    gy[1] = Infinity;
    await assert.rejects(kernels.loraLinearBackward({ ...base, gradY: gy }), invalid('options.gradY', 'Infinity at index 1'));
  });

  it('the process lives on and the kernels still work after every failure above', async () => {
    const { codes } = await kernels.rqEncode(rq);
    assert.equal(codes.length, 5 * levels);
  });
});
