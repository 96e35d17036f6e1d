/**
 * The collaborative encoder stage: SASRec (Kang & McAuley 2018) trained in libtorch on the leave-one-out
 * split of the official MME-SID code (native/torch/train/sasrec_trainer.h has the exact recipe).
 *
 * Training runs on a native thread of its own (never on the JS thread, never on the libuv pool); every
 * step and epoch is reported through `onProgress`. After each epoch the model is evaluated on the
 * validation split by the native full-ranking evaluator (history masked, ties to the lower item id); the
 * weights with the best validation nDCG@10 are kept and training stops after `patience` epochs without
 * improvement. The best weights are then evaluated on the test split.
 *
 * Outputs (written only when training succeeded, each atomically: temp file in `outDir` + rename):
 * - `item_emb.npy` — float32 [numItems + 1, dim], row 0 = the padding item (all zeros);
 * - `model.safetensors` — every weight of the best epoch (F32, names as in the native model), with the
 *   architecture and the dataset's fingerprint in `__metadata__`; {@link SasrecModel.load} reads it back
 *   (`mmesid evaluate --model sasrec:DIR`);
 * - `metrics.json` — per-epoch training loss, validation metrics and wall times, the best epoch, the test
 *   metrics of the best weights, the configuration and the dataset's fingerprint.
 *
 * Checkpoints: with `checkpoint` set, the whole training state (weights, best weights, Adam moments,
 * early-stopping state, epoch history and both random generators) is written after every epoch as a
 * torch pickle (loadable by Python's `torch.load`), atomically; `resume: true` continues from it when the
 * file exists, exactly as the uninterrupted run would have gone on (bit-identical with `threads: 1`).
 * The checkpoint must come from a run with the same data size, model, loss, lr, batch size and seed.
 *
 * Reproducibility: one training per process at a time (libtorch's default generator is process-wide);
 * with `threads: 1` the same seed gives the same loss curve and the same `item_emb.npy` bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CancelledError, DataFormatError, InvalidArgumentError, fromNative } from './errors';
import { runNativeTraining } from './nativeTraining';
import { torch } from './native';
import { writeJsonAtomic } from './data/atomicFile';
import { loadTensors, saveNpy, saveTensors } from './data/embeddings';
import { describeDataset, type Sequences } from './data/sequences';
import type { MetricTable } from './evaluate/ranking';
import { isInt32Array, optionalBoolean, optionalInteger, optionalSignal, requireObject } from './validate';
import type { NativeSasrecMetrics, NativeSasrecProgress, NativeSasrecResult, NativeSasrecScorer, NativeSasrecTrainOptions } from '../typings/native';

/** Training objectives: `bce` (original: one sampled negative per position) or `ce` (full softmax per position). */
export type SasrecLoss = 'bce' | 'ce';
export const SASREC_LOSSES: readonly SasrecLoss[] = Object.freeze(['bce', 'ce'] as const);

/** Defaults: the SASRec / MME-SID settings for Amazon Beauty. */
export const SASREC_DEFAULTS = Object.freeze({
  dim: 64,
  blocks: 2,
  heads: 1,
  maxLen: 50,
  dropout: 0.2,
  loss: 'bce',
  lr: 1e-3,
  batchSize: 128,
  epochs: 200,
  patience: 10,
  seed: 42,
  threads: 0,
});

/** One epoch's record (in the progress events and in metrics.json). */
export interface SasrecEpochReport {
  epoch: number;
  /** Mean training loss. */
  loss: number;
  /** Wall seconds of the training steps and of the validation. */
  seconds: number;
  evalSeconds: number;
  /** Best validation nDCG@10 so far. */
  improved: boolean;
  valid: { users: number; metrics: MetricTable };
}

/** Progress: one event per training step and one per epoch (after its validation). */
export type SasrecProgress =
  | ({ kind: 'epoch' } & SasrecEpochReport)
  | { kind: 'step'; epoch: number; step: number; steps: number; loss: number; samplesPerSecond: number };

/** Options of {@link trainSasrec}. Every field but `sequences` and `outDir` has a default ({@link SASREC_DEFAULTS}). */
/** SASRec's hyperparameters and run settings (shared by the API and the CLI). */
export interface SasrecSettings {
  /** Hidden size d (divisible by heads). Default 64. */
  dim?: number;
  /** Transformer blocks. Default 2. */
  blocks?: number;
  /** Attention heads. Default 1. */
  heads?: number;
  /** Positions read (the last maxLen items). Default 50. */
  maxLen?: number;
  /** Dropout rate in [0, 1). Default 0.2. */
  dropout?: number;
  /** Default 'bce'. */
  loss?: SasrecLoss;
  /** Adam learning rate. Default 1e-3. */
  lr?: number;
  /** Users per step. Default 128. */
  batchSize?: number;
  /** Maximum epochs. Default 200. */
  epochs?: number;
  /** Early stopping: epochs without a better validation nDCG@10. Default 10. */
  patience?: number;
  /** Integer in [0, 2^53). Default 42. */
  seed?: number;
  /** libtorch threads of the training thread; 0 = all cores. Default 0. */
  threads?: number;
  /** Checkpoint file (its folder must exist), rewritten atomically after every epoch. Default: none. */
  checkpoint?: string;
  /** Continue from `checkpoint` when that file exists. Default false. */
  resume?: boolean;
}

export interface TrainSasrecOptions extends SasrecSettings {
  /** The interactions (e.g. from loadSequences or generateSynthetic). */
  sequences: Sequences;
  /** Folder for item_emb.npy and metrics.json (created when missing, only once training succeeded). */
  outDir: string;
  /** Aborting rejects the promise with CancelledError; nothing is written (but the checkpoint). */
  signal?: AbortSignal;
  /** Called on the JS thread for every step and epoch. A throw cancels the training and rejects with it. */
  onProgress?: (event: SasrecProgress) => void;
}

/** What {@link trainSasrec} resolves to (also the content of metrics.json, less `outDir`). */
export interface SasrecTrainReport {
  format: 'mmesid.sasrec.metrics';
  version: 1;
  outDir: string;
  itemEmbeddings: { file: string; rows: number; dim: number; dtype: 'float32'; paddingRow: 0 };
  /** The best epoch's weights, read back by {@link SasrecModel.load}. */
  model: { file: string; format: typeof SASREC_MODEL_FORMAT };
  dataset: { source: string; sha256: string; users: number; items: number; interactions: number };
  config: Required<Omit<TrainSasrecOptions, 'sequences' | 'outDir' | 'signal' | 'onProgress' | 'checkpoint' | 'resume'>>;
  trainingRows: number;
  /** The checkpoint's epoch when the run resumed from one, else 0. */
  resumedFromEpoch: number;
  epochs: SasrecEpochReport[];
  bestEpoch: number;
  stoppedEarly: boolean;
  /** Test metrics of the best epoch's weights. */
  test: { users: number; metrics: MetricTable };
  /** Wall seconds of the whole native run (training + evaluations). */
  wallSeconds: number;
}

function metricTable(ks: number[], m: NativeSasrecMetrics): { users: number; metrics: MetricTable } {
  const metrics: MetricTable = {};
  ks.forEach((k, i) => (metrics[`HR@${k}`] = m.hr[i]!));
  ks.forEach((k, i) => (metrics[`nDCG@${k}`] = m.ndcg[i]!));
  ks.forEach((k, i) => (metrics[`MRR@${k}`] = m.mrr[i]!));
  return { users: m.users, metrics };
}

const NATIVE_KS = [5, 10, 20];

function requireSequences(value: unknown): Sequences {
  const s = requireObject(value, 'options.sequences');
  const numUsers = s.numUsers;
  if (typeof numUsers !== 'number' || !Number.isSafeInteger(numUsers) || numUsers < 1) {
    throw new InvalidArgumentError('options.sequences.numUsers', 'an integer >= 1', numUsers);
  }
  const numItems = s.numItems;
  if (typeof numItems !== 'number' || !Number.isSafeInteger(numItems) || numItems < 1 || numItems > 2 ** 31 - 2) {
    throw new InvalidArgumentError('options.sequences.numItems', 'an integer in [1, 2147483646]', numItems);
  }
  if (!isInt32Array(s.offsets) || s.offsets.length !== numUsers + 1) {
    throw new InvalidArgumentError('options.sequences.offsets', `an Int32Array of numUsers + 1 (${numUsers + 1}) row pointers`, s.offsets);
  }
  if (!isInt32Array(s.items)) throw new InvalidArgumentError('options.sequences.items', 'an Int32Array', s.items);
  const { offsets, items } = s;
  if (offsets[0] !== 0 || offsets[numUsers] !== items.length) {
    throw new InvalidArgumentError('options.sequences.offsets', `row pointers from 0 to items.length (${items.length})`, offsets);
  }
  for (let u = 0; u < numUsers; u += 1) {
    if (offsets[u + 1]! < offsets[u]!) {
      throw new InvalidArgumentError(`options.sequences.offsets[${u + 1}]`, `a value >= offsets[${u}] (${offsets[u]})`, offsets[u + 1]);
    }
  }
  for (let i = 0; i < items.length; i += 1) {
    const item = items[i]!;
    if (item < 1 || item > numItems) throw new InvalidArgumentError(`options.sequences.items[${i}]`, `an item id in [1, ${numItems}]`, item);
  }
  let trainable = false;
  for (let u = 0; u < numUsers && !trainable; u += 1) {
    const n = offsets[u + 1]! - offsets[u]!;
    trainable = (n >= 3 ? n - 2 : n) >= 2;
  }
  if (!trainable) throw new InvalidArgumentError('options.sequences', 'at least one user with a training sequence of 2 items or more', value);
  return value as Sequences;
}

function requireNumberIn(value: unknown, name: string, fallback: number, min: number, max: number, maxOpen: boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (maxOpen ? value >= max : value > max)) {
    throw new InvalidArgumentError(name, `a number in [${min}, ${max}${maxOpen ? ')' : ']'}`, value);
  }
  return value;
}

/**
 * Trains SASRec and writes `item_emb.npy` and `metrics.json` into `outDir`.
 * @throws InvalidArgumentError on a bad argument (synchronously checked, rejected);
 *         CancelledError when `signal` aborts (nothing is written);
 *         NativeUnavailableError when mmesid_torch.node is missing; NativeError when training fails
 *         (e.g. a non-finite loss, or another training already running in this process).
 */
export async function trainSasrec(options: TrainSasrecOptions): Promise<SasrecTrainReport> {
  const callerStack = new Error().stack;
  const o = requireObject(options, 'options');
  const sequences = requireSequences(o.sequences);
  if (typeof o.outDir !== 'string' || o.outDir.length === 0 || o.outDir.includes('\0')) {
    throw new InvalidArgumentError('options.outDir', 'a non-empty folder path', o.outDir);
  }
  const outDir = o.outDir;
  const d = SASREC_DEFAULTS;
  const dim = optionalInteger(o.dim, 'options.dim', d.dim, 1, 65536);
  const blocks = optionalInteger(o.blocks, 'options.blocks', d.blocks, 1, 1024);
  const heads = optionalInteger(o.heads, 'options.heads', d.heads, 1, dim);
  if (dim % heads !== 0) throw new InvalidArgumentError('options.heads', `a divisor of options.dim (${dim})`, heads);
  const maxLen = optionalInteger(o.maxLen, 'options.maxLen', d.maxLen, 1, 65536);
  const dropout = requireNumberIn(o.dropout, 'options.dropout', d.dropout, 0, 1, true);
  const loss = o.loss === undefined ? d.loss : o.loss;
  if (loss !== 'bce' && loss !== 'ce') throw new InvalidArgumentError('options.loss', '"bce" or "ce"', o.loss);
  const lr = o.lr === undefined ? d.lr : o.lr;
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr <= 0 || lr > 10) throw new InvalidArgumentError('options.lr', 'a number in (0, 10]', lr);
  const batchSize = optionalInteger(o.batchSize, 'options.batchSize', d.batchSize, 1, 1 << 20);
  const epochs = optionalInteger(o.epochs, 'options.epochs', d.epochs, 1, 1_000_000);
  const patience = optionalInteger(o.patience, 'options.patience', d.patience, 1, 1_000_000);
  const seed = optionalInteger(o.seed, 'options.seed', d.seed, 0);
  const threads = optionalInteger(o.threads, 'options.threads', d.threads, 0, 1024);
  if (o.checkpoint !== undefined && (typeof o.checkpoint !== 'string' || o.checkpoint.length === 0 || o.checkpoint.includes('\0'))) {
    throw new InvalidArgumentError('options.checkpoint', 'a non-empty file path', o.checkpoint);
  }
  const checkpoint = o.checkpoint;
  const resume = optionalBoolean(o.resume, 'options.resume', false);
  if (resume && checkpoint === undefined) throw new InvalidArgumentError('options.resume', 'false when options.checkpoint is not given', o.resume);
  const signal = optionalSignal(o.signal, 'options.signal');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
    throw new InvalidArgumentError('options.onProgress', 'a function', o.onProgress);
  }
  const onProgress = o.onProgress as TrainSasrecOptions['onProgress'];
  if (signal?.aborted) throw new CancelledError('trainSasrec was cancelled');

  const native: NativeSasrecTrainOptions = {
    offsets: sequences.offsets,
    items: sequences.items,
    numItems: sequences.numItems,
    dim,
    blocks,
    heads,
    maxLen,
    dropout,
    loss,
    lr,
    batchSize,
    epochs,
    patience,
    seed,
    threads,
    ...(checkpoint === undefined ? {} : { checkpoint, resume }),
  };
  const started = process.hrtime.bigint();
  const addon = torch();
  const result = await runNativeTraining<NativeSasrecResult, NativeSasrecProgress>(
    'trainSasrec',
    (onEvent) => addon.sasrecTrain(native, onEvent),
    onProgress && ((event) => (event.kind === 'step' ? onProgress(event) : onProgress({ ...event, kind: 'epoch', valid: metricTable(NATIVE_KS, event.valid) }))),
    signal,
    callerStack,
  );
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const ks = result.ks;
  const report: SasrecTrainReport = {
    format: 'mmesid.sasrec.metrics',
    version: 1,
    outDir,
    itemEmbeddings: { file: 'item_emb.npy', rows: sequences.numItems + 1, dim, dtype: 'float32', paddingRow: 0 },
    model: { file: SASREC_MODEL_FILE, format: SASREC_MODEL_FORMAT },
    dataset: describeDataset(sequences),
    config: { dim, blocks, heads, maxLen, dropout, loss, lr, batchSize, epochs, patience, seed, threads },
    trainingRows: result.trainingRows,
    resumedFromEpoch: result.resumedFromEpoch,
    epochs: result.epochs.map((e) => ({ ...e, valid: metricTable(ks, e.valid) })),
    bestEpoch: result.bestEpoch,
    stoppedEarly: result.stoppedEarly,
    test: metricTable(ks, result.test),
    wallSeconds,
  };
  await fs.promises.mkdir(outDir, { recursive: true });
  await saveNpy(path.join(outDir, 'item_emb.npy'), sequences.numItems + 1, dim, result.itemEmbeddings);
  const architecture: SasrecArchitecture = { numItems: sequences.numItems, dim, blocks, heads, maxLen };
  await saveTensors(path.join(outDir, SASREC_MODEL_FILE), result.parameters, {
    format: SASREC_MODEL_FORMAT,
    version: '1',
    architecture: JSON.stringify(architecture),
    dataset: JSON.stringify(report.dataset),
    loss,
    bestEpoch: String(result.bestEpoch),
  });
  const stored: Omit<SasrecTrainReport, 'outDir'> & { outDir?: string } = { ...report };
  delete stored.outDir;
  await writeJsonAtomic(path.join(outDir, 'metrics.json'), stored);
  return report;
}

// ---------------------------------------------------------------------------------------------------
// A trained model, read back

/** The weight file in a training's output folder. */
export const SASREC_MODEL_FILE = 'model.safetensors';
/** `__metadata__.format` of that file. */
export const SASREC_MODEL_FORMAT = 'mmesid.sasrec.model';

/** What a weight file needs besides its tensors. */
export interface SasrecArchitecture {
  numItems: number;
  dim: number;
  blocks: number;
  heads: number;
  maxLen: number;
}

function parseMetadataJson(file: string, metadata: Record<string, string>, key: string): Record<string, unknown> {
  const text = metadata[key];
  if (text === undefined) throw DataFormatError.atByte(file, 8, `safetensors __metadata__ has no "${key}"`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw DataFormatError.atByte(file, 8, `safetensors __metadata__.${key} is not JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw DataFormatError.atByte(file, 8, `safetensors __metadata__.${key} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * A trained SASRec, loaded for inference (no dropout): scores every item for a batch of histories on
 * the libuv pool (never on the JS thread).
 */
export class SasrecModel {
  private constructor(
    /** The architecture (numItems, dim, blocks, heads, maxLen). */
    readonly architecture: Readonly<SasrecArchitecture>,
    /** The fingerprint of the data it was trained on (as recorded by trainSasrec). */
    readonly dataset: Readonly<Record<string, unknown>>,
    /** The file it came from. */
    readonly source: string,
    private readonly scorer: NativeSasrecScorer,
  ) {}

  /**
   * Reads `model.safetensors` from a training's output folder (or the file itself).
   * @throws DataFormatError when the file is not an mmesid SASRec weight file, is malformed, or has a
   *   missing, unknown or mis-shaped weight;
   *   NativeUnavailableError without mmesid_torch.node; the file system's error (e.g. ENOENT).
   */
  static async load(dirOrFile: string): Promise<SasrecModel> {
    if (typeof dirOrFile !== 'string' || dirOrFile.length === 0) throw new InvalidArgumentError('dirOrFile', 'a folder or file path', dirOrFile);
    const stat = await fs.promises.stat(dirOrFile);
    const file = stat.isDirectory() ? path.join(dirOrFile, SASREC_MODEL_FILE) : dirOrFile;
    const { tensors, metadata } = await loadTensors(file);
    if (metadata.format !== SASREC_MODEL_FORMAT) {
      throw DataFormatError.atByte(file, 8, `not an mmesid SASRec weight file (__metadata__.format is ${JSON.stringify(metadata.format)}, expected "${SASREC_MODEL_FORMAT}")`);
    }
    const raw = parseMetadataJson(file, metadata, 'architecture');
    const field = (key: keyof SasrecArchitecture): number => {
      const v = raw[key];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw DataFormatError.atByte(file, 8, `__metadata__.architecture.${key} is not an integer >= 1 (${JSON.stringify(v)})`);
      return v;
    };
    const architecture: SasrecArchitecture = { numItems: field('numItems'), dim: field('dim'), blocks: field('blocks'), heads: field('heads'), maxLen: field('maxLen') };
    if (architecture.dim % architecture.heads !== 0) throw DataFormatError.atByte(file, 8, `__metadata__.architecture: dim ${architecture.dim} is not divisible by heads ${architecture.heads}`);
    const dataset = parseMetadataJson(file, metadata, 'dataset');
    const callerStack = new Error().stack;
    let scorer: NativeSasrecScorer;
    try {
      scorer = torch().sasrecScorer({ ...architecture, parameters: tensors });
    } catch (error) {
      const native = fromNative(error, callerStack);
      // A missing, unknown or mis-shaped weight is the file's fault.
      if ((native as { code?: unknown }).code === 'ERR_MMESID_INVALID_ARGUMENT') throw DataFormatError.atByte(file, 8, native.message);
      throw native;
    }
    return new SasrecModel(Object.freeze(architecture), Object.freeze(dataset), file, scorer);
  }

  /**
   * Scores every item after each history (the last `maxLen` items are read; shorter ones are
   * left-padded).
   * @param histories chronological item ids in [1, numItems], each non-empty
   * @returns float32 [histories.length, numItems + 1], row-major; column 0 (padding) is −Infinity
   * @throws InvalidArgumentError naming the bad history or item
   */
  async score(histories: readonly Int32Array[]): Promise<Float32Array> {
    if (!Array.isArray(histories) || histories.length === 0) throw new InvalidArgumentError('histories', 'a non-empty array of Int32Array', histories);
    const { numItems, maxLen } = this.architecture;
    const inputs = new Int32Array(histories.length * maxLen);
    histories.forEach((h, b) => {
      if (!isInt32Array(h) || h.length === 0) throw new InvalidArgumentError(`histories[${b}]`, 'a non-empty Int32Array', h);
      for (let i = 0; i < h.length; i += 1) {
        if (h[i]! < 1 || h[i]! > numItems) throw new InvalidArgumentError(`histories[${b}][${i}]`, `an item id in [1, ${numItems}]`, h[i]);
      }
      const tail = h.subarray(Math.max(0, h.length - maxLen));
      inputs.set(tail, b * maxLen + maxLen - tail.length);
    });
    const scores = new Float32Array(histories.length * (numItems + 1));
    await this.scoreInto(inputs, histories.length, scores);
    return scores;
  }

  /**
   * The buffer-reusing form of {@link score}: `inputs` int32 [batch, maxLen], already left-padded with
   * 0; `scores` float32 [batch, numItems + 1] is overwritten.
   * @throws InvalidArgumentError on a wrong length or an id outside [0, numItems]
   */
  async scoreInto(inputs: Int32Array, batch: number, scores: Float32Array): Promise<void> {
    const { numItems, maxLen } = this.architecture;
    if (!Number.isSafeInteger(batch) || batch < 1) throw new InvalidArgumentError('batch', 'an integer >= 1', batch);
    if (!isInt32Array(inputs) || inputs.length !== batch * maxLen) throw new InvalidArgumentError('inputs', `an Int32Array [batch, maxLen] of ${batch * maxLen}`, inputs);
    if (!(scores instanceof Float32Array) || scores.length !== batch * (numItems + 1)) {
      throw new InvalidArgumentError('scores', `a Float32Array [batch, numItems + 1] of ${batch * (numItems + 1)}`, scores);
    }
    for (let i = 0; i < inputs.length; i += 1) {
      if (inputs[i]! < 0 || inputs[i]! > numItems) throw new InvalidArgumentError(`inputs[${i}]`, `an item id in [0, ${numItems}] (0 = padding)`, inputs[i]);
    }
    const callerStack = new Error().stack;
    try {
      await this.scorer.score({ inputs, batch, scores });
    } catch (error) {
      throw fromNative(error, callerStack);
    }
  }
}
