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

/** The models `mmesid evaluate` knows. */
export const EVALUATE_MODELS = ['popularity'] as const;
export type EvaluateModel = (typeof EVALUATE_MODELS)[number];

export interface EvaluateCommandOptions {
  sequences: string;
  model: EvaluateModel;
  split: SplitName;
  ks?: number[];
  coldThreshold?: number;
  batchSize?: number;
  progress: boolean;
  signal?: AbortSignal;
}

/** Runs one evaluation. @throws DataFormatError, InvalidArgumentError, CancelledError */
export async function runEvaluate(o: EvaluateCommandOptions): Promise<EvaluationReport> {
  if (!(EVALUATE_MODELS as readonly string[]).includes(o.model)) {
    throw new InvalidArgumentError('--model', `one of ${EVALUATE_MODELS.join(', ')}`, o.model);
  }
  const sequences = await loadSequences(o.sequences, o.signal ? { signal: o.signal } : {});
  const bar = o.progress
    ? new SingleBar({ format: `evaluate ${o.split} [{bar}] {percentage}% | {value}/{total} users | eta {eta}s`, stream: process.stderr }, Presets.shades_classic)
    : undefined;
  let started = false;
  try {
    return await evaluatePopularity(sequences, {
      split: o.split,
      ...(o.ks ? { ks: o.ks } : {}),
      ...(o.coldThreshold !== undefined ? { coldThreshold: o.coldThreshold } : {}),
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (done, total) => {
        if (!started) {
          bar?.start(total, 0);
          started = true;
        }
        bar?.update(done);
      },
    });
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
