/**
 * Runs ONE trial of bench/trials.ts in this (fresh) process with benchmark.js and prints a JSON line:
 * { name, results: [{ impl, medianMs, samples }] }. Invoked by bench/run.ts.
 */
import Benchmark from 'benchmark';

import { trials, type Job } from './trials';

function time(name: string, job: Job, minSamples: number, maxTime: number): Promise<{ impl: string; medianMs: number; samples: number }> {
  return new Promise((resolve, reject) => {
    const bench = new Benchmark(name, {
      defer: true,
      minSamples,
      maxTime,
      initCount: 1,
      fn: (deferred: { resolve(): void }) => {
        job().then(
          () => deferred.resolve(),
          (error: unknown) => reject(error instanceof Error ? error : new Error(String(error))),
        );
      },
      onComplete: () => {
        const sample = (bench.stats.sample as number[]).slice().sort((a, b) => a - b);
        const mid = sample.length >> 1;
        const median = sample.length % 2 ? (sample[mid] as number) : ((sample[mid - 1] as number) + (sample[mid] as number)) / 2;
        resolve({ impl: name, medianMs: median * 1000, samples: sample.length });
      },
      onError: (event: { target: { error?: Error } }) => reject(event.target.error ?? new Error('benchmark failed')),
    });
    bench.run({ async: true });
  });
}

async function main(): Promise<void> {
  const name = process.argv[2];
  const trial = trials.find((t) => t.name === name);
  if (!trial) throw new Error(`unknown trial ${JSON.stringify(name)}`);
  const results = [];
  const ours = trial.ours();
  await ours(); // warm-up: page in buffers, spin up thread pools
  results.push(await time('mmesid', ours, trial.minSamples, trial.maxTime));
  for (const baseline of trial.baselines) {
    const job = baseline.job();
    await job();
    results.push(await time(baseline.name, job, trial.minSamples, trial.maxTime));
  }
  process.stdout.write(`${JSON.stringify({ name, results })}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
