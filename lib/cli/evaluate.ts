/**
 * `mmesid evaluate` and `mmesid data stats`: the data stage and the evaluation harness on the command
 * line. Results go to stdout (exactly one JSON document with --json); the progress bar goes to stderr.
 */
import { Presets, SingleBar } from 'cli-progress';

import { loadSequences, sequenceStats } from '../data/sequences';
import type { SequenceStats } from '../data/sequences';
import type { SplitName } from '../data/splits';
import { InvalidArgumentError } from '../errors';
import { evaluatePopularity } from '../evaluate/popularity';
import type { EvaluationReport } from '../evaluate/popularity';
import { evaluateSasrec, type EvaluateSasrecOptions } from '../evaluate/sasrec';
import { SasrecModel } from '../sasrec';

/** The model kinds `mmesid evaluate` knows: `popularity`, or `sasrec:DIR` (a trainSasrec output folder). */
export const EVALUATE_MODELS = ['popularity', 'sasrec:DIR'] as const;

/** A parsed `--model` value. */
export type EvaluateModel = { kind: 'popularity' } | { kind: 'sasrec'; dir: string };

/** Parses `--model`. @throws InvalidArgumentError naming the option */
export function parseEvaluateModel(value: string): EvaluateModel {
  if (value === 'popularity') return { kind: 'popularity' };
  if (typeof value === 'string' && value.startsWith('sasrec:') && value.length > 'sasrec:'.length) return { kind: 'sasrec', dir: value.slice('sasrec:'.length) };
  throw new InvalidArgumentError('--model', `one of ${EVALUATE_MODELS.join(', ')}`, value);
}

export interface EvaluateCommandOptions {
  sequences: string;
  /** A parsed model, or the `--model` text (`popularity`, `sasrec:DIR`). */
  model: EvaluateModel | string;
  split: SplitName;
  ks?: number[];
  coldThreshold?: number;
  batchSize?: number;
  progress: boolean;
  signal?: AbortSignal;
}

/** Runs one evaluation. @throws DataFormatError, InvalidArgumentError, CancelledError */
export async function runEvaluate(o: EvaluateCommandOptions): Promise<EvaluationReport> {
  const model = typeof o.model === 'string' ? parseEvaluateModel(o.model) : o.model;
  // Load the model before the data so a bad model path fails fast.
  const sasrec = model.kind === 'sasrec' ? await SasrecModel.load(model.dir) : undefined;
  const sequences = await loadSequences(o.sequences, o.signal ? { signal: o.signal } : {});
  const bar = o.progress
    ? new SingleBar({ format: `evaluate ${o.split} [{bar}] {percentage}% | {value}/{total} users | eta {eta}s`, stream: process.stderr }, Presets.shades_classic)
    : undefined;
  let started = false;
  try {
    const run: EvaluateSasrecOptions = {
      split: o.split,
      ...(o.ks ? { ks: o.ks } : {}),
      ...(o.coldThreshold !== undefined ? { coldThreshold: o.coldThreshold } : {}),
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (done: number, total: number) => {
        if (!started) {
          bar?.start(total, 0);
          started = true;
        }
        bar?.update(done);
      },
    };
    return sasrec ? await evaluateSasrec(sequences, sasrec, run) : await evaluatePopularity(sequences, run);
  } finally {
    if (started) bar?.stop();
  }
}

/** A human-readable rendering of an evaluation report. */
export function formatReport(report: EvaluationReport): string {
  const ks = report.protocol.ks;
  const row = (name: string, metrics: Record<string, number>) =>
    `  ${name.padEnd(12)} ${['HR', 'nDCG', 'MRR'].map((m) => ks.map((k) => `${m}@${k} ${metrics[`${m}@${k}`]!.toFixed(4)}`).join('  ')).join('  ')}`;
  const { cold, warm, threshold } = report.coldWarm;
  return [
    `${report.protocol.model} on ${report.protocol.dataset.source} (sha256 ${report.protocol.dataset.sha256.slice(0, 12)}…), split ${report.split}: ${report.protocol.usersAveraged.toLocaleString('en-US')} users`,
    row('all', report.metrics),
    row(`cold(${cold.users})`, cold.metrics),
    row(`warm(${warm.users})`, warm.metrics),
    `  cold: training frequency <= ${threshold}; ties: ${report.protocol.tieRule}; masking: ${report.protocol.masking}`,
  ].join('\n');
}

/** `mmesid data stats FILE`. @throws DataFormatError */
export async function runDataStats(file: string): Promise<SequenceStats> {
  return sequenceStats(await loadSequences(file));
}
