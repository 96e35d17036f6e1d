/**
 * Full-ranking evaluation (the official MME-SID protocol) on the native evaluator of mmesid_core
 * (native/eval/ranking.h): every item 1..numItems is ranked for every user, the user's history (input)
 * items are masked, and HR@K, nDCG@K and MRR@K are averaged over users, overall and split cold/warm by
 * the target's training frequency.
 *
 * Rules, identical in the native evaluator and in the TypeScript reference ({@link rankBatchReference}):
 * - rank = the number of unmasked items that beat the target; item j beats target t when
 *   score[j] > score[t], or score[j] == score[t] and j < t: ties go to the LOWER item id, so a target
 *   tied with lower ids ranks after them — ties never flatter a model;
 * - masked: the user's history items, except the target itself when it also occurs in the history (it
 *   is the item being ranked, so it stays in); item 0 (padding) is never ranked; ±Infinity scores are
 *   ordinary values, NaN is rejected;
 * - HR@K = [rank < K], nDCG@K = [rank < K] / log2(rank + 2), MRR@K = [rank < K] / (rank + 1);
 * - cold: trainFrequency[target] <= coldThreshold (default 5); warm: the rest.
 * Sums are double precision and reduced in user order, so results do not depend on the thread count.
 *
 * Only one batch's score matrix [batch, numItems + 1] is ever needed: {@link evaluateRanking} asks the
 * caller's `score` function for one batch of users at a time.
 */
import { CancelledError, InvalidArgumentError, fromNative } from '../errors';
import { core } from '../native';
import type { NativeEvaluateRankingOptions } from '../../typings/native';
import { isInt32Array, optionalInteger, optionalSignal, requireFloat32Array, requireInteger, requireLength, requireObject } from '../validate';

/** The default cut-offs K. */
export const DEFAULT_KS: readonly number[] = Object.freeze([5, 10, 20]);
/** The default cold threshold: a target seen at most this many times in training is cold. */
export const DEFAULT_COLD_THRESHOLD = 5;
/** The default users per native call in {@link evaluateRanking}. */
export const DEFAULT_BATCH_SIZE = 256;

const MAX_THREADS = 1024;
const METRICS = ['HR', 'nDCG', 'MRR'] as const;

/** One batch of users to rank. */
export interface RankBatchOptions {
  /** float32 [batch, numItems + 1] row-major; column 0 = padding (never ranked). */
  scores: Float32Array;
  /** Number of real items; ids are 1..numItems. */
  numItems: number;
  /** int32 [batch], each user's target item in [1, numItems]. */
  targets: Int32Array;
  /** int32 [batch + 1], CSR row pointers into historyItems (offsets[0] = 0, non-decreasing). */
  historyOffsets: Int32Array;
  /** int32, the users' history items in [0, numItems] (0 = padding, ignored), masked from the ranking. */
  historyItems: Int32Array;
  /** Cut-offs K, integers >= 1. Default [5, 10, 20]. */
  ks?: readonly number[];
  /** int32 [numItems + 1], each item's training frequency; enables the cold/warm split. */
  trainFrequency?: Int32Array;
  /** Cold: trainFrequency[target] <= coldThreshold. Default 5. */
  coldThreshold?: number;
  /** Native threads (0 = all cores). Default 0. */
  threads?: number;
}

/** What one batch produced. */
export interface BatchRanking {
  /** int32 [batch], each target's rank (0 = ranked first). */
  ranks: Int32Array;
  /** float64 [3 × (1 + 3 × ks.length)]: groups all, cold, warm; each [users, HR@k…, nDCG@k…, MRR@k…]. */
  sums: Float64Array;
  /** The cut-offs used. */
  ks: number[];
}

/** A fully-defaulted, validated batch (shared by the native facade and the reference). @internal */
export type NormalizedRankBatch = Omit<NativeEvaluateRankingOptions, 'ranks' | 'sums'>;

/** Metric name → value, e.g. `{ "HR@10": 0.0134, "nDCG@10": 0.0061, … }` (HR, then nDCG, then MRR). */
export type MetricTable = Record<string, number>;

/** Averages of one group of users. */
export interface GroupMetrics {
  users: number;
  metrics: MetricTable;
}

/** The result of an evaluation. */
export interface RankingSummary extends GroupMetrics {
  ks: number[];
  /** Present when a trainFrequency was given. */
  coldWarm?: { threshold: number; cold: GroupMetrics; warm: GroupMetrics };
}

function requireInt32Array(value: unknown, name: string): Int32Array {
  if (!isInt32Array(value)) throw new InvalidArgumentError(name, 'an Int32Array', value);
  return value;
}

/** Validated cut-offs (default [5, 10, 20]). @throws InvalidArgumentError */
export function normalizeKs(value: unknown, name = 'options.ks'): number[] {
  if (value === undefined) return [...DEFAULT_KS];
  if (!Array.isArray(value) || value.length === 0) throw new InvalidArgumentError(name, 'a non-empty array of integers >= 1', value);
  return value.map((k: unknown, i) => requireInteger(k, `${name}[${i}]`, 1, 2 ** 31 - 1));
}

/** Validates and defaults a batch. @throws InvalidArgumentError @internal */
export function normalizeRankBatch(raw: RankBatchOptions): NormalizedRankBatch {
  const o = requireObject(raw, 'options');
  const numItems = requireInteger(o.numItems, 'options.numItems', 1, 2 ** 31 - 2);
  const targets = requireInt32Array(o.targets, 'options.targets');
  const batch = targets.length;
  const scores = requireFloat32Array(o.scores, 'options.scores');
  requireLength(scores, batch * (numItems + 1), 'options.scores', `[batch=${batch}, numItems + 1=${numItems + 1}]`);
  const historyOffsets = requireInt32Array(o.historyOffsets, 'options.historyOffsets');
  requireLength(historyOffsets, batch + 1, 'options.historyOffsets', `[batch + 1=${batch + 1}]`);
  const historyItems = requireInt32Array(o.historyItems, 'options.historyItems');
  const trainFrequency = o.trainFrequency === undefined ? undefined : requireInt32Array(o.trainFrequency, 'options.trainFrequency');
  if (trainFrequency) requireLength(trainFrequency, numItems + 1, 'options.trainFrequency', `[numItems + 1=${numItems + 1}]`);
  return {
    scores,
    batch,
    numItems,
    targets,
    historyOffsets,
    historyItems,
    ...(trainFrequency ? { trainFrequency } : {}),
    coldThreshold: optionalInteger(o.coldThreshold, 'options.coldThreshold', DEFAULT_COLD_THRESHOLD, 0, 2 ** 31 - 1),
    ks: normalizeKs(o.ks),
    threads: optionalInteger(o.threads, 'options.threads', 0, 0, MAX_THREADS),
  };
}

/** Length of {@link BatchRanking.sums} for `numKs` cut-offs. */
export function sumsLength(numKs: number): number {
  return 3 * (1 + 3 * numKs);
}

/**
 * Ranks one batch of users on the native evaluator (off the JS thread).
 * @throws InvalidArgumentError (rejection) on a bad argument, including NaN scores, a target outside
 *   [1, numItems], a history item outside [0, numItems] or bad offsets (those found natively).
 */
export async function rankBatch(options: RankBatchOptions): Promise<BatchRanking> {
  const n = normalizeRankBatch(options);
  const ranks = new Int32Array(n.batch);
  const sums = new Float64Array(sumsLength(n.ks.length));
  const callerStack = new Error().stack;
  try {
    await core().evaluateRanking({ ...n, ranks, sums });
  } catch (error) {
    throw fromNative(error, callerStack);
  }
  return { ranks, sums, ks: n.ks };
}

/** Accumulates batch sums (in the order batches are added) and averages them. */
export class RankingAccumulator {
  readonly ks: number[];
  private readonly totals: Float64Array;

  /** @param ks the cut-offs every added batch was ranked with (default [5, 10, 20]). */
  constructor(
    ks?: readonly number[],
    readonly coldThreshold: number | undefined = undefined,
  ) {
    this.ks = normalizeKs(ks, 'ks');
    this.totals = new Float64Array(sumsLength(this.ks.length));
  }

  /** Adds one batch. @throws InvalidArgumentError when its cut-offs differ. */
  add(batch: BatchRanking): void {
    if (batch.ks.length !== this.ks.length || batch.ks.some((k, i) => k !== this.ks[i])) {
      throw new InvalidArgumentError('batch.ks', `the accumulator's cut-offs [${this.ks.join(', ')}]`, batch.ks, `[${batch.ks.join(', ')}]`);
    }
    for (let i = 0; i < this.totals.length; i += 1) this.totals[i]! += batch.sums[i]!;
  }

  /** Users added so far. */
  get users(): number {
    return this.totals[0]!;
  }

  /** Averages over the users of each group (0 for an empty group). */
  summary(): RankingSummary {
    const stride = 1 + 3 * this.ks.length;
    const group = (g: number): GroupMetrics => {
      const users = this.totals[g * stride]!;
      const metrics: MetricTable = {};
      METRICS.forEach((name, m) => {
        this.ks.forEach((k, i) => {
          metrics[`${name}@${k}`] = users > 0 ? this.totals[g * stride + 1 + m * this.ks.length + i]! / users : 0;
        });
      });
      return { users, metrics };
    };
    const all = group(0);
    const summary: RankingSummary = { ...all, ks: [...this.ks] };
    if (this.coldThreshold !== undefined) summary.coldWarm = { threshold: this.coldThreshold, cold: group(1), warm: group(2) };
    return summary;
  }
}

/** Options of {@link evaluateRanking}: every user to evaluate, scored batch by batch by the caller. */
/** How a whole evaluation runs: batching, cut-offs, cold/warm threshold, threads, cancellation, progress. */
export interface RankingRunOptions {
  /** Users per native call. Default 256. */
  batchSize?: number;
  /** Cut-offs K. Default [5, 10, 20]. */
  ks?: readonly number[];
  /** Cold: training frequency of the target <= coldThreshold. Default 5. */
  coldThreshold?: number;
  threads?: number;
  /** Checked between batches; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
  /** Called after each batch with (users done, users total). */
  onProgress?: (done: number, total: number) => void;
}

export interface EvaluateRankingOptions extends RankingRunOptions {
  numItems: number;
  /** int32 [users], every user's target. */
  targets: Int32Array;
  /** int32 [users + 1], CSR row pointers of the masked histories. */
  historyOffsets: Int32Array;
  /** int32, the masked history items. */
  historyItems: Int32Array;
  /**
   * Scores users [start, end): returns float32 [end − start, numItems + 1] (column 0 = padding). The
   * buffer may be reused by the next call: it is not kept.
   */
  score: (start: number, end: number) => Float32Array | Promise<Float32Array>;
  trainFrequency?: Int32Array;
}

/**
 * Evaluates every user, one batch at a time: only one [batchSize, numItems + 1] score matrix is alive.
 * @throws InvalidArgumentError on a bad argument; CancelledError when `signal` aborts.
 */
export async function evaluateRanking(options: EvaluateRankingOptions): Promise<RankingSummary> {
  const o = requireObject(options, 'options');
  const numItems = requireInteger(o.numItems, 'options.numItems', 1, 2 ** 31 - 2);
  const targets = requireInt32Array(o.targets, 'options.targets');
  const users = targets.length;
  const historyOffsets = requireInt32Array(o.historyOffsets, 'options.historyOffsets');
  requireLength(historyOffsets, users + 1, 'options.historyOffsets', `[users + 1=${users + 1}]`);
  const historyItems = requireInt32Array(o.historyItems, 'options.historyItems');
  if (typeof o.score !== 'function') throw new InvalidArgumentError('options.score', 'a function', o.score);
  const batchSize = optionalInteger(o.batchSize, 'options.batchSize', DEFAULT_BATCH_SIZE, 1, 1 << 20);
  const ks = normalizeKs(o.ks);
  const trainFrequency = o.trainFrequency === undefined ? undefined : requireInt32Array(o.trainFrequency, 'options.trainFrequency');
  const coldThreshold = optionalInteger(o.coldThreshold, 'options.coldThreshold', DEFAULT_COLD_THRESHOLD, 0, 2 ** 31 - 1);
  const threads = optionalInteger(o.threads, 'options.threads', 0, 0, MAX_THREADS);
  const signal = optionalSignal(o.signal, 'options.signal');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
    throw new InvalidArgumentError('options.onProgress', 'a function', o.onProgress);
  }
  const onProgress = o.onProgress as EvaluateRankingOptions['onProgress'];
  const score = o.score as EvaluateRankingOptions['score'];

  const accumulator = new RankingAccumulator(ks, trainFrequency ? coldThreshold : undefined);
  for (let start = 0; start < users; start += batchSize) {
    if (signal?.aborted) throw new CancelledError('evaluateRanking was cancelled');
    const end = Math.min(users, start + batchSize);
    const base = historyOffsets[start]!;
    const offsets = historyOffsets.slice(start, end + 1);
    for (let i = 0; i < offsets.length; i += 1) offsets[i]! -= base;
    const scores = await score(start, end);
    const result = await rankBatch({
      scores,
      numItems,
      targets: targets.subarray(start, end),
      historyOffsets: offsets,
      historyItems: historyItems.subarray(base, historyOffsets[end]),
      ks,
      ...(trainFrequency ? { trainFrequency } : {}),
      coldThreshold,
      threads,
    });
    accumulator.add(result);
    onProgress?.(end, users);
  }
  return accumulator.summary();
}
