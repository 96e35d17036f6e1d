/**
 * An MME-SID run: the Llama (lib/llm/model.ts) with LoRA adapters and the MME-SID head
 * (native/torch/models/mmesid.h) built from a {@link FinetuneConfig}, trained, saved as a run directory
 * and loaded back for evaluation and serving.
 *
 * Run directory: `adapter/` (PEFT: adapter_config.json + adapter_model.safetensors), `head.safetensors`
 * (the head's trainable tensors), `run.json` (format, the resolved config, versions, seeds, data
 * fingerprints, prompt ids, training and validation history) and `checkpoint.pt` (resume).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeMmesidHead, NativeMmesidModality } from '../../typings/native';
import { writeJsonAtomic, sha256OfFile } from '../data/atomicFile';
import { loadEmbeddings, loadInt32Npy, loadTensors, validateItemTable } from '../data/embeddings';
import { loadSequences, type Sequences } from '../data/sequences';
import { trainFrequency, trainingHistory, trainingSamples } from '../data/splits';
import { DataFormatError, InvalidArgumentError, callNative } from '../errors';
import { buildInfo } from '../info';
import { LlamaModel } from '../llm/model';
import { PROMPT_TEMPLATES, PromptTokenizer, type PromptTemplateName } from '../llm/prompt';
import { resolveLoopOptions, runFingerprint, type TrainResult, type TrainStep } from '../llm/train';
import { packageRoot, torch } from '../native';
import { runNativeTraining } from '../nativeTraining';
import { TOKENIZER_FORMAT, type TokenizerModalityName, validateTokenizerManifest } from '../tokenizer/service';
import { resolveFinetuneConfig, type FinetuneConfig } from './config';

export const RUN_FORMAT = 'mmesid.run';
export const RUN_VERSION = 1;

/** Histories in CSR form (oldest first): history b = items[offsets[b], offsets[b + 1]). */
export interface HistoryBatch {
  offsets: Float64Array;
  items: Int32Array;
}

/** run.json. */
export interface RunManifest {
  format: typeof RUN_FORMAT;
  version: typeof RUN_VERSION;
  config: FinetuneConfig;
  numItems: number;
  hidden: number;
  prompt: { prefixIds: number[]; suffixIds: number[] };
  versions: Record<string, unknown>;
  fingerprints: Record<string, string>;
  training?: { steps: number; resumedFrom: number; seconds: number; samples: number; losses: number[]; validation: ValidationPoint[] };
}

/** One validation during training. */
export interface ValidationPoint {
  step: number;
  users: number;
  hr10: number;
  ndcg10: number;
}

/** Builds CSR histories from arrays of item ids. */
export function historyBatch(histories: ArrayLike<ArrayLike<number>>): HistoryBatch {
  const offsets = new Float64Array(histories.length + 1);
  let total = 0;
  for (let b = 0; b < histories.length; b++) {
    total += histories[b]!.length;
    offsets[b + 1] = total;
  }
  const items = new Int32Array(total);
  for (let b = 0; b < histories.length; b++) items.set(Array.from(histories[b]!), offsets[b]);
  return { offsets, items };
}

async function promptIds(config: FinetuneConfig): Promise<{ prefixIds: number[]; suffixIds: number[] }> {
  if (config.prompt.prefixIds && config.prompt.suffixIds) return { prefixIds: config.prompt.prefixIds, suffixIds: config.prompt.suffixIds };
  if (!fs.existsSync(path.join(config.model, 'tokenizer.json'))) {
    throw new InvalidArgumentError('config.prompt', 'prefixIds and suffixIds (the model directory has no tokenizer.json to tokenize the template with)', JSON.stringify(config.prompt));
  }
  const tokenizer = await PromptTokenizer.load(config.model);
  const template = (PROMPT_TEMPLATES as Record<string, string>)[config.prompt.template as PromptTemplateName] ?? config.prompt.template;
  const { prefix, suffix } = tokenizer.encodeTemplate(template);
  return { prefixIds: Array.from(prefix), suffixIds: Array.from(suffix) };
}

interface TokenizerParts {
  levels: number;
  codes: number;
  codeDim: number;
  sids: Partial<Record<TokenizerModalityName, Int32Array>>;
  codebooks: Partial<Record<TokenizerModalityName, Float32Array>>;
  sha256: string;
}

async function readTokenizer(dir: string, modalities: readonly TokenizerModalityName[], numItems: number): Promise<TokenizerParts> {
  const manifestFile = path.join(dir, 'tokenizer.json');
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  } catch (error) {
    throw new DataFormatError(manifestFile, 0, (error as NodeJS.ErrnoException).code === 'ENOENT' ? `no ${TOKENIZER_FORMAT} manifest (train one with \`mmesid tokenizer train\`)` : `not valid JSON (${(error as Error).message})`);
  }
  const manifest = validateTokenizerManifest(raw, manifestFile);
  if (manifest.numItems !== numItems) throw new DataFormatError(manifestFile, 0, `the tokenizer was trained for ${manifest.numItems} items, the sequences have ${numItems}`);
  const weights = await loadTensors(path.join(dir, manifest.weights));
  const parts: TokenizerParts = { levels: manifest.levels, codes: manifest.codes, codeDim: manifest.codeDim, sids: {}, codebooks: {}, sha256: manifest.weightsSha256 };
  for (const m of modalities) {
    if (!manifest.modalities.some((x) => x.name === m)) throw new DataFormatError(manifestFile, 0, `the tokenizer has no ${m} modality (it has ${manifest.modalities.map((x) => x.name).join(', ')})`);
    const sids = await loadInt32Npy(path.join(dir, `sids.${m}.npy`));
    if (sids.rows !== numItems + 1 || sids.dim !== manifest.levels) throw new DataFormatError(sids.source, 0, `expected semantic IDs [${numItems + 1}, ${manifest.levels}], found [${sids.rows}, ${sids.dim}]`);
    parts.sids[m] = sids.data;
    const codebooks = weights.tensors.find((t) => t.name === `${m}.codebooks`);
    if (!codebooks) throw new DataFormatError(path.join(dir, manifest.weights), 0, `no tensor ${m}.codebooks`);
    parts.codebooks[m] = codebooks.data;
  }
  return parts;
}

/** A built (or loaded) MME-SID model: the LLM with adapters and the head, plus what it was built from. */
export class MmesidRun {
  private constructor(
    readonly manifest: RunManifest,
    readonly llm: LlamaModel,
    private head: NativeMmesidHead | undefined,
    readonly sequences: Sequences,
    readonly dir: string,
  ) {}

  get config(): FinetuneConfig {
    return this.manifest.config;
  }

  /**
   * Builds a fresh model from a config: loads the LLM, adds LoRA, reads the tables (and the tokenizer's
   * semantic IDs and codebooks), and initialises the head.
   * @throws DataFormatError / InvalidArgumentError for inconsistent inputs (a codebook dim ≠ the LLM's hidden size, …).
   */
  static async create(config: FinetuneConfig): Promise<MmesidRun> {
    const sequences = await loadSequences(config.sequences);
    const llm = await LlamaModel.load(config.model, { device: config.device, threads: config.threads });
    try {
      llm.applyLora({ ...config.lora, seed: config.train.seed });
      const { head, manifest } = await MmesidRun.buildHead(config, sequences, llm);
      return new MmesidRun(manifest, llm, head, sequences, config.out);
    } catch (error) {
      await llm.dispose();
      throw error;
    }
  }

  /** Loads a run directory written by {@link save}. @throws DataFormatError for a missing or foreign run. */
  static async load(dir: string): Promise<MmesidRun> {
    const file = path.join(dir, 'run.json');
    let raw: RunManifest;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8')) as RunManifest;
    } catch (error) {
      throw new DataFormatError(file, 0, (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not an mmesid run directory (no run.json; train one with `mmesid finetune`)' : `not valid JSON (${(error as Error).message})`);
    }
    if (raw.format !== RUN_FORMAT || raw.version !== RUN_VERSION) throw new DataFormatError(file, 0, `expected format ${RUN_FORMAT} version ${RUN_VERSION}`);
    const config = resolveFinetuneConfig(raw.config as unknown as Record<string, unknown>, file);
    const sequences = await loadSequences(config.sequences);
    if (raw.fingerprints.sequences !== undefined && raw.fingerprints.sequences !== sequences.sha256) {
      throw new DataFormatError(config.sequences, 0, `the sequences changed since the run was trained (sha256 ${sequences.sha256.slice(0, 12)}…, run.json has ${raw.fingerprints.sequences.slice(0, 12)}…)`);
    }
    const llm = await LlamaModel.load(config.model, { device: config.device, threads: config.threads });
    try {
      await llm.loadAdapter(path.join(dir, 'adapter'));
      const { head } = await MmesidRun.buildHead({ ...config, prompt: { ...config.prompt, ...raw.prompt } }, sequences, llm);
      await callNative(() => head.load(path.join(dir, 'head.safetensors')), new Error().stack);
      return new MmesidRun({ ...raw, config }, llm, head, sequences, dir);
    } catch (error) {
      await llm.dispose();
      throw error;
    }
  }

  private static async buildHead(config: FinetuneConfig, sequences: Sequences, llm: LlamaModel): Promise<{ head: NativeMmesidHead; manifest: RunManifest }> {
    const numItems = sequences.numItems;
    const hidden = llm.config.hiddenSize;
    const needsSids = config.variant === 'mme-sid' || config.variant === 'mme-random';
    const tokenizer = needsSids ? await readTokenizer(config.tokenizer!, config.modalities, numItems) : undefined;
    if (tokenizer && config.variant === 'mme-sid' && tokenizer.codeDim !== hidden) {
      throw new DataFormatError(path.join(config.tokenizer!, 'tokenizer.json'), 0, `the codebooks have dim ${tokenizer.codeDim} but the LLM's hidden size is ${hidden} (train the tokenizer with --code-dim ${hidden} or --llm ${config.model})`);
    }
    const fingerprints: Record<string, string> = { sequences: sequences.sha256 };
    const modalities: NativeMmesidModality[] = [];
    for (const m of config.modalities) {
      const file = config.embeddings[m]!;
      const table = await loadEmbeddings(file);
      validateItemTable(table, numItems, `embeddings.${m}`);
      fingerprints[`embeddings.${m}`] = await sha256OfFile(file);
      modalities.push({
        name: m,
        table: table.data,
        dim: table.dim,
        ...(tokenizer ? { sids: tokenizer.sids[m]!, levels: tokenizer.levels, codes: tokenizer.codes } : {}),
        ...(tokenizer && config.variant === 'mme-sid' ? { codebooks: tokenizer.codebooks[m]! } : {}),
      });
    }
    if (tokenizer) fingerprints.tokenizer = tokenizer.sha256;
    const frequency = Float64Array.from(trainFrequency(sequences));
    const head = await callNative(
      () =>
        torch().mmesidHead(llm._native(), {
        variant: config.variant,
        fusion: config.fusion,
        temperature: config.temperature,
        hidden,
        scoreChunk: config.train.scoreChunk,
        seed: config.train.seed,
        numItems: numItems + 1,
        frequency,
        modalities,
        }),
      new Error().stack,
    );
    const prompt = await promptIds(config);
    const vocab = llm.config.vocabSize;
    for (const id of [...prompt.prefixIds, ...prompt.suffixIds]) {
      if (id >= vocab) throw new InvalidArgumentError('config.prompt', `token ids below the vocabulary size ${vocab}`, String(id));
    }
    const info = buildInfo();
    const manifest: RunManifest = {
      format: RUN_FORMAT,
      version: RUN_VERSION,
      config,
      numItems,
      hidden,
      prompt,
      versions: { mmesid: (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version, libtorch: info.torch?.torchVersion ?? null, node: process.version },
      fingerprints,
    };
    return { head, manifest };
  }

  /** The prompt's prefix and suffix ids as the native calls take them. */
  private promptArrays(): { prefix: Int32Array; suffix: Int32Array } {
    return { prefix: Int32Array.from(this.manifest.prompt.prefixIds), suffix: Int32Array.from(this.manifest.prompt.suffixIds) };
  }

  private native(): NativeMmesidHead {
    if (!this.head) throw new InvalidArgumentError('this', 'a live run', 'a disposed run');
    return this.head;
  }

  /**
   * Scores every item (column 0 = padding) for each history: float32 [B, numItems + 1] into `scores`.
   * The histories run in groups of similar length; `oneBatch`: as one batch padded to the longest (the
   * benchmarks' baseline; equal up to float rounding).
   */
  async scoreInto(batch: HistoryBatch, scores: Float32Array, options: { oneBatch?: boolean } = {}): Promise<void> {
    const head = this.native();
    await callNative(() => head.score({ ...batch, ...this.promptArrays(), scores, oneBatch: options.oneBatch === true }), new Error().stack);
  }

  /** Top-k items per history (the history's items excluded when asked): ids and scores [B, k]. */
  async topK(batch: HistoryBatch, k: number, excludeHistory: boolean): Promise<{ ids: Int32Array; scores: Float32Array }> {
    const users = batch.offsets.length - 1;
    const kk = Math.min(k, this.manifest.numItems);
    const ids = new Int32Array(users * kk), values = new Float32Array(users * kk);
    const head = this.native();
    await callNative(() => head.topK({ ...batch, ...this.promptArrays(), k: kk, excludeHistory, ids, values }), new Error().stack);
    return { ids, scores: values };
  }

  /** A head tensor for reports: item inputs / target items / item vectors [N, H], fusion weights [N, 1 + M], or a modality's code tables [L, K, H]. */
  async tensor(what: 'itemInputs' | 'targetItems' | 'itemVectors' | 'fusionWeights' | 'codes', modality = 0): Promise<Float32Array> {
    const head = this.native();
    return callNative(() => head.tensor(what, modality), new Error().stack);
  }

  /**
   * Test-only: the head's chunked cross-entropy of h [B, H], ∂loss/∂h and, given the head's tensors by
   * name (sizes), ∂loss/∂(each head parameter) by name; reference: the head's plain loss (the oracle).
   */
  async _loss(
    h: Float32Array,
    targets: Int32Array,
    chunk: number,
    headTensors?: ReadonlyMap<string, { data: Float32Array }>,
    reference = false,
  ): Promise<{ loss: number; gradH: Float32Array; gradHead?: Map<string, Float32Array> }> {
    const gradH = new Float32Array(h.length);
    const head = this.native();
    const names = headTensors ? head.parameterNames() : [];
    const sizes = names.map((name) => {
      const t = headTensors?.get(name);
      if (!t) throw new InvalidArgumentError('headTensors', `a map holding ${name}`, `one without it`);
      return t.data.length;
    });
    const gradHead = headTensors ? new Float32Array(sizes.reduce((a, b) => a + b, 0)) : undefined;
    const loss = await callNative(() => head._loss({ h, targets, chunk, gradH, reference, ...(gradHead ? { gradHead } : {}) }), new Error().stack);
    if (!gradHead) return { loss, gradH };
    const byName = new Map<string, Float32Array>();
    let at = 0;
    names.forEach((name, i) => {
      byName.set(name, gradHead.subarray(at, at + sizes[i]!));
      at += sizes[i]!;
    });
    return { loss, gradH, gradHead: byName };
  }

  /**
   * Fine-tunes the adapters and the head on every training sample (official protocol: each prefix of
   * items[:-2], the last maxTargetsPerUser per user, histories of at most maxHistory items), validating
   * every validateEvery steps; checkpoints to DIR/checkpoint.pt (resume continues exactly).
   */
  async train(options: {
    resume?: boolean;
    signal?: AbortSignal;
    onProgress?: (step: TrainStep) => void;
    validate?: (run: MmesidRun, step: number) => Promise<ValidationPoint>;
  } = {}): Promise<NonNullable<RunManifest['training']>> {
    const c = this.config;
    const samples = trainingSamples(this.sequences, { maxHistory: c.maxHistory, maxTargetsPerUser: c.maxTargetsPerUser });
    const histories: Int32Array[] = [];
    for (let i = 0; i < samples.count; i++) histories.push(trainingHistory(this.sequences, samples, i));
    const batch = historyBatch(histories);
    const perStep = c.train.microBatch * c.train.accumulationSteps;
    const steps = c.train.steps > 0 ? c.train.steps : Math.max(1, Math.ceil((c.train.epochs * samples.count) / perStep));
    fs.mkdirSync(this.dir, { recursive: true });
    const loop = resolveLoopOptions({
      steps,
      lr: c.train.lr,
      weightDecay: c.train.weightDecay,
      schedule: c.train.schedule,
      ...(c.train.warmupSteps === null ? {} : { warmupSteps: c.train.warmupSteps }),
      accumulationSteps: c.train.accumulationSteps,
      maxGradNorm: c.train.maxGradNorm,
      seed: c.train.seed,
      checkpoint: path.join(this.dir, 'checkpoint.pt'),
      checkpointEvery: c.train.checkpointEvery,
      resume: options.resume === true,
    });
    const { checkpointPath: _p, resume: _r, checkpointEvery: _e, ...identity } = loop;
    const fingerprint = runFingerprint({ trainer: 'mmesid', config: { ...c, out: undefined, train: { ...c.train, checkpointEvery: undefined, validateEvery: undefined, validateUsers: undefined } }, identity, prompt: this.manifest.prompt, fingerprints: this.manifest.fingerprints }, [batch.offsets, batch.items, samples.targets]);
    const { prefix, suffix } = this.promptArrays();
    const started = process.hrtime.bigint();
    const losses: number[] = [];
    const validation: ValidationPoint[] = [];
    let resumedFrom = -1;
    let done = 0;
    const head = this.native();
    const every = c.train.validateEvery > 0 ? c.train.validateEvery : steps;
    let resume = options.resume === true;
    while (done < steps) {
      const stopAt = Math.min(steps, (Math.floor(done / every) + 1) * every);
      const result: TrainResult = await runNativeTraining<TrainResult, TrainStep>(
        'finetune',
        (onEvent) => head.train({ ...loop, resume, stopAt, offsets: batch.offsets, items: batch.items, targets: samples.targets, prefix, suffix, microBatch: c.train.microBatch, gradientCheckpointing: c.train.gradientCheckpointing, fingerprint }, onEvent),
        options.onProgress,
        options.signal,
        new Error().stack,
      );
      if (resumedFrom < 0) resumedFrom = result.resumedFrom;
      losses.push(...result.losses);
      done = result.steps;
      resume = true;
      if (options.validate && (done % every === 0 || done === steps)) validation.push(await options.validate(this, done));
    }
    return { steps, resumedFrom: Math.max(0, resumedFrom), seconds: Number(process.hrtime.bigint() - started) / 1e9, samples: samples.count, losses, validation };
  }

  /** Writes adapter/, head.safetensors and run.json (with `training` when given) to the run directory. */
  async save(training?: RunManifest['training']): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    await this.llm.saveAdapter(path.join(this.dir, 'adapter'));
    const head = this.native();
    await callNative(() => head.save(path.join(this.dir, 'head.safetensors')), new Error().stack);
    if (training) this.manifest.training = training;
    await writeJsonAtomic(path.join(this.dir, 'run.json'), this.manifest);
  }

  /** Frees the head and the LLM. Idempotent. */
  async dispose(): Promise<void> {
    const head = this.head;
    this.head = undefined;
    if (head) await head.dispose();
    await this.llm.dispose();
  }
}
