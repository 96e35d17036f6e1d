/**
 * `npm install` must succeed on a machine without libtorch, building mmesid_core.node alone and saying
 * so. We reproduce "libtorch not found" on this machine by hiding the package from CMake
 * (CMAKE_DISABLE_FIND_PACKAGE_Torch) and build into a scratch folder through the same script npm runs.
 * The same scratch build also leaves out BLAS (MMESID_BLAS=OFF), so the built-in GEMM that a machine
 * without OpenBLAS gets is checked against the regular build's kernels.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');

describe('build without libtorch', function () {
  this.timeout(15 * 60 * 1000);
  let out: string;

  before(() => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-notorch-'));
  });
  after(() => fs.rmSync(out, { recursive: true, force: true }));

  it('builds mmesid_core.node only, says why, and the addon works', () => {
    const result = spawnSync(
      process.execPath,
      [
        path.join(root, 'scripts', 'build-native.js'),
        '--out', out,
        '--CDCMAKE_DISABLE_FIND_PACKAGE_Torch=ON',
        '--CDMMESID_CUDA=OFF',
        '--CDMMESID_BLAS=OFF',
      ],
      { cwd: root, encoding: 'utf8' },
    );
    const log = `${result.stdout}\n${result.stderr}`;
    assert.equal(result.status, 0, log);
    assert.match(log, /libtorch\s+NOT found .*building mmesid_core\.node only/);
    assert.match(log, /mmesid: mmesid_torch\.node not built/);
    assert.match(log, /BLAS\s+none found: using the built-in blocked GEMM/);
    const core = path.join(out, 'Release', 'mmesid_core.node');
    assert.ok(fs.existsSync(core), `missing ${core}`);
    assert.ok(!fs.existsSync(path.join(out, 'Release', 'mmesid_torch.node')));
    // The addon must not need libtorch at run time either.
    const check = spawnSync(
      process.execPath,
      ['-e', `const a = require(${JSON.stringify(core)}); const c = new Int32Array(2);
        a.rqEncode({ x: new Float32Array([1, 0, 0, 1]), codebooks: new Float32Array([0, 1, 1, 0]), n: 2, dim: 2, levels: 1,
                     codebookSize: 2, beam: 1, threads: 1, codes: c }).then(() => console.log(JSON.stringify(Array.from(c))));`],
      { encoding: 'utf8' },
    );
    assert.equal(check.status, 0, check.stderr);
    assert.equal(check.stdout.trim(), '[1,0]');
    // Built-in GEMM vs OpenBLAS: the LoRA forward and backward (all GEMM) of both builds agree.
    const compare = spawnSync(
      process.execPath,
      ['-e', `
        const scratch = require(${JSON.stringify(core)});
        const regular = require(${JSON.stringify(path.join(root, 'build', 'Release', 'mmesid_core.node'))});
        if (scratch.buildInfo().blas !== 'builtin') throw new Error('scratch build should use the built-in GEMM');
        const rnd = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.5);
        const rows = 37, inDim = 70, outDim = 45, rank = 5;
        const base = { x: rnd(rows * inDim, 1), weight: rnd(outDim * inDim, 2), bias: rnd(outDim, 3), loraA: rnd(rank * inDim, 4),
                       loraB: rnd(outDim * rank, 5), rows, inDim, outDim, rank, scale: 3, threads: 2 };
        const run = async (addon) => {
          const y = new Float32Array(rows * outDim), gradX = new Float32Array(rows * inDim);
          const gradA = new Float32Array(rank * inDim), gradB = new Float32Array(outDim * rank);
          await addon.loraLinear({ ...base, y });
          await addon.loraLinearBackward({ ...base, gradY: rnd(rows * outDim, 6), gradX, gradA, gradB });
          return [y, gradX, gradA, gradB];
        };
        Promise.all([run(scratch), run(regular)]).then(([a, b]) => {
          let worst = 0;
          a.forEach((arr, k) => arr.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - b[k][i]) / (1e-4 + Math.abs(b[k][i]))); }));
          console.log(worst);
        });`],
      { encoding: 'utf8' },
    );
    assert.equal(compare.status, 0, compare.stderr);
    assert.ok(Number(compare.stdout.trim()) < 1e-3, `built-in GEMM vs OpenBLAS: worst relative difference ${compare.stdout}`);
    const ldd = spawnSync('ldd', [core], { encoding: 'utf8' });
    if (ldd.status === 0) assert.doesNotMatch(ldd.stdout, /libtorch|libc10/);
  });
});
