/**
 * `npm run bench`: runs every trial of bench/trials.ts in a fresh process and prints one table with the
 * median time, GFLOP/s, % of the SGEMM peak measured in this same run, and the ratio of each baseline's
 * time to ours (> 1 means we are faster). Writes the table as JSON to bench/results/latest.json.
 *
 * Options: `--filter <substring>` runs matching trials only (the SGEMM peak trial always runs);
 *          `--quick` the short summary;
 *          `--summary` prints the compact table only.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Command } from 'commander';

import { trials } from './trials';
import { buildInfo } from '../lib/info';

interface Row {
  trial: string;
  impl: string;
  medianMs: number;
  gflops: number;
  peakPercent: number;
  itemsPerSecond?: number;
  baselineOverOurs?: number;
  peakMB?: number;
}

const program = new Command()
  .option('--filter <text>', 'only trials whose name contains this text')
  .option('--summary', 'compact output')
  .option('--quick', 'the short summary: one trial per kernel at the smaller shapes')
  .parse(process.argv);
const options = program.opts<{ filter?: string; summary?: boolean; quick?: boolean }>();

function runTrial(name: string): { name: string; results: Array<{ impl: string; medianMs: number; samples: number; peakMB?: number }> } {
  const child = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'trial.ts'), name], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (child.status !== 0) throw new Error(`trial "${name}" failed (exit ${child.status})`);
  const line = child.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ReturnType<typeof runTrial>;
}

function main(): void {
  const info = buildInfo();
  const selected = trials.filter(
    (t, i) => i === 0 || ((!options.filter || t.name.includes(options.filter)) && (!options.quick || t.quick === true)),
  );
  const rows: Row[] = [];
  let peak = NaN;
  for (const trial of selected) {
    process.stderr.write(`bench: ${trial.name} ...\n`);
    const { results } = runTrial(trial.name);
    const ours = results[0]!;
    for (const r of results) {
      const gflops = trial.flop / (r.medianMs / 1000) / 1e9;
      if (trial.kernel === 'sgemm') peak = gflops;
      rows.push({
        trial: trial.name,
        impl: r.impl,
        medianMs: r.medianMs,
        gflops,
        peakPercent: (100 * gflops) / peak,
        ...(trial.items ? { itemsPerSecond: trial.items / (r.medianMs / 1000) } : {}),
        ...(r !== ours ? { baselineOverOurs: r.medianMs / ours.medianMs } : {}),
        ...(r.peakMB === undefined ? {} : { peakMB: r.peakMB }),
      });
    }
  }
  const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} × ${os.availableParallelism()} threads, ${info.core.blas}, libtorch ${info.torch?.torchVersion ?? 'absent'}`;
  console.log(`\nmmesid kernel benchmarks — ${machine}; SGEMM peak measured in this run: ${fmt(peak)} GFLOP/s\n`);
  console.log('| trial | implementation | median ms | GFLOP/s | % SGEMM peak | items/s | baseline time ÷ ours | peak tensor MB |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.trial} | ${r.impl} | ${fmt(r.medianMs, 2)} | ${fmt(r.gflops)} | ${fmt(r.peakPercent)} | ${r.itemsPerSecond ? Math.round(r.itemsPerSecond).toLocaleString('en-US') : ''} | ${r.baselineOverOurs ? `${fmt(r.baselineOverOurs, 2)}×` : ''} | ${r.peakMB === undefined ? '' : fmt(r.peakMB)} |`,
    );
  }
  const out = path.join(__dirname, 'results');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, 'latest.json');
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ date: new Date().toISOString(), machine, peakGflops: peak, rows }, null, 2));
  fs.renameSync(tmp, file);
  if (!options.summary) console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
}

main();
