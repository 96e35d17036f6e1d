/**
 * The LLM of MME-SID: a Hugging Face Llama checkpoint hosted in libtorch (native/torch/models/llama.h),
 * with LoRA adapters saved and loaded in the PEFT layout.
 *
 * - {@link LlamaModel.load}: `config.json` + `model.safetensors` or its shards; tensors memory-mapped and
 *   converted to the compute dtype (float32 on CPU; bf16/fp16 storage is for CUDA builds).
 * - {@link LlamaModel.forward}: token ids or input embeddings (MME-SID feeds item embeddings) with an
 *   optional padding mask (left padding) → last hidden states and optionally logits.
 * - {@link LlamaModel.generate}: greedy or sampled decoding with a key/value cache.
 * - {@link LlamaModel.applyLora} / {@link saveAdapter} / {@link loadAdapter} / {@link mergeLora}: LoRA
 *   on any of q/k/v/o/gate/up/down (fused LoRA kernel on CPU float32), in PEFT's format: a directory with
 *   `adapter_config.json` and `adapter_model.safetensors` whose keys are PEFT's
 *   (`base_model.model.model.layers.{i}.mlp.gate_proj.lora_A.weight`), so
 *   `PeftModel.from_pretrained(base, dir)` loads what mmesid trained.
 *
 * Calls on one model run one at a time, off the event loop (libuv pool); {@link dispose} frees the
 * native weights.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeLlm, NativeLlmForwardOptions, NativeLlmInfo } from '../../typings/native';
import { writeJsonAtomic } from '../data/atomicFile';
import { DataFormatError, InvalidArgumentError, callNative, describe, fromNative } from '../errors';
import { torch } from '../native';
import { isFloat32Array, isInt32Array, optionalBoolean, optionalInteger, optionalSignal, requireInteger, requireObject } from '../validate';
import { runNativeTraining } from '../nativeTraining';
import { type LlamaConfig, checkpointFiles, readLlamaConfig } from './checkpoint';
import { type TrainLoopOptions, type TrainResult, type TrainStep, resolveLoopOptions, runFingerprint } from './train';

/** The modules LoRA may target, PEFT's names. */
export const LORA_TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTargetModule = (typeof LORA_TARGET_MODULES)[number];

/** LoRA settings (PEFT's LoraConfig names in camelCase). Defaults: the paper's (r 8, α 16, dropout 0.05, gate/up/down). */
export interface LoraOptions {
  rank?: number;
  alpha?: number;
  dropout?: number;
  targetModules?: readonly LoraTargetModule[];
  /** Seeds the initialisation of A (B starts at zero). Default 0. */
  seed?: number;
}

/** The paper's LoRA settings. */
export const PAPER_LORA: Required<Omit<LoraOptions, 'seed'>> = { rank: 8, alpha: 16, dropout: 0.05, targetModules: ['gate_proj', 'up_proj', 'down_proj'] };

/** Options of {@link LlamaModel.load}. */
export interface LlamaLoadOptions {
  /** Compute dtype of the weights. Default 'float32' (the only one the CPU kernels take). */
  dtype?: 'float32' | 'bfloat16' | 'float16';
  /** libtorch device: 'cpu' (default), 'cuda', 'cuda:1'. */
  device?: string;
  /** Intra-op threads for this model's calls; default all cores. */
  threads?: number;
}

/**
 * Inputs of {@link LlamaModel.forward}, row-major: exactly one of `inputIds` (int32 [batch, length], ids in
 * [0, vocab)) and `inputsEmbeds` (float32 [batch, length, hidden]); `attentionMask` int32 [batch, length]
 * (1 = token, 0 = padding, any position: the paper's collator pads on the left); `positionIds` int32
 * [batch, length] (default 0..length−1 in every row, what HF's forward uses); `logits`: also return the
 * logits [batch, length, vocab] (default false).
 */
export type LlamaForwardInput = Pick<NativeLlmForwardOptions, 'batch' | 'length' | 'inputIds' | 'inputsEmbeds' | 'attentionMask' | 'positionIds'> & { logits?: boolean };

/** Outputs of {@link LlamaModel.forward}. */
export interface LlamaForwardOutput {
  /** float32 [batch, length, hidden]: the last hidden states (after the final norm). */
  hidden: Float32Array;
  /** float32 [batch, length, vocab] when asked for. */
  logits?: Float32Array;
}

/** Options of {@link LlamaModel.generate}. */
export interface GenerateOptions {
  /** Default 32. */
  maxNewTokens?: number;
  /** Argmax decoding (ties → lowest id). Default true; false samples. */
  greedy?: boolean;
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  /** Sampling seed. Default 0. */
  seed?: number;
  /** Ids that end generation (included in the output). Default: config.json's eos_token_id; [] never stops early. */
  stopIds?: readonly number[];
  /** Aborting returns the tokens generated so far. */
  signal?: AbortSignal;
}

/** Options of {@link LlamaModel.trainLora}: the step loop's plus the language-model batching. */
export interface LoraTrainOptions extends TrainLoopOptions {
  /** Tokens per sequence at most (longer ones are truncated). Default 512. */
  maxLength?: number;
  /** Sequences per micro-batch. Default 4 (with accumulationSteps 4: the paper's global batch 16). */
  microBatch?: number;
  /** Recompute each layer in the backward instead of keeping its activations. Default false. */
  gradientCheckpointing?: boolean;
  /** CUDA only: run the forward under autocast. Default 'none'. */
  autocast?: 'none' | 'bfloat16' | 'float16';
  /** Called after every optimizer step. A throw cancels the run and becomes its error. */
  onProgress?: (step: TrainStep) => void;
  /** Aborting cancels (checkpointing the last completed step when a checkpoint is set) → CancelledError. */
  signal?: AbortSignal;
}

/** The PEFT adapter_config.json mmesid writes and reads. */
export interface PeftAdapterConfig {
  peft_type: 'LORA';
  task_type: string | null;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[];
  bias: 'none';
  fan_in_fan_out: boolean;
  inference_mode: boolean;
  init_lora_weights: boolean;
  use_rslora: boolean;
  use_dora: boolean;
  modules_to_save: string[] | null;
  layers_to_transform: number[] | null;
  layers_pattern: string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  base_model_name_or_path: string | null;
  revision: string | null;
}

const ADAPTER_CONFIG = 'adapter_config.json';
const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

function requireLora(options: LoraOptions | undefined): Required<LoraOptions> {
  const o = requireObject(options ?? {}, 'options');
  const rank = optionalInteger(o.rank, 'options.rank', PAPER_LORA.rank, 1, 1 << 20);
  const alpha = o.alpha ?? PAPER_LORA.alpha;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) throw new InvalidArgumentError('options.alpha', 'a positive number', describe(alpha));
  const dropout = o.dropout ?? PAPER_LORA.dropout;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) throw new InvalidArgumentError('options.dropout', 'a number in [0, 1)', describe(dropout));
  const targets = o.targetModules ?? PAPER_LORA.targetModules;
  if (!Array.isArray(targets) || targets.length === 0) throw new InvalidArgumentError('options.targetModules', `a non-empty list of ${LORA_TARGET_MODULES.join(', ')}`, describe(targets));
  for (const t of targets) {
    if (!(LORA_TARGET_MODULES as readonly unknown[]).includes(t)) {
      throw new InvalidArgumentError('options.targetModules', `a list of ${LORA_TARGET_MODULES.join(', ')}`, describe(t));
    }
  }
  if (new Set(targets).size !== targets.length) throw new InvalidArgumentError('options.targetModules', 'distinct module names', JSON.stringify(targets));
  const seed = optionalInteger(o.seed, 'options.seed', 0, 0);
  return { rank, alpha, dropout, targetModules: targets as LoraTargetModule[], seed };
}

function readAdapterConfig(file: string): PeftAdapterConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DataFormatError(file, 0, 'the adapter configuration is missing');
    throw new DataFormatError(file, 0, `the adapter configuration is not valid JSON (${(error as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DataFormatError(file, 0, 'expected a JSON object');
  const c = raw as Record<string, unknown>;
  const bad = (field: string, expected: string): never => {
    throw new DataFormatError(file, 0, `expected ${expected} for "${field}" but found ${describe(c[field])}`);
  };
  if (c.peft_type !== 'LORA') bad('peft_type', '"LORA"');
  if (typeof c.r !== 'number' || !Number.isInteger(c.r) || c.r < 1) bad('r', 'a positive integer');
  if (typeof c.lora_alpha !== 'number' || !(c.lora_alpha > 0)) bad('lora_alpha', 'a positive number');
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) bad('lora_dropout', 'a number in [0, 1)');
  const targets = typeof c.target_modules === 'string' ? [c.target_modules] : c.target_modules;
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => (LORA_TARGET_MODULES as readonly unknown[]).includes(t))) {
    bad('target_modules', `a list of ${LORA_TARGET_MODULES.join(', ')} (regular expressions are not supported)`);
  }
  if ((c.bias ?? 'none') !== 'none') bad('bias', '"none" (trained biases are not supported)');
  if (c.use_rslora === true) bad('use_rslora', 'false (rank-stabilised scaling is not supported)');
  if (c.use_dora === true) bad('use_dora', 'false (DoRA is not supported)');
  if (c.fan_in_fan_out === true) bad('fan_in_fan_out', 'false');
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) bad('layers_to_transform', 'null (every layer)');
  for (const field of ['rank_pattern', 'alpha_pattern']) {
    const v = c[field];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Object.keys(v).length > 0)) bad(field, 'an empty object');
  }
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) bad('modules_to_save', 'null (only LoRA tensors are supported)');
  return c as unknown as PeftAdapterConfig;
}

/** A loaded Llama checkpoint. */
export class LlamaModel {
  private handle: NativeLlm | undefined;

  private constructor(
    /** The checkpoint directory. */
    readonly dir: string,
    /** Its validated config.json. */
    readonly config: LlamaConfig,
    handle: NativeLlm,
  ) {
    this.handle = handle;
  }

  /**
   * Loads a Hugging Face Llama checkpoint directory.
   * @throws InvalidArgumentError for bad options; DataFormatError for a missing/malformed config.json,
   *         index or shard, and for tensors that are missing, unexpected or mis-shaped (all listed);
   *         NativeUnavailableError without mmesid_torch.node.
   */
  static async load(dir: string, options: LlamaLoadOptions = {}): Promise<LlamaModel> {
    const o = requireObject(options, 'options');
    const dtype = o.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'bfloat16' && dtype !== 'float16') {
      throw new InvalidArgumentError('options.dtype', '"float32", "bfloat16" or "float16"', describe(dtype));
    }
    const device = o.device ?? 'cpu';
    if (typeof device !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(device)) throw new InvalidArgumentError('options.device', '"cpu", "cuda" or "cuda:N"', describe(device));
    const threads = optionalInteger(o.threads, 'options.threads', 0, 0, 1024);
    const config = readLlamaConfig(dir);
    const files = checkpointFiles(dir);
    const stack = new Error().stack;
    const handle = await callNative(() => torch().llmLoad({ files, config, dtype, device, threads }), stack);
    return new LlamaModel(dir, config, handle);
  }

  private native(what: string): NativeLlm {
    if (!this.handle) throw new InvalidArgumentError('this', `a live model for ${what}`, 'a disposed model');
    return this.handle;
  }

  /** @internal The native handle, for the stages built on the model (the MME-SID head). */
  _native(): NativeLlm {
    return this.native('_native');
  }

  /** dtype, device, parameter counts and the adapters' configuration. */
  info(): NativeLlmInfo {
    return this.native('info').info();
  }

  /**
   * Last hidden states (and optionally logits) of a batch.
   * @throws InvalidArgumentError for inconsistent shapes, ids outside the vocabulary, or both/neither inputs.
   */
  async forward(input: LlamaForwardInput): Promise<LlamaForwardOutput> {
    const o = requireObject(input, 'input');
    const batch = requireInteger(o.batch, 'input.batch');
    const length = requireInteger(o.length, 'input.length');
    const cells = batch * length;
    const h = this.config.hiddenSize;
    const hasIds = o.inputIds !== undefined, hasEmbeds = o.inputsEmbeds !== undefined;
    if (hasIds === hasEmbeds) throw new InvalidArgumentError('input', 'exactly one of inputIds and inputsEmbeds', hasIds ? 'both' : 'neither');
    if (hasIds) {
      if (!isInt32Array(o.inputIds) || o.inputIds.length !== cells) throw new InvalidArgumentError('input.inputIds', `an Int32Array of batch × length = ${cells} ids`, describe(o.inputIds));
      const v = this.config.vocabSize;
      const bad = o.inputIds.findIndex((id) => id < 0 || id >= v);
      if (bad >= 0) throw new InvalidArgumentError('input.inputIds', `token ids in [0, ${v})`, `${o.inputIds[bad]} at index ${bad}`);
    } else {
      if (!isFloat32Array(o.inputsEmbeds) || o.inputsEmbeds.length !== cells * h) {
        throw new InvalidArgumentError('input.inputsEmbeds', `a Float32Array of batch × length × hidden = ${cells * h} values`, describe(o.inputsEmbeds));
      }
      const bad = o.inputsEmbeds.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new InvalidArgumentError('input.inputsEmbeds', 'finite values', `${o.inputsEmbeds[bad]} at row ${Math.floor(bad / h)}`);
    }
    const mask = o.attentionMask, positions = o.positionIds;
    for (const [field, v] of [['attentionMask', mask], ['positionIds', positions]] as const) {
      if (v !== undefined && (!isInt32Array(v) || v.length !== cells)) throw new InvalidArgumentError(`input.${field}`, `an Int32Array of batch × length = ${cells}`, describe(v));
    }
    const attentionMask = mask as Int32Array | undefined, positionIds = positions as Int32Array | undefined;
    if (attentionMask) {
      const bad = attentionMask.findIndex((m) => m !== 0 && m !== 1);
      if (bad >= 0) throw new InvalidArgumentError('input.attentionMask', '0 or 1 values', `${attentionMask[bad]} at index ${bad}`);
    }
    if (positionIds) {
      const bad = positionIds.findIndex((p) => p < 0);
      if (bad >= 0) throw new InvalidArgumentError('input.positionIds', 'non-negative positions', `${positionIds[bad]} at index ${bad}`);
    }
    const wantLogits = optionalBoolean(o.logits, 'input.logits', false);
    const hidden = new Float32Array(cells * h);
    const logits = wantLogits ? new Float32Array(cells * this.config.vocabSize) : undefined;
    const handle = this.native('forward');
    const stack = new Error().stack;
    await callNative(
        () =>
          handle.forward({
            batch,
            length,
            inputIds: o.inputIds as Int32Array | undefined,
            inputsEmbeds: o.inputsEmbeds as Float32Array | undefined,
            attentionMask,
            positionIds,
            hidden,
            logits,
          }),
        stack,
    );
    return logits ? { hidden, logits } : { hidden };
  }

  /**
   * Continues `promptIds`; returns the new ids only.
   * @throws InvalidArgumentError for an empty prompt, ids outside the vocabulary or bad options.
   */
  async generate(promptIds: ArrayLike<number>, options: GenerateOptions = {}): Promise<Int32Array> {
    if (promptIds === null || typeof promptIds !== 'object' || typeof promptIds.length !== 'number' || promptIds.length === 0) {
      throw new InvalidArgumentError('promptIds', 'a non-empty list of token ids', describe(promptIds));
    }
    const v = this.config.vocabSize;
    const prompt = Int32Array.from(promptIds);
    for (let i = 0; i < prompt.length; i++) {
      if (!Number.isInteger(promptIds[i]) || prompt[i]! < 0 || prompt[i]! >= v) throw new InvalidArgumentError('promptIds', `token ids in [0, ${v})`, `${describe(promptIds[i])} at index ${i}`);
    }
    const o = requireObject(options, 'options');
    const maxNewTokens = optionalInteger(o.maxNewTokens, 'options.maxNewTokens', 32, 0);
    const greedy = optionalBoolean(o.greedy, 'options.greedy', true);
    const temperature = o.temperature ?? 1;
    if (typeof temperature !== 'number' || !(temperature > 0) || !Number.isFinite(temperature)) throw new InvalidArgumentError('options.temperature', 'a positive number', describe(temperature));
    const topK = optionalInteger(o.topK, 'options.topK', 0, 0);
    const topP = o.topP ?? 1;
    if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new InvalidArgumentError('options.topP', 'a number in (0, 1]', describe(topP));
    const seed = optionalInteger(o.seed, 'options.seed', 0, 0);
    const stops: unknown = o.stopIds ?? this.config.eosTokenIds;
    if (!Array.isArray(stops) || !stops.every((s) => Number.isInteger(s) && (s as number) >= 0)) throw new InvalidArgumentError('options.stopIds', 'a list of token ids', describe(stops));
    const signal = optionalSignal(o.signal, 'options.signal');
    const handle = this.native('generate');
    const stack = new Error().stack;
    const onAbort = (): void => handle.cancelGeneration();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) return new Int32Array(0);
    try {
      return await callNative(() => handle.generate({ promptIds: prompt, maxNewTokens, greedy, temperature, topK, topP, seed, stopIds: Int32Array.from(stops) }), stack);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Adds fresh LoRA adapters (A ~ U(±1/√in) seeded, B = 0: the model's outputs do not change until trained),
   * replacing any present. The base weights stay frozen.
   * @throws InvalidArgumentError for bad options; NativeError while another call runs on the model.
   */
  applyLora(options: LoraOptions = {}): void {
    const lora = requireLora(options);
    const handle = this.native('applyLora');
    try {
      handle.applyLora({ rank: lora.rank, alpha: lora.alpha, dropout: lora.dropout, targetModules: [...lora.targetModules], seed: lora.seed });
    } catch (error) {
      throw fromNative(error, new Error().stack);
    }
  }

  /** The adapters' tensors under PEFT's names, with shapes, in layer and module order. */
  loraTensors(): { name: string; shape: number[] }[] {
    return this.native('loraTensors').loraTensors();
  }

  /**
   * Writes the adapters as a PEFT adapter directory: `adapter_config.json` and `adapter_model.safetensors`
   * (float32, PEFT's key names), each written atomically. `dir` is created when missing.
   * @throws InvalidArgumentError without adapters.
   */
  async saveAdapter(dir: string): Promise<void> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('dir', 'a directory path', describe(dir));
    const handle = this.native('saveAdapter');
    const lora = handle.info().lora;
    if (!lora) throw new InvalidArgumentError('this', 'a model with LoRA adapters (applyLora or loadAdapter first)', 'a model without adapters');
    await fs.promises.mkdir(dir, { recursive: true });
    const stack = new Error().stack;
    await callNative(() => handle.saveAdapter(path.join(dir, ADAPTER_WEIGHTS)), stack);
    const config: PeftAdapterConfig = {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: lora.rank,
      lora_alpha: lora.alpha,
      lora_dropout: lora.dropout,
      target_modules: lora.targetModules,
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      use_rslora: false,
      use_dora: false,
      modules_to_save: null,
      layers_to_transform: null,
      layers_pattern: null,
      rank_pattern: {},
      alpha_pattern: {},
      base_model_name_or_path: path.resolve(this.dir),
      revision: null,
    };
    await writeJsonAtomic(path.join(dir, ADAPTER_CONFIG), config);
  }

  /**
   * Loads a PEFT LoRA adapter directory (written by mmesid or by Python PEFT's `save_pretrained`),
   * replacing any adapters present.
   * @throws DataFormatError for a missing/unsupported adapter_config.json or tensors that do not match it.
   */
  async loadAdapter(dir: string): Promise<void> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('dir', 'a PEFT adapter directory', describe(dir));
    const config = readAdapterConfig(path.join(dir, ADAPTER_CONFIG));
    const weights = path.join(dir, ADAPTER_WEIGHTS);
    if (!fs.existsSync(weights)) throw new DataFormatError(weights, 0, 'the adapter weights are missing (only safetensors adapters are supported)');
    const targets = typeof config.target_modules === 'string' ? [config.target_modules] : config.target_modules;
    this.applyLora({ rank: config.r, alpha: config.lora_alpha, dropout: config.lora_dropout ?? 0, targetModules: targets as LoraTargetModule[] });
    const handle = this.native('loadAdapter');
    const stack = new Error().stack;
    try {
      await callNative(() => handle.loadAdapter(weights), stack);
    } catch (error) {
      handle.dropLora();
      throw error;
    }
  }

  /** Folds the adapters into the base weights (W += α/r · B·A) and removes them. */
  mergeLora(): void {
    try {
      this.native('mergeLora').mergeLora();
    } catch (error) {
      throw fromNative(error, new Error().stack);
    }
  }

  /** Removes the adapters without merging. */
  dropLora(): void {
    try {
      this.native('dropLora').dropLora();
    } catch (error) {
      throw fromNative(error, new Error().stack);
    }
  }

  /**
   * Fine-tunes the LoRA adapters (applyLora or loadAdapter first) as a causal language model on
   * `sequences` (token ids, each ≥ 2 tokens): next-token cross-entropy over the real tokens, batches
   * shuffled per epoch from the seed. Runs on a native thread of its own; other calls on the model wait.
   * @throws InvalidArgumentError for bad data/options or a model without adapters; CancelledError;
   *         NativeError for a non-finite loss or gradient, or a checkpoint of another run.
   */
  async trainLora(sequences: readonly (readonly number[] | Int32Array)[], options: LoraTrainOptions): Promise<TrainResult> {
    const handle = this.native('trainLora');
    const lora = handle.info().lora;
    if (!lora) throw new InvalidArgumentError('this', 'a model with LoRA adapters (applyLora or loadAdapter first)', 'a model without adapters');
    if (!Array.isArray(sequences) || sequences.length === 0) throw new InvalidArgumentError('sequences', 'a non-empty list of token-id sequences', describe(sequences));
    const list: readonly (ArrayLike<number> | undefined)[] = sequences;
    const offsets = new Float64Array(list.length + 1);
    let total = 0;
    list.forEach((seq, i) => {
      if (seq === null || typeof seq !== 'object' || typeof seq.length !== 'number' || seq.length < 2) {
        throw new InvalidArgumentError(`sequences[${i}]`, 'a list of at least 2 token ids', describe(seq));
      }
      total += seq.length;
      offsets[i + 1] = total;
    });
    const tokens = new Int32Array(total);
    const v = this.config.vocabSize;
    list.forEach((seq, i) => {
      if (!seq) return;
      for (let t = 0; t < seq.length; t++) {
        const id = seq[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= v) throw new InvalidArgumentError(`sequences[${i}][${t}]`, `a token id in [0, ${v})`, describe(id));
      }
      tokens.set(seq, offsets[i]);
    });
    const o = requireObject(options, 'options');
    const loop = resolveLoopOptions(options);
    const maxLength = optionalInteger(o.maxLength, 'options.maxLength', 512, 2);
    const microBatch = optionalInteger(o.microBatch, 'options.microBatch', 4, 1);
    const gradientCheckpointing = optionalBoolean(o.gradientCheckpointing, 'options.gradientCheckpointing', false);
    const autocast = o.autocast ?? 'none';
    if (autocast !== 'none' && autocast !== 'bfloat16' && autocast !== 'float16') throw new InvalidArgumentError('options.autocast', '"none", "bfloat16" or "float16"', describe(autocast));
    if (autocast !== 'none' && !handle.info().device.startsWith('cuda')) throw new InvalidArgumentError('options.autocast', '"none" on a CPU model (autocast is for CUDA)', describe(autocast));
    const onProgress = o.onProgress;
    if (onProgress !== undefined && typeof onProgress !== 'function') throw new InvalidArgumentError('options.onProgress', 'a function', describe(onProgress));
    const signal = optionalSignal(o.signal, 'options.signal');
    const { checkpointPath: _path, resume: _resume, checkpointEvery: _every, ...identity } = loop;
    const fingerprint = runFingerprint({ trainer: 'lm-lora', config: this.config, lora, identity, maxLength, microBatch, gradientCheckpointing, autocast }, [offsets, tokens]);
    const stack = new Error().stack;
    return runNativeTraining<TrainResult, TrainStep>(
      'trainLora',
      (onEvent) => handle.trainLora({ ...loop, offsets, tokens, maxLength, microBatch, gradientCheckpointing, autocast, fingerprint }, onEvent),
      onProgress as ((step: TrainStep) => void) | undefined,
      signal,
      stack,
    );
  }

  /** Test-only: one next-token cross-entropy backward; which tensors received gradients. */
  async _gradientProbe(inputIds: Int32Array, batch: number, length: number, training = false): Promise<{ loss: number; loraGradNorms: Float64Array; baseGradients: number }> {
    const handle = this.native('_gradientProbe');
    const stack = new Error().stack;
    return callNative(() => handle._gradientProbe({ inputIds, batch, length, training }), stack);
  }

  /** Frees the native weights once running calls finished; later calls throw. Idempotent. */
  async dispose(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle) await handle.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
