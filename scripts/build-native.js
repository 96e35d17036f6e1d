#!/usr/bin/env node
// Builds the native addons from the one CMake graph through cmake-js (Ninja when available, ccache when
// installed), then prints what was built. Extra arguments go to cmake-js, e.g.
//   npm run build:native -- --CDMMESID_CUDA=OFF --CDCMAKE_CUDA_ARCHITECTURES=80
// Environment: MMESID_BUILD_JOBS (default: number of cores), MMESID_CMAKE_ARGS (extra cmake-js args).
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const jobs = process.env.MMESID_BUILD_JOBS || String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
const extra = [...process.argv.slice(2), ...(process.env.MMESID_CMAKE_ARGS ? process.env.MMESID_CMAKE_ARGS.split(/\s+/).filter(Boolean) : [])];
// `--out DIR` (from the arguments) builds elsewhere, e.g. a scratch build in the tests.
const outIndex = extra.indexOf('--out');
const outDir = outIndex >= 0 ? path.resolve(extra.splice(outIndex, 2)[1]) : path.join(root, 'build');
const args = [cmakeJs, 'build', '--directory', root, '--out', outDir, '--parallel', jobs, '--log-level', 'warn', ...extra];

const started = Date.now();
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: process.env });
if (result.status !== 0) {
  console.error(`mmesid: native build failed (exit ${result.status}). See the compiler output above.`);
  console.error('mmesid: system packages: run `bash scripts/setup-system.sh` (Debian/Ubuntu) for libtorch, OpenBLAS, ninja, ccache.');
  process.exit(result.status ?? 1);
}

const built = ['mmesid_core.node', 'mmesid_torch.node'].map((name) => {
  const file = ['Release', 'Debug', '.'].map((dir) => path.join(outDir, dir, name)).find((p) => fs.existsSync(p));
  return { name, file };
});
const seconds = ((Date.now() - started) / 1000).toFixed(1);
const decisionsFile = path.join(outDir, 'mmesid-build.json');
if (fs.existsSync(decisionsFile)) {
  const d = JSON.parse(fs.readFileSync(decisionsFile, 'utf8'));
  const cuda = d.cuda.enabled ? `ON (nvcc ${d.cuda.nvcc}, architectures ${d.cuda.architectures})` : 'OFF';
  const torch = d.torch.found ? `found (${d.torch.version})` : 'NOT found';
  console.log(`mmesid: ${d.buildType}, -march=${d.cpuArch || '(default)'}, BLAS ${d.blas}, OpenMP ${d.openmp}, CUDA ${cuda}, libtorch ${torch}`);
}
for (const { name, file } of built) {
  console.log(file ? `mmesid: built ${name} (${path.relative(root, file)})` : `mmesid: ${name} not built`);
}
if (!built[1].file) {
  console.log('mmesid: libtorch was not found, so only mmesid_core.node (the kernels and tokenization) is available.');
  console.log('mmesid: for training and the LLM: apt-get install libtorch-dev libopenblas0-openmp && npm run build:native');
}
console.log(`mmesid: native build finished in ${seconds} s`);
