/**
 * The tokenizer stage: trains the MM-RQ-VAE (native/torch/models/mm_rqvae.h has the exact model and
 * loss, native/torch/train/tokenizer_trainer.h the loop: k-means initialisation, Sinkhorn on chosen
 * levels, AdamW, early stopping on the epoch's mean total loss) on one to three item tables — collab,
 * text, visual — and writes a tokenizer folder that {@link Tokenizer.load} serves without libtorch.
 *
 * Training runs on a native thread of its own (never on the JS thread or the libuv pool); every step
 * and epoch is reported through `onProgress`; `signal` cancels between steps (and between k-means
 * iterations).
 *
 * Outputs in `outDir`, written only after training succeeded, each atomically (temp file + rename), the
 * manifest last so that a folder with a manifest is complete (Tokenizer.load checks the weights' sha256
 * against it):
 * - `tokenizer.safetensors` — every parameter of the best epoch, F32: `<m>.encoder.<i>.weight|bias`,
 *   `<m>.decoder.<i>.weight|bias`, `<m>.codebooks [L, K, e]` (the codebooks initialise the LLM's code
 *   tables later);
 * - `sids.<m>.npy` — int32 [numItems + 1, L] per modality, row 0 (padding) = −1, the codes of the best
 *   weights' greedy inference assignment (the same codes Tokenizer.encode gives);
 * - `report.json` — {@link TokenizerTrainReport}: per modality codebook usage and perplexity per level,
 *   collision rate, reconstruction MSE, Kendall τ between original and quantized pairwise distances;
 *   the epoch curve, wall times and every setting;
 * - `tokenizer.json` — the manifest ({@link TokenizerManifest}): format, version, modalities and
 *   dims, levels, codes, the best epoch's losses, every setting, the weights' sha256.
 *
 * Kendall τ: `tauPairs` item pairs (i ≠ j, uniform with replacement, seeded by `tauSeed`) — for each,
 * the Euclidean distance between the items' input embeddings and between their quantized vectors
 * z_q = Σ_l C_l[code_l]; τ-b is computed exactly on that sample (lib/tokenizer/metrics.ts).
 *
 * Fidelity: the defaults are the official MME-SID script's (recon weight 3 with the one-kernel MMD,
 * α 0.5; align weight 0.01; commitment β 0.01 — the authors' script ties β to the alignment weight;
 * Sinkhorn ε 0.003 × 50 iterations on the last level only), with InfoNCE alignment as the paper says
 * (`align: 'mmd'` is what the authors' code runs). The code dimension defaults to the LLM's hidden size:
 * `llmConfig` (a Hugging Face config.json or its folder) sets it from `hidden_size`; without it, 4,096
 * (Llama 3 8B).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { InvalidArgumentError } from '../errors';
import { torch } from '../native';
import { runNativeTraining } from '../nativeTraining';
import { sha256OfFile, writeJsonAtomic } from '../data/atomicFile';
import { saveTensors, validateItemTable, type EmbeddingTable } from '../data/embeddings';
import { NpyWriter } from '../data/npyStream';
import { isFloat32Array, optionalBoolean, optionalInteger, optionalSignal, requireObject } from '../validate';
import { codebookUsage, collisionRate, distanceKendallTau, type LevelUsage } from './metrics';
import { TOKENIZER_FORMAT, TOKENIZER_MANIFEST, TOKENIZER_MODALITIES, TOKENIZER_VERSION, type TokenizerManifest, type TokenizerModalityName } from './service';
import type { NativeRqvaeEpoch, NativeRqvaeProgress, NativeRqvaeResult, NativeRqvaeTrainOptions } from '../../typings/native';

/** The weights' file name in a tokenizer folder. */
export const TOKENIZER_WEIGHTS = 'tokenizer.safetensors';
/** The report's file name in a tokenizer folder. */
export const TOKENIZER_REPORT = 'report.json';
/** `sids.<modality>.npy`. */
export const sidsFile = (modality: TokenizerModalityName): string => `sids.${modality}.npy`;

/** Llama 3 8B's hidden size: the code dimension when neither `codeDim` nor `llmConfig` is given. */
export const DEFAULT_CODE_DIM = 4096;

export type TokenizerRecon = 'mmd' | 'mse';
export type TokenizerAlign = 'infonce' | 'mmd' | 'none';
export type TokenizerKmeansInit = 'plain' | 'constrained' | 'none';
export const TOKENIZER_RECONS: readonly TokenizerRecon[] = Object.freeze(['mmd', 'mse'] as const);
export const TOKENIZER_ALIGNS: readonly TokenizerAlign[] = Object.freeze(['infonce', 'mmd', 'none'] as const);
export const TOKENIZER_KMEANS_INITS: readonly TokenizerKmeansInit[] = Object.freeze(['plain', 'constrained', 'none'] as const);
export type TokenizerResidualGradient = 'exact' | 'lc-rec';
export const TOKENIZER_RESIDUAL_GRADIENTS: readonly TokenizerResidualGradient[] = Object.freeze(['exact', 'lc-rec'] as const);

/** Defaults: the official MME-SID tokenizer script's settings, InfoNCE alignment (the paper's). */
export const TOKENIZER_DEFAULTS = Object.freeze({
  hidden: Object.freeze<number[]>([256, 128]),
  levels: 4,
  codes: 256,
  recon: 'mmd',
  align: 'infonce',
  reconWeight: 3,
  alignWeight: 0.01,
  beta: 0.01,
  temperature: 0.1,
  infonceSymmetric: false,
  mmdAlpha: 0.5,
  residualGradient: 'exact',
  sinkhornEpsilon: 0.003,
  sinkhornIterations: 50,
  kmeansInit: 'plain',
  kmeansIterations: 20,
  lr: 2e-4,
  weightDecay: 1e-4,
  batchSize: 1024,
  epochs: 1000,
  patience: 200,
  seed: 42,
  threads: 0,
  tauPairs: 10_000,
  tauSeed: 1,
});

/** The tokenizer's hyperparameters and run settings (shared by the API and the CLI). */
export interface TokenizerSettings {
  /** Encoder hidden sizes of every modality (the decoder mirrors them). Default [256, 128]. */
  hidden?: readonly number[];
  /** L, residual levels. Default 4. */
  levels?: number;
  /** K, codewords per level. Default 256. */
  codes?: number;
  /** e, the code dimension. Default: `llmConfig`'s hidden_size, else 4096. */
  codeDim?: number;
  /** A Hugging Face `config.json` (or its folder) whose `hidden_size` sets codeDim when codeDim is not given. */
  llmConfig?: string;
  /** Reconstruction loss. Default 'mmd'. */
  recon?: TokenizerRecon;
  /** Alignment of the quantized collab vector with the quantized text / visual vectors. Default 'infonce'. */
  align?: TokenizerAlign;
  /** Default 3. */
  reconWeight?: number;
  /** Default 0.01. */
  alignWeight?: number;
  /** Commitment weight β (the official script uses the alignment weight). Default 0.01. */
  beta?: number;
  /** InfoNCE temperature. Default 0.1 (the info_nce package the authors use). */
  temperature?: number;
  /** InfoNCE in both directions; default false: quantized collab is the query, the other modality the key (the authors' code). */
  infonceSymmetric?: boolean;
  /** α of the Gaussian MMD kernel (σ² = α · mean pairwise squared distance). Default 0.5. */
  mmdAlpha?: number;
  /**
   * Gradient through the residuals r_{l+1} = r_l − q_l. 'exact' (default): the true derivative of the RQ
   * loss for frozen codes. 'lc-rec': what LC-Rec and the MME-SID code compute — r_l for l >= 1 is a
   * constant of the graph, so the commitment term reaches the encoder only at level 0 and each codebook
   * moves by its own codebook term alone. Forward values are identical.
   */
  residualGradient?: TokenizerResidualGradient;
  /** Levels (0-based) assigned by Sinkhorn while training. Default [levels − 1]; [] for none. */
  sinkhornLevels?: readonly number[];
  /** Default 0.003. */
  sinkhornEpsilon?: number;
  /** Default 50. */
  sinkhornIterations?: number;
  /** k-means initialisation of the codebooks from the first pass over the data. Default 'plain'. */
  kmeansInit?: TokenizerKmeansInit;
  /** Lloyd iterations per level. Default 20. */
  kmeansIterations?: number;
  /**
   * AdamW. Defaults 2e-4 (the official script's) and 1e-4. At 1e-3 the MMD tokenizer preserves distance
   * order worse on Beauty (README "Evidence on Beauty").
   */
  lr?: number;
  weightDecay?: number;
  /** Items per step (>= 2). Default 1024. */
  batchSize?: number;
  /** Maximum epochs. Default 1,000 (the official script: 20,000). */
  epochs?: number;
  /**
   * Early stopping: epochs without a lower mean total loss. Default 200 (the official script: 2,000): with
   * the official β the RQ term spikes for ~100 epochs early in training before the codebooks catch up.
   */
  patience?: number;
  /** Integer in [0, 2^53). Default 42. */
  seed?: number;
  /** libtorch threads of the training thread; 0 = all cores (1 for bit-identical runs). Default 0. */
  threads?: number;
  /** Checkpoint file (its folder must exist), rewritten atomically after every epoch. Default: none. */
  checkpoint?: string;
  /** Continue from `checkpoint` when that file exists. Default false. */
  resume?: boolean;
  /** Item pairs sampled for Kendall τ. Default 10,000. */
  tauPairs?: number;
  /** Seed of the pair sampler. Default 1. */
  tauSeed?: number;
}

/** Options of {@link trainTokenizer}: at least one table; every table has numItems + 1 rows (row 0 = padding). */
export interface TrainTokenizerOptions extends TokenizerSettings {
  collab?: EmbeddingTable;
  text?: EmbeddingTable;
  visual?: EmbeddingTable;
  /** Folder for the outputs (created when missing, written only once training succeeded). */
  outDir: string;
  /** Aborting rejects with CancelledError; nothing is written (but the checkpoint). */
  signal?: AbortSignal;
  /** Called on the JS thread for every step and epoch. A throw cancels the training and rejects with it. */
  onProgress?: (event: NativeRqvaeProgress) => void;
}

/** Per-modality quality of the trained tokenizer. */
export interface TokenizerModalityReport {
  inputDim: number;
  /** Per level: codes used, their fraction of K, perplexity exp(H). */
  usage: LevelUsage[];
  /** Fraction of items whose full SID equals another item's. */
  collisionRate: number;
  /** Items sharing their full SID with another item. */
  collidingItems: number;
  /** Distinct full SIDs. */
  distinctSids: number;
  /** Mean over items and columns of (decoder(z_q) − x)². */
  reconMse: number;
  /** Kendall τ-b between original and quantized pairwise distances on the sample. */
  kendallTau: number;
}

/** The resolved settings (what was trained with). */
export type ResolvedTokenizerSettings = Required<Omit<TokenizerSettings, 'checkpoint' | 'resume' | 'llmConfig' | 'hidden' | 'sinkhornLevels'>> & {
  hidden: number[];
  sinkhornLevels: number[];
  /** Where codeDim came from. */
  codeDimSource: 'option' | 'llmConfig' | 'default';
};

/** What {@link trainTokenizer} resolves to (also report.json, less `outDir`). */
export interface TokenizerTrainReport {
  format: 'mmesid.tokenizer.report';
  version: 1;
  outDir: string;
  numItems: number;
  modalities: TokenizerModalityName[];
  levels: number;
  codes: number;
  codeDim: number;
  /** Per modality (fields other tools read). */
  kendallTau: Partial<Record<TokenizerModalityName, number>>;
  collisionRate: Partial<Record<TokenizerModalityName, number>>;
  usage: Partial<Record<TokenizerModalityName, LevelUsage[]>>;
  reconMse: Partial<Record<TokenizerModalityName, number>>;
  perModality: Partial<Record<TokenizerModalityName, TokenizerModalityReport>>;
  /** How τ was sampled. */
  tau: { pairs: number; seed: number; sampling: string };
  epochs: NativeRqvaeEpoch[];
  bestEpoch: number;
  stoppedEarly: boolean;
  resumedFromEpoch: number;
  /** Wall seconds of the native run (k-means + training + final encoding) and mean per epoch. */
  wallSeconds: number;
  secondsPerEpoch: number;
  settings: ResolvedTokenizerSettings;
  files: { manifest: string; weights: string; sids: Partial<Record<TokenizerModalityName, string>>; report: string };
}

function choice<T extends string>(value: unknown, name: string, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly unknown[]).includes(value)) throw new InvalidArgumentError(name, `one of ${choices.map((c) => `"${c}"`).join(', ')}`, value);
  return value as T;
}

function numberIn(value: unknown, name: string, fallback: number, min: number, minOpen: boolean, max = Number.POSITIVE_INFINITY): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || (minOpen ? value <= min : value < min) || value > max) {
    throw new InvalidArgumentError(name, `a number in ${minOpen ? '(' : '['}${min}, ${max === Number.POSITIVE_INFINITY ? '∞)' : `${max}]`}`, value);
  }
  return value;
}

function integerList(value: unknown, name: string, fallback: readonly number[], min: number, max: number, allowEmpty: boolean): number[] {
  if (value === undefined) return fallback.slice();
  if (!Array.isArray(value) || (!allowEmpty && value.length === 0)) throw new InvalidArgumentError(name, `${allowEmpty ? 'an' : 'a non-empty'} array of integers in [${min}, ${max}]`, value);
  return value.map((v: unknown, i) => optionalInteger(v, `${name}[${i}]`, 0, min, max));
}

function filePath(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) throw new InvalidArgumentError(name, 'a non-empty file path', value);
  return value;
}

/** hidden_size of a Hugging Face config.json (or the config.json in a folder). @throws InvalidArgumentError */
export async function llmHiddenSize(configPath: string): Promise<number> {
  let file = configPath;
  try {
    if ((await fs.promises.stat(configPath)).isDirectory()) file = path.join(configPath, 'config.json');
  } catch {
    throw new InvalidArgumentError('options.llmConfig', 'a Hugging Face config.json or the folder holding it', configPath);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.promises.readFile(file, 'utf8'));
  } catch (error) {
    throw new InvalidArgumentError('options.llmConfig', 'a readable JSON config.json', file, `${JSON.stringify(file)} (${(error as Error).message})`);
  }
  const hidden = (parsed as { hidden_size?: unknown } | null)?.hidden_size;
  if (typeof hidden !== 'number' || !Number.isSafeInteger(hidden) || hidden < 1) {
    throw new InvalidArgumentError('options.llmConfig', 'a config.json with an integer "hidden_size"', file, `${JSON.stringify(file)} with hidden_size ${JSON.stringify(hidden)}`);
  }
  return hidden;
}

async function writeSids(file: string, codes: Int32Array, numItems: number, levels: number): Promise<void> {
  const out = await NpyWriter.create(file, { dtype: 'int32', rows: numItems + 1, dim: levels });
  try {
    await out.write(new Int32Array(levels).fill(-1));
    await out.write(codes);
    await out.finish();
  } catch (error) {
    await out.discard();
    throw error;
  }
}

/**
 * Trains the MM-RQ-VAE on the given tables and writes the tokenizer folder (see the module comment).
 * @throws InvalidArgumentError on a bad argument (rejected before training starts): no table, a table
 *   that is not [numItems + 1, d] float32 or holds a NaN/Inf (named with its row), tables of different
 *   row counts, an out-of-range setting, an unreadable llmConfig;
 *   CancelledError when `signal` aborts (nothing is written but the checkpoint);
 *   NativeUnavailableError when mmesid_torch.node is missing; NativeError when training fails (a
 *   non-finite loss, a checkpoint of another run, another tokenizer training running in this process).
 */
export async function trainTokenizer(options: TrainTokenizerOptions): Promise<TokenizerTrainReport> {
  const callerStack = new Error().stack;
  const o = requireObject(options, 'options');
  const given = TOKENIZER_MODALITIES.filter((m) => o[m] !== undefined);
  if (given.length === 0) throw new InvalidArgumentError('options', `at least one item table of ${TOKENIZER_MODALITIES.join(', ')}`, options);
  const tables = given.map((name) => {
    const t = requireObject(o[name], `options.${name}`) as unknown as EmbeddingTable;
    if (!isFloat32Array(t.data)) throw new InvalidArgumentError(`options.${name}.data`, 'a Float32Array', t.data);
    return { name, table: t };
  });
  const first = tables[0]!;
  const rows = optionalInteger(first.table.rows, `options.${first.name}.rows`, 0, 3);
  const numItems = rows - 1;
  for (const { name, table } of tables) validateItemTable(table, numItems, `options.${name}`);

  if (typeof o.outDir !== 'string' || o.outDir.length === 0 || o.outDir.includes('\0')) throw new InvalidArgumentError('options.outDir', 'a non-empty folder path', o.outDir);
  const outDir = o.outDir;
  const d = TOKENIZER_DEFAULTS;
  const hidden = integerList(o.hidden, 'options.hidden', d.hidden, 1, 1 << 20, true);
  const levels = optionalInteger(o.levels, 'options.levels', d.levels, 1, 64);
  const codes = optionalInteger(o.codes, 'options.codes', d.codes, 1, 1 << 20);
  const llmConfig = filePath(o.llmConfig, 'options.llmConfig');
  let codeDimSource: ResolvedTokenizerSettings['codeDimSource'] = 'default';
  let codeDim = DEFAULT_CODE_DIM;
  if (o.codeDim !== undefined) {
    codeDim = optionalInteger(o.codeDim, 'options.codeDim', 0, 1, 1 << 20);
    codeDimSource = 'option';
  } else if (llmConfig !== undefined) {
    codeDim = await llmHiddenSize(llmConfig);
    codeDimSource = 'llmConfig';
  }
  const recon = choice(o.recon, 'options.recon', TOKENIZER_RECONS, d.recon);
  const align = choice(o.align, 'options.align', TOKENIZER_ALIGNS, d.align);
  const reconWeight = numberIn(o.reconWeight, 'options.reconWeight', d.reconWeight, 0, false);
  const alignWeight = numberIn(o.alignWeight, 'options.alignWeight', d.alignWeight, 0, false);
  const beta = numberIn(o.beta, 'options.beta', d.beta, 0, false);
  const temperature = numberIn(o.temperature, 'options.temperature', d.temperature, 0, true);
  const infonceSymmetric = optionalBoolean(o.infonceSymmetric, 'options.infonceSymmetric', d.infonceSymmetric);
  const mmdAlpha = numberIn(o.mmdAlpha, 'options.mmdAlpha', d.mmdAlpha, 0, true);
  const residualGradient = choice(o.residualGradient, 'options.residualGradient', TOKENIZER_RESIDUAL_GRADIENTS, d.residualGradient);
  const sinkhornLevels = integerList(o.sinkhornLevels, 'options.sinkhornLevels', [levels - 1], 0, levels - 1, true);
  if (new Set(sinkhornLevels).size !== sinkhornLevels.length) throw new InvalidArgumentError('options.sinkhornLevels', 'distinct levels', o.sinkhornLevels);
  const sinkhornEpsilon = numberIn(o.sinkhornEpsilon, 'options.sinkhornEpsilon', d.sinkhornEpsilon, 0, true);
  const sinkhornIterations = optionalInteger(o.sinkhornIterations, 'options.sinkhornIterations', d.sinkhornIterations, 1, 1_000_000);
  const kmeansInit = choice(o.kmeansInit, 'options.kmeansInit', TOKENIZER_KMEANS_INITS, d.kmeansInit);
  const kmeansIterations = optionalInteger(o.kmeansIterations, 'options.kmeansIterations', d.kmeansIterations, 1, 1_000_000);
  const lr = numberIn(o.lr, 'options.lr', d.lr, 0, true, 10);
  const weightDecay = numberIn(o.weightDecay, 'options.weightDecay', d.weightDecay, 0, false, 10);
  const batchSize = optionalInteger(o.batchSize, 'options.batchSize', d.batchSize, 2, 1 << 24);
  const epochs = optionalInteger(o.epochs, 'options.epochs', d.epochs, 1, 1_000_000);
  const patience = optionalInteger(o.patience, 'options.patience', d.patience, 1, 1_000_000);
  const seed = optionalInteger(o.seed, 'options.seed', d.seed, 0);
  const threads = optionalInteger(o.threads, 'options.threads', d.threads, 0, 1024);
  const checkpoint = filePath(o.checkpoint, 'options.checkpoint');
  const resume = optionalBoolean(o.resume, 'options.resume', false);
  if (resume && checkpoint === undefined) throw new InvalidArgumentError('options.resume', 'false when options.checkpoint is not given', o.resume);
  const tauPairs = optionalInteger(o.tauPairs, 'options.tauPairs', d.tauPairs, 1, 100_000_000);
  const tauSeed = optionalInteger(o.tauSeed, 'options.tauSeed', d.tauSeed, 0, 2 ** 32 - 1);
  const signal = optionalSignal(o.signal, 'options.signal');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new InvalidArgumentError('options.onProgress', 'a function', o.onProgress);
  const onProgress = o.onProgress as TrainTokenizerOptions['onProgress'];

  const settings: ResolvedTokenizerSettings = {
    hidden, levels, codes, codeDim, codeDimSource, recon, align, reconWeight, alignWeight, beta, temperature, infonceSymmetric, mmdAlpha,
    residualGradient, sinkhornLevels, sinkhornEpsilon, sinkhornIterations, kmeansInit, kmeansIterations, lr, weightDecay, batchSize,
    epochs, patience, seed, threads, tauPairs, tauSeed,
  };
  const native: NativeRqvaeTrainOptions = {
    tables: Object.fromEntries(tables.map(({ name, table }) => [name, { data: table.data, rows: table.rows, dim: table.dim }])),
    hidden, levels, codes, codeDim, recon, align, reconWeight, alignWeight, beta, temperature, infonceSymmetric, mmdAlpha,
    residualGradient, sinkhornLevels, sinkhornEpsilon, sinkhornIterations, kmeansInit, kmeansIterations, lr, weightDecay, batchSize,
    epochs, patience, seed, threads,
    ...(checkpoint === undefined ? {} : { checkpoint, resume }),
  };
  const started = process.hrtime.bigint();
  const addon = torch();
  const result: NativeRqvaeResult = await runNativeTraining<NativeRqvaeResult, NativeRqvaeProgress>(
    'trainTokenizer',
    (onEvent) => addon.tokenizerTrain(native, onEvent),
    onProgress,
    signal,
    callerStack,
  );
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;

  const perModality: TokenizerTrainReport['perModality'] = {};
  for (const m of result.modalities) {
    const { table } = tables.find((t) => t.name === m.name)!;
    const original = table.data.subarray(table.dim, (numItems + 1) * table.dim);
    const collisions = collisionRate(m.codes, levels);
    perModality[m.name] = {
      inputDim: table.dim,
      usage: codebookUsage(m.codes, levels, codes),
      collisionRate: collisions,
      collidingItems: Math.round(collisions * numItems),
      distinctSids: new Set(Array.from({ length: numItems }, (_, i) => m.codes.subarray(i * levels, (i + 1) * levels).join(','))).size,
      reconMse: m.reconMse,
      kendallTau: distanceKendallTau(original, table.dim, m.quantized, codeDim, { pairs: tauPairs, seed: tauSeed }).tau,
    };
  }
  const pick = <K extends keyof TokenizerModalityReport>(key: K): Partial<Record<TokenizerModalityName, TokenizerModalityReport[K]>> =>
    Object.fromEntries(Object.entries(perModality).map(([name, r]) => [name, r[key]]));
  const sids: Partial<Record<TokenizerModalityName, string>> = Object.fromEntries(result.modalities.map((m) => [m.name, sidsFile(m.name)]));
  const report: TokenizerTrainReport = {
    format: 'mmesid.tokenizer.report',
    version: 1,
    outDir,
    numItems,
    modalities: result.modalities.map((m) => m.name),
    levels,
    codes,
    codeDim,
    kendallTau: pick('kendallTau'),
    collisionRate: pick('collisionRate'),
    usage: pick('usage'),
    reconMse: pick('reconMse'),
    perModality,
    tau: { pairs: tauPairs, seed: tauSeed, sampling: 'item pairs i != j drawn uniformly with replacement (sfc32); Euclidean distances of input embeddings vs quantized z_q; exact tau-b on the sample' },
    epochs: result.epochs,
    bestEpoch: result.bestEpoch,
    stoppedEarly: result.stoppedEarly,
    resumedFromEpoch: result.resumedFromEpoch,
    wallSeconds,
    secondsPerEpoch: result.epochs.length > 0 ? result.epochs.reduce((s, e) => s + e.seconds, 0) / result.epochs.length : 0,
    settings,
    files: { manifest: TOKENIZER_MANIFEST, weights: TOKENIZER_WEIGHTS, sids, report: TOKENIZER_REPORT },
  };

  await fs.promises.mkdir(outDir, { recursive: true });
  const weightsFile = path.join(outDir, TOKENIZER_WEIGHTS);
  await saveTensors(weightsFile, result.parameters, { format: TOKENIZER_FORMAT, version: String(TOKENIZER_VERSION) });
  for (const m of result.modalities) await writeSids(path.join(outDir, sidsFile(m.name)), m.codes, numItems, levels);
  const stored: Omit<TokenizerTrainReport, 'outDir'> & { outDir?: string } = { ...report };
  delete stored.outDir;
  await writeJsonAtomic(path.join(outDir, TOKENIZER_REPORT), stored);
  const best = result.epochs.find((e) => e.epoch === result.bestEpoch);
  const manifest: TokenizerManifest & { losses: Record<string, number> } = {
    format: TOKENIZER_FORMAT,
    version: TOKENIZER_VERSION,
    weights: TOKENIZER_WEIGHTS,
    numItems,
    levels,
    codes,
    codeDim,
    modalities: tables.map(({ name, table }) => ({ name, inputDim: table.dim, hidden: hidden.slice() })),
    losses: best ? { epoch: best.epoch, total: best.loss, recon: best.recon, align: best.align, rq: best.rq } : {},
    settings: { ...settings },
    weightsSha256: await sha256OfFile(weightsFile),
  };
  await writeJsonAtomic(path.join(outDir, TOKENIZER_MANIFEST), manifest);
  return report;
}
