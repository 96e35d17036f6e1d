/**
 * Leave-one-out splits exactly as in the official MME-SID code. For a user with items i₁ … iₙ (n >= 3):
 * - training: items[:-2] = i₁ … iₙ₋₂; every prefix of it predicts its next item — sample
 *   (history = train[max(0, j − maxHistory) : j], target = train[j]) for j = 1 … n − 3 — keeping only
 *   the last `maxTargetsPerUser` (default 50) targets of each user;
 * - validation: input items[:-2] → target iₙ₋₁;
 * - test: input items[:-1] → target iₙ.
 * Users with fewer than 3 items (never the case in Amazon Beauty 5-core, where every user has >= 5) are
 * not evaluated (skipped for validation and test, counted in `skippedUsers`); their whole sequence is
 * training data (its prefixes are training samples, its items count towards the training frequency).
 *
 * Evaluation inputs are kept whole: the whole input is what the evaluator masks (every item the user
 * interacted with before the target). What a model reads is the last `maxHistory` (default 50) items of
 * it ({@link modelHistory}); the truncation never changes the mask.
 *
 * Training frequency of item i: the number of occurrences of i over the training split's items, i.e.
 * items[:-2] of every evaluated user plus every item of users with fewer than 3 items (repeats count).
 */
import { InvalidArgumentError } from '../errors';
import { optionalInteger, requireObject } from '../validate';
import type { Sequences } from './sequences';

/** The default number of history items a model reads. */
export const DEFAULT_MAX_HISTORY = 50;
/** The default number of training targets kept per user (the last ones). */
export const DEFAULT_MAX_TARGETS_PER_USER = 50;
/** Users need this many items to get a validation and a test target. */
export const MIN_EVALUATED_LENGTH = 3;

/** Options of the split functions. */
export interface SplitOptions {
  /** History items a model reads (the last ones). Default 50. */
  maxHistory?: number;
  /** Training targets kept per user (the last ones). Default 50. */
  maxTargetsPerUser?: number;
}

/** Which evaluation split. */
export type SplitName = 'valid' | 'test';

/** The training samples, one per (user, target position); histories are views into the sequences. */
export interface TrainingSamples {
  /** int32 [count], the user (row index into the sequences) of each sample. */
  users: Int32Array;
  /** int32 [count], the target's position in the user's item list (its history ends just before). */
  positions: Int32Array;
  /** int32 [count], the target item. */
  targets: Int32Array;
  count: number;
  maxHistory: number;
  maxTargetsPerUser: number;
}

/** One evaluation split: one target per evaluated user and its whole input, CSR. */
export interface EvaluationSplit {
  split: SplitName;
  /** int32 [users], row indices (into the sequences) of the evaluated users. */
  users: Int32Array;
  /** int32 [users], each user's target. */
  targets: Int32Array;
  /** int32 [users + 1], CSR row pointers of the inputs. */
  inputOffsets: Int32Array;
  /** int32, every user's whole input (items[:-2] for valid, items[:-1] for test), chronological. */
  inputItems: Int32Array;
  /** Users with fewer than 3 items, not evaluated. */
  skippedUsers: number;
  maxHistory: number;
}

interface Resolved {
  maxHistory: number;
  maxTargetsPerUser: number;
}

function resolve(options: SplitOptions | undefined): Resolved {
  const o = options === undefined ? {} : requireObject(options, 'options');
  return {
    maxHistory: optionalInteger(o.maxHistory, 'options.maxHistory', DEFAULT_MAX_HISTORY, 1),
    maxTargetsPerUser: optionalInteger(o.maxTargetsPerUser, 'options.maxTargetsPerUser', DEFAULT_MAX_TARGETS_PER_USER, 1),
  };
}

/** Length of user u's training part: n − 2, or n when the user has fewer than 3 items. */
function trainLength(sequences: Sequences, user: number): number {
  const n = sequences.offsets[user + 1]! - sequences.offsets[user]!;
  return n >= MIN_EVALUATED_LENGTH ? n - 2 : n;
}

/** Every training sample (see the module comment). @throws InvalidArgumentError */
export function trainingSamples(sequences: Sequences, options?: SplitOptions): TrainingSamples {
  const { maxHistory, maxTargetsPerUser } = resolve(options);
  let count = 0;
  for (let u = 0; u < sequences.numUsers; u += 1) count += Math.min(maxTargetsPerUser, Math.max(0, trainLength(sequences, u) - 1));
  const users = new Int32Array(count);
  const positions = new Int32Array(count);
  const targets = new Int32Array(count);
  let s = 0;
  for (let u = 0; u < sequences.numUsers; u += 1) {
    const m = trainLength(sequences, u);
    const base = sequences.offsets[u]!;
    for (let j = Math.max(1, m - maxTargetsPerUser); j < m; j += 1) {
      users[s] = u;
      positions[s] = j;
      targets[s] = sequences.items[base + j]!;
      s += 1;
    }
  }
  return { users, positions, targets, count, maxHistory, maxTargetsPerUser };
}

/** Sample i's history, the last `maxHistory` items before its target (a view). */
export function trainingHistory(sequences: Sequences, samples: TrainingSamples, i: number): Int32Array {
  if (!Number.isSafeInteger(i) || i < 0 || i >= samples.count) throw new InvalidArgumentError('i', `a sample index in [0, ${samples.count})`, i);
  const base = sequences.offsets[samples.users[i]!]!;
  const end = base + samples.positions[i]!;
  return sequences.items.subarray(Math.max(base, end - samples.maxHistory), end);
}

/** The validation or test split (see the module comment). @throws InvalidArgumentError */
export function evaluationSplit(sequences: Sequences, split: SplitName, options?: SplitOptions): EvaluationSplit {
  if (split !== 'valid' && split !== 'test') throw new InvalidArgumentError('split', '"valid" or "test"', split);
  const { maxHistory } = resolve(options);
  const drop = split === 'test' ? 1 : 2;
  let users = 0;
  let inputs = 0;
  for (let u = 0; u < sequences.numUsers; u += 1) {
    const n = sequences.offsets[u + 1]! - sequences.offsets[u]!;
    if (n < MIN_EVALUATED_LENGTH) continue;
    users += 1;
    inputs += n - drop;
  }
  const out: EvaluationSplit = {
    split,
    users: new Int32Array(users),
    targets: new Int32Array(users),
    inputOffsets: new Int32Array(users + 1),
    inputItems: new Int32Array(inputs),
    skippedUsers: sequences.numUsers - users,
    maxHistory,
  };
  let e = 0;
  for (let u = 0; u < sequences.numUsers; u += 1) {
    const start = sequences.offsets[u]!;
    const n = sequences.offsets[u + 1]! - start;
    if (n < MIN_EVALUATED_LENGTH) continue;
    const inputEnd = start + n - drop;
    out.users[e] = u;
    out.targets[e] = sequences.items[inputEnd]!;
    out.inputItems.set(sequences.items.subarray(start, inputEnd), out.inputOffsets[e]);
    out.inputOffsets[e + 1] = out.inputOffsets[e]! + n - drop;
    e += 1;
  }
  return out;
}

/** Evaluated user e's whole input (a view): what the evaluator masks. */
export function evaluationInput(split: EvaluationSplit, e: number): Int32Array {
  return split.inputItems.subarray(split.inputOffsets[e], split.inputOffsets[e + 1]);
}

/** Evaluated user e's model input: the last `maxHistory` items of its input (a view). */
export function modelHistory(split: EvaluationSplit, e: number): Int32Array {
  const end = split.inputOffsets[e + 1]!;
  return split.inputItems.subarray(Math.max(split.inputOffsets[e]!, end - split.maxHistory), end);
}

/**
 * Each item's training frequency: its count over the training split's items (items[:-2] of every user
 * with >= 3 items, every item of the others). int32 [numItems + 1]; index 0 (padding) is always 0.
 */
export function trainFrequency(sequences: Sequences): Int32Array {
  const counts = new Int32Array(sequences.numItems + 1);
  for (let u = 0; u < sequences.numUsers; u += 1) {
    const start = sequences.offsets[u]!;
    const end = start + trainLength(sequences, u);
    for (let p = start; p < end; p += 1) counts[sequences.items[p]!]! += 1;
  }
  counts[0] = 0;
  return counts;
}
