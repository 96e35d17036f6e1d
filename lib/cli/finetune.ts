/**
 * The MME-SID commands:
 *
 *   mmesid finetune --config F [--resume] [--json]
 *       builds the model of the config (LLM + LoRA + head), fine-tunes it with a progress bar (loss, lr,
 *       samples/s, ETA), validates every train.validateEvery steps, checkpoints (DIR/checkpoint.pt), and
 *       writes the run directory: adapter/ (PEFT), head.safetensors, run.json.
 *   mmesid evaluate --run DIR [--split test|valid] [--json]     (lib/cli/main.ts)
 *       the data stage's report plus diagnostics: collapse spectra (DIR/eval/spectrum.csv + .svg), the
 *       fusion's term usage (mean weight and argmax share per term) and, for mme-sid / mme-random, Kendall τ
 *       of the fine-tuned collaborative code embeddings.
 *   mmesid recommend --run DIR --history "1 2 3" [-k 10] [--keep-history] [--json]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Presets, SingleBar } from 'cli-progress';
import { Command } from 'commander';

import { writeFileAtomic } from '../data/atomicFile';
import type { EvaluationReport } from '../evaluate/popularity';
import type { TrainStep } from '../llm/train';
import { readFinetuneConfig } from '../mmesid/config';
import { collabCodeTau, collapseSpectrum, evaluateRun, fusionSummary, spectraCsv, spectraSvg } from '../mmesid/evaluate';
import { Recommender } from '../mmesid/recommender';
import { MmesidRun, type RunManifest } from '../mmesid/run';
import { positiveInt, withInterrupt } from './args';

/** What `mmesid finetune` reports. */
export interface FinetuneReport {
  run: string;
  variant: string;
  steps: number;
  resumedFrom: number;
  samples: number;
  seconds: number;
  firstLoss: number;
  lastLoss: number;
  validation: NonNullable<RunManifest['training']>['validation'];
  test: EvaluationReport['metrics'];
}

/** Fine-tunes the config's model, writes the run directory, evaluates on the test split. */
export async function runFinetune(configFile: string, o: { resume: boolean; progress: boolean; signal?: AbortSignal }): Promise<FinetuneReport> {
  const config = readFinetuneConfig(configFile);
  const run = await MmesidRun.create(config);
  const bar = o.progress
    ? new SingleBar({ format: `finetune ${config.variant} [{bar}] {value}/{total} steps | loss {loss} | lr {lr} | {rate} samples/s | eta {eta_formatted}`, stream: process.stderr, hideCursor: true }, Presets.shades_classic)
    : undefined;
  let barStarted = false;
  try {
    const perStep = config.train.microBatch * config.train.accumulationSteps;
    const training = await run.train({
      resume: o.resume,
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (s: TrainStep) => {
        if (!bar) return;
        if (!barStarted) {
          bar.start(s.totalSteps, s.step - 1, { loss: '-', lr: '-', rate: '-' });
          barStarted = true;
        }
        bar.update(s.step, { loss: s.loss.toFixed(4), lr: s.lr.toExponential(2), rate: (perStep / s.seconds).toFixed(1) });
      },
      validate: async (r, step) => {
        const report = await evaluateRun(r, { split: 'valid', ks: [10], maxUsers: config.train.validateUsers, seed: config.train.seed });
        const point = { step, users: report.protocol.usersAveraged, hr10: report.metrics['HR@10']!, ndcg10: report.metrics['nDCG@10']! };
        if (bar) bar.stop();
        barStarted = false;
        if (o.progress) process.stderr.write(`validation at step ${step}: HR@10 ${point.hr10.toFixed(4)}, nDCG@10 ${point.ndcg10.toFixed(4)} (${point.users} users)\n`);
        return point;
      },
    });
    if (barStarted) bar?.stop();
    await run.save(training);
    const test = await evaluateRun(run, { split: 'test' });
    return {
      run: run.dir,
      variant: config.variant,
      steps: training.steps,
      resumedFrom: training.resumedFrom,
      samples: training.samples,
      seconds: training.seconds,
      firstLoss: training.losses[0] ?? Number.NaN,
      lastLoss: training.losses[training.losses.length - 1] ?? Number.NaN,
      validation: training.validation,
      test: test.metrics,
    };
  } finally {
    if (barStarted) bar?.stop();
    await run.dispose();
  }
}

/** `mmesid evaluate --run DIR`: the report plus the diagnostics, written to DIR/eval/. */
export async function runEvaluateRun(dir: string, o: { split: 'test' | 'valid'; ks: number[]; coldThreshold: number; batchSize: number; signal?: AbortSignal }): Promise<EvaluationReport & { diagnostics: Record<string, unknown> }> {
  const run = await MmesidRun.load(dir);
  try {
    const report = await evaluateRun(run, { split: o.split, ks: o.ks, coldThreshold: o.coldThreshold, batchSize: o.batchSize, ...(o.signal ? { signal: o.signal } : {}) });
    const n = run.manifest.numItems + 1, h = run.manifest.hidden;
    const spectra = {
      'item input embeddings': collapseSpectrum(await run.tensor('itemInputs'), n, h),
      'target-item table': collapseSpectrum(await run.tensor('targetItems'), n, h),
    };
    const out = path.join(dir, 'eval');
    fs.mkdirSync(out, { recursive: true });
    await writeFileAtomic(path.join(out, 'spectrum.csv'), [Buffer.from(spectraCsv(spectra))]);
    await writeFileAtomic(path.join(out, 'spectrum.svg'), [Buffer.from(spectraSvg(spectra, `embedding-collapse spectrum: ${run.config.variant} (${path.basename(dir)})`))]);
    const diagnostics: Record<string, unknown> = {
      spectrumCsv: path.join(out, 'spectrum.csv'),
      spectrumSvg: path.join(out, 'spectrum.svg'),
      spectrumTail: Object.fromEntries(Object.entries(spectra).map(([k, v]) => [k, v[v.length - 1]])),
    };
    const fusion = await fusionSummary(run);
    if (fusion) diagnostics.fusion = fusion;
    if ((run.config.variant === 'mme-sid' || run.config.variant === 'mme-random') && run.config.modalities.includes('collab')) {
      diagnostics.collabCodeKendallTau = await collabCodeTau(run);
    }
    return { ...report, diagnostics };
  } finally {
    await run.dispose();
  }
}

/** Adds `finetune` and `recommend` to `program`. */
export function registerFinetuneCommands(program: Command): void {
  program
    .command('finetune')
    .description('fine-tune MME-SID (LLM + LoRA + the multimodal/semantic-ID head) from a JSON config; writes a run directory')
    .requiredOption('--config <file>', 'the fine-tuning config (JSON; see lib/mmesid/config.ts)')
    .option('--resume', 'continue from the run directory\'s checkpoint.pt')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: { config: string; resume?: boolean; json?: boolean }) => {
      await withInterrupt(async (signal) => {
        const report = await runFinetune(opts.config, { resume: opts.resume === true, progress: process.stderr.isTTY || !opts.json, signal });
        if (opts.json) {
          console.log(JSON.stringify(report));
        } else {
          const m = report.test;
          console.log(`run: ${report.run}\n${report.steps} steps (${report.samples} samples), loss ${report.firstLoss.toFixed(4)} → ${report.lastLoss.toFixed(4)}, ${report.seconds.toFixed(1)} s`);
          console.log(`test: ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`);
        }
      });
    });
  program
    .command('recommend')
    .description('top-k items for a history with a fine-tuned MME-SID run')
    .requiredOption('--run <dir>', 'a run directory written by `mmesid finetune`')
    .requiredOption('--history <ids>', 'the history, item ids separated by spaces or commas, oldest first')
    .option('-k, --k <k>', 'how many items', positiveInt, 10)
    .option('--keep-history', 'allow items of the history in the result')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: { run: string; history: string; k: number; keepHistory?: boolean; json?: boolean }) => {
      const history = opts.history.split(/[\s,]+/).filter(Boolean).map(Number);
      const rec = await Recommender.load(opts.run);
      try {
        const [top] = await rec.recommend([history], { k: opts.k, excludeHistory: opts.keepHistory !== true });
        if (opts.json) console.log(JSON.stringify({ history, items: Array.from(top!.items), scores: Array.from(top!.scores) }));
        else top!.items.forEach((item, i) => console.log(`${i + 1}\t${item}\t${top!.scores[i]!.toFixed(4)}`));
      } finally {
        await rec.dispose();
      }
    });
}
