/**
 * The popularity baseline: every user gets the same scores, each item's count over the INPUTS of the
 * evaluated split (test: every evaluated user's items[:-1]; valid: items[:-2]). Ranked with the same
 * evaluator and tie rule as any model (ties go to the lower item id), so it is the floor a model must
 * clear. On Amazon Beauty 5-core the test split gives HR@10 ≈ 0.0134, nDCG@10 ≈ 0.0061.
 */
import { describeDataset, type Sequences } from '../data/sequences';
import { evaluationSplit, trainFrequency } from '../data/splits';
import type { EvaluationSplit, SplitName } from '../data/splits';
import { InvalidArgumentError } from '../errors';
import { optionalInteger, optionalSignal, requireObject } from '../validate';
import { DEFAULT_BATCH_SIZE, DEFAULT_COLD_THRESHOLD, evaluateRanking, normalizeKs } from './ranking';
import type { EvaluateRankingOptions, GroupMetrics, MetricTable, RankingRunOptions } from './ranking';

/** Item counts over the split's inputs: int32 [numItems + 1], index 0 = 0. */
export function popularityCounts(split: EvaluationSplit, numItems: number): Int32Array {
  const counts = new Int32Array(numItems + 1);
  for (const item of split.inputItems) counts[item]! += 1;
  counts[0] = 0;
  return counts;
}

/** Options of {@link evaluatePopularity}. */
export interface EvaluatePopularityOptions extends RankingRunOptions {
  /** Default 'test'. */
  split?: SplitName;
}

/** Everything needed to reproduce or compare a figure. */
export interface EvaluationProtocol {
  dataset: { source: string; sha256: string; users: number; items: number; interactions: number };
  split: SplitName;
  target: string;
  input: string;
  ranking: string;
  masking: string;
  truncation: string;
  tieRule: string;
  ks: number[];
  usersAveraged: number;
  usersSkipped: number;
  coldThreshold: number;
  trainFrequency: string;
  model: string;
}

/** The result of an evaluation run. */
export interface EvaluationReport {
  split: SplitName;
  metrics: MetricTable;
  protocol: EvaluationProtocol;
  coldWarm: { threshold: number; cold: GroupMetrics; warm: GroupMetrics };
}

/** The protocol record shared by every model's report. */
export function describeProtocol(sequences: Sequences, split: EvaluationSplit, ks: number[], coldThreshold: number, model: string): EvaluationProtocol {
  const test = split.split === 'test';
  return {
    dataset: describeDataset(sequences),
    split: split.split,
    target: test ? 'items[-1] (leave-one-out)' : 'items[-2] (leave-one-out)',
    input: test ? 'items[:-1]' : 'items[:-2]',
    ranking: `full: all items 1..${sequences.numItems}`,
    masking: 'every item of the whole input except the target itself; padding never ranked',
    truncation: `model input = last ${split.maxHistory} input items; the mask uses the whole input`,
    tieRule: 'equal scores: the lower item id ranks first (never in the target\'s favour)',
    ks,
    usersAveraged: split.users.length,
    usersSkipped: split.skippedUsers,
    coldThreshold,
    trainFrequency: 'count over items[:-2] of every user (users with < 3 items: all their items)',
    model,
  };
}

/** The run settings every model's evaluation takes, validated and defaulted. */
export interface EvaluationRunSettings {
  splitName: SplitName;
  ks: number[];
  coldThreshold: number;
  batchSize: number;
  threads: number;
  /** Spread into evaluateRanking's options: signal and onProgress when given. */
  hooks: Pick<RankingRunOptions, 'signal' | 'onProgress'>;
}

/** Validates the options shared by evaluatePopularity, evaluateSasrec and later models. @throws InvalidArgumentError */
export function readEvaluationOptions(options: EvaluatePopularityOptions): EvaluationRunSettings {
  const o = requireObject(options, 'options');
  const splitName = (o.split ?? 'test') as SplitName;
  if (splitName !== 'test' && splitName !== 'valid') throw new InvalidArgumentError('options.split', '"valid" or "test"', o.split);
  const ks = normalizeKs(o.ks);
  const coldThreshold = optionalInteger(o.coldThreshold, 'options.coldThreshold', DEFAULT_COLD_THRESHOLD, 0);
  const batchSize = optionalInteger(o.batchSize, 'options.batchSize', DEFAULT_BATCH_SIZE, 1, 1 << 20);
  const threads = optionalInteger(o.threads, 'options.threads', 0, 0, 1024);
  const signal = optionalSignal(o.signal, 'options.signal');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new InvalidArgumentError('options.onProgress', 'a function', o.onProgress);
  const hooks: EvaluationRunSettings['hooks'] = {
    ...(signal ? { signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress as RankingRunOptions['onProgress'] } : {}),
  };
  return { splitName, ks, coldThreshold, batchSize, threads, hooks };
}

/**
 * Ranks every user of `split` with `score` under the run settings and assembles the report — the one
 * path every model's evaluation (popularity, SASRec, MME-SID) goes through.
 */
export async function evaluateSplit(
  sequences: Sequences,
  split: EvaluationSplit,
  settings: EvaluationRunSettings,
  score: EvaluateRankingOptions['score'],
  model: string,
): Promise<EvaluationReport> {
  const { splitName, ks, coldThreshold, batchSize, threads, hooks } = settings;
  const summary = await evaluateRanking({
    numItems: sequences.numItems,
    targets: split.targets,
    historyOffsets: split.inputOffsets,
    historyItems: split.inputItems,
    score,
    batchSize,
    ks,
    trainFrequency: trainFrequency(sequences),
    coldThreshold,
    threads,
    ...hooks,
  });
  return { split: splitName, metrics: summary.metrics, protocol: describeProtocol(sequences, split, ks, coldThreshold, model), coldWarm: summary.coldWarm! };
}

/**
 * Evaluates the popularity ranking on one split of `sequences`.
 * @throws InvalidArgumentError on a bad argument; CancelledError when `signal` aborts.
 */
export async function evaluatePopularity(sequences: Sequences, options: EvaluatePopularityOptions = {}): Promise<EvaluationReport> {
  const settings = readEvaluationOptions(options);
  const { splitName, batchSize } = settings;

  const split = evaluationSplit(sequences, splitName);
  const counts = popularityCounts(split, sequences.numItems);
  const stride = sequences.numItems + 1;
  // Every user's row is the same; one batch-sized matrix is filled once and reused.
  const matrix = new Float32Array(Math.min(batchSize, Math.max(1, split.users.length)) * stride);
  for (let r = 0; r < matrix.length / stride; r += 1) {
    for (let i = 0; i < stride; i += 1) matrix[r * stride + i] = counts[i]!;
  }
  return evaluateSplit(sequences, split, settings, (start: number, end: number) => matrix.subarray(0, (end - start) * stride), 'popularity: item counts over the split\'s inputs');
}
