/**
 * Runs ONE trial of bench/trials.ts in this (fresh) process with benchmark.js and prints a JSON line:
 * { name, results: [{ impl, medianMs, samples, peakMB? }] }. Invoked by bench/run.ts. peakMB: a job's
 * peak ATen tensor memory in one call above what was live before it (jobs that measure it).
 *
 * Ours and the baselines are sampled in alternating rounds (ours, baselines, ours, ...) so slow drifts of
 * a shared VM hit every implementation alike; the median is over all rounds' samples. Cycles run
 * back to back (benchmark.js `delay: 0`): we measure steady-state throughput, and an idle gap between
 * calls (thread pools parking, caches going cold) would add ~3 ms to every call of every implementation.
 */
import Benchmark from 'benchmark';

import { trials, type Job } from './trials';

const ROUNDS = 3;

function median(values: number[]): number {
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** One benchmark.js run; resolves with its per-cycle samples (seconds per call). */
function sample(name: string, job: Job, minSamples: number, maxTime: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const bench = new Benchmark(name, {
      defer: true,
      minSamples,
      maxTime,
      initCount: 1,
      delay: 0,
      fn: (deferred: { resolve(): void }) => {
        job().then(
          () => deferred.resolve(),
          (error: unknown) => reject(error instanceof Error ? error : new Error(String(error))),
        );
      },
      onComplete: () => resolve((bench.stats.sample as number[]).slice()),
      onError: (event: { target: { error?: Error } }) => reject(event.target.error ?? new Error('benchmark failed')),
    });
    bench.run({ async: true });
  });
}

async function main(): Promise<void> {
  const name = process.argv[2];
  const trial = trials.find((t) => t.name === name);
  if (!trial) throw new Error(`unknown trial ${JSON.stringify(name)}`);
  const impls = [{ impl: 'mmesid', job: trial.ours() }, ...trial.baselines.map((b) => ({ impl: b.name, job: b.job() }))];
  for (const { job } of impls) await job(); // warm-up: page in buffers, spin up thread pools
  const samples = impls.map(() => [] as number[]);
  const perRound = Math.max(1, Math.ceil(trial.minSamples / ROUNDS));
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const [i, { impl, job }] of impls.entries()) {
      samples[i]!.push(...(await sample(impl, job, perRound, trial.maxTime / ROUNDS)));
    }
  }
  const peaks: Array<number | undefined> = [];
  for (const { job } of impls) peaks.push(job.peakBytes ? await job.peakBytes() : undefined);
  const results = impls.map(({ impl }, i) => ({
    impl,
    medianMs: median(samples[i]!) * 1000,
    samples: samples[i]!.length,
    ...(peaks[i] === undefined ? {} : { peakMB: peaks[i] / 2 ** 20 }),
  }));
  process.stdout.write(`${JSON.stringify({ name, results })}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
