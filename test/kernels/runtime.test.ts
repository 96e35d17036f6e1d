import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

import { buildInfo, kernels } from '../../lib';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

describe('runtime behaviour of the addon', () => {
  it('reports what was built', () => {
    const info = buildInfo();
    assert.equal(info.core.addon, 'mmesid_core');
    assert.ok(info.core.hardwareThreads >= 1);
    assert.match(info.core.blas, /openblas|cblas|builtin/);
  });

  it('loads and computes inside a worker_thread, with the same result as the main thread', async () => {
    const rng = new Rng(4);
    const dim = 16, levels = 3, size = 8, n = 50;
    const x = rng.gaussian(n * dim);
    const codebooks = rng.gaussian(levels * size * dim);
    const main = await kernels.rqEncode({ x, dim, codebooks, levels, codes: size });
    const lib = path.resolve(__dirname, '..', '..', 'lib', 'index.ts');
    const source = `
      require('ts-node/register/transpile-only');
      const { parentPort, workerData } = require('node:worker_threads');
      const { kernels } = require(${JSON.stringify(lib)});
      kernels.rqEncode(workerData).then((r) => parentPort.postMessage(r.codes), (e) => parentPort.postMessage({ error: String(e) }));
    `;
    const worker = new Worker(source, { eval: true, workerData: { x, dim, codebooks, levels, codes: size } });
    const fromWorker = await new Promise<unknown>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.deepEqual(fromWorker, main.codes);
  });

  it('keeps the event loop ticking while a large encode runs', async () => {
    const rng = new Rng(6);
    const dim = 256, levels = 4, size = 256, n = 60000;
    const x = rng.gaussian(n * dim);
    const codebooks = rng.gaussian(levels * size * dim);
    // Warm-up: the first call creates the OpenMP pool and lets V8 finish collecting the input's garbage.
    await kernels.rqEncode({ x: x.subarray(0, 100 * dim), dim, codebooks, levels, codes: size });
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 5);
    histogram.enable();
    const started = Date.now();
    await kernels.rqEncode({ x, dim, codebooks, levels, codes: size });
    const elapsed = Date.now() - started;
    histogram.disable();
    clearInterval(timer);
    const maxDelayMs = histogram.max / 1e6;
    assert.ok(elapsed > 50, `the encode should take a while to make the test meaningful (${elapsed} ms)`);
    assert.ok(ticks >= Math.floor(elapsed / 5 / 4), `timer ran ${ticks} times in ${elapsed} ms`);
    assert.ok(maxDelayMs < tolerances.eventLoop.maxTimerDelayMs, `event loop delay reached ${maxDelayMs.toFixed(1)} ms`);
  });
});
