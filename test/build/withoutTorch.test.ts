/**
 * `npm install` must succeed on a machine without libtorch, building mmesid_core.node alone and saying
 * so. We reproduce "libtorch not found" on this machine by hiding the package from CMake
 * (CMAKE_DISABLE_FIND_PACKAGE_Torch) and build into a scratch folder through the same script npm runs.
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
      ],
      { cwd: root, encoding: 'utf8' },
    );
    const log = `${result.stdout}\n${result.stderr}`;
    assert.equal(result.status, 0, log);
    assert.match(log, /libtorch\s+NOT found .*building mmesid_core\.node only/);
    assert.match(log, /mmesid: mmesid_torch\.node not built/);
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
    const ldd = spawnSync('ldd', [core], { encoding: 'utf8' });
    if (ldd.status === 0) assert.doesNotMatch(ldd.stdout, /libtorch|libc10/);
  });
});
