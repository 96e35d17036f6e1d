/**
 * Hugging Face Llama checkpoints as published: a directory with `config.json` and either
 * `model.safetensors` or shards listed by `model.safetensors.index.json` (`{ "weight_map": { name: file } }`).
 *
 * {@link readLlamaConfig} validates the architecture fields once, here, and returns the fully-defaulted
 * plain object the native loader reads; {@link checkpointFiles} resolves the weight files. Reading the
 * tensors (memory-mapped, converted to the compute dtype, checked against the config's tensor table)
 * happens natively in {@link LlamaModel.load}.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeLlamaConfig } from '../../typings/native';
import { writeJsonAtomic } from '../data/atomicFile';
import { DataFormatError, InvalidArgumentError, describe } from '../errors';
import { torch } from '../native';

/** `rope_scaling` of config.json; `type: 'none'` when absent. */
export interface RopeScalingConfig {
  type: 'none' | 'llama3' | 'linear';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * The architecture of a Llama checkpoint: config.json's fields camelCased with defaults filled
 * (num_key_value_heads = num_attention_heads, head_dim = hidden_size / num_attention_heads, …; field
 * docs in typings/native.d.ts NativeLlamaConfig), plus the special token ids.
 */
export interface LlamaConfig extends NativeLlamaConfig {
  ropeScaling: RopeScalingConfig;
  /** From config.json (`bos_token_id`, `eos_token_id`: a number or a list); empty when absent. */
  bosTokenIds: number[];
  eosTokenIds: number[];
}

function configError(file: string, field: string, expected: string, value: unknown): DataFormatError {
  return new DataFormatError(file, 0, `expected ${expected} for "${field}" but found ${describe(value)}`);
}

function positiveInt(raw: Record<string, unknown>, field: string, file: string, fallback?: number): number {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw configError(file, field, 'a positive integer', value);
  return value;
}

function positiveNumber(raw: Record<string, unknown>, field: string, file: string, fallback?: number): number {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw configError(file, field, 'a positive number', value);
  return value;
}

function flag(raw: Record<string, unknown>, field: string, file: string, fallback: boolean): boolean {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'boolean') throw configError(file, field, 'a boolean', value);
  return value;
}

function tokenIds(raw: Record<string, unknown>, field: string, file: string): number[] {
  const value = raw[field];
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw configError(file, field, 'a token id or a list of them', value);
  }
  return list as number[];
}

function ropeScaling(raw: unknown, file: string): RopeScalingConfig {
  const none: RopeScalingConfig = { type: 'none', factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
  if (raw === undefined || raw === null) return none;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw configError(file, 'rope_scaling', 'an object or null', raw);
  const r = raw as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return none;
  if (type === 'linear') return { ...none, type: 'linear', factor: positiveNumber(r, 'factor', file) };
  if (type !== 'llama3') throw configError(file, 'rope_scaling.rope_type', '"llama3", "linear" or "default" (others are not supported)', type);
  const scaling: RopeScalingConfig = {
    type: 'llama3',
    factor: positiveNumber(r, 'factor', file),
    lowFreqFactor: positiveNumber(r, 'low_freq_factor', file),
    highFreqFactor: positiveNumber(r, 'high_freq_factor', file),
    originalMaxPositionEmbeddings: positiveInt(r, 'original_max_position_embeddings', file),
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
    throw configError(file, 'rope_scaling.high_freq_factor', `a number > low_freq_factor (${scaling.lowFreqFactor})`, scaling.highFreqFactor);
  }
  return scaling;
}

function readJson(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DataFormatError(file, 0, `${what} is missing`);
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new DataFormatError(file, 0, `${what} is not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new DataFormatError(file, 0, `${what} is not a JSON object`);
  return parsed as Record<string, unknown>;
}

/**
 * Reads and validates `<dir>/config.json` of a Llama checkpoint.
 * @throws InvalidArgumentError when `dir` is not a string;
 *         DataFormatError naming the file and field for a missing file, bad JSON, a model_type other than
 *         llama, or a field of the wrong type / an inconsistent architecture.
 */
export function readLlamaConfig(dir: string): LlamaConfig {
  if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('dir', 'a checkpoint directory', describe(dir));
  const file = path.join(dir, 'config.json');
  const raw = readJson(file, 'the checkpoint configuration');
  if (raw.model_type !== undefined && raw.model_type !== 'llama') {
    throw configError(file, 'model_type', '"llama"', raw.model_type);
  }
  const hiddenSize = positiveInt(raw, 'hidden_size', file);
  const numAttentionHeads = positiveInt(raw, 'num_attention_heads', file);
  const numKeyValueHeads = positiveInt(raw, 'num_key_value_heads', file, numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw configError(file, 'num_key_value_heads', `a divisor of num_attention_heads (${numAttentionHeads})`, numKeyValueHeads);
  }
  const defaultHeadDim = hiddenSize / numAttentionHeads;
  if (raw.head_dim === undefined && !Number.isInteger(defaultHeadDim)) {
    throw configError(file, 'hidden_size', `a multiple of num_attention_heads (${numAttentionHeads})`, hiddenSize);
  }
  const headDim = positiveInt(raw, 'head_dim', file, defaultHeadDim);
  if (headDim % 2 !== 0) throw configError(file, 'head_dim', 'an even number (rotary embeddings rotate pairs)', headDim);
  if (raw.hidden_act !== undefined && raw.hidden_act !== 'silu') throw configError(file, 'hidden_act', '"silu"', raw.hidden_act);
  return {
    hiddenSize,
    intermediateSize: positiveInt(raw, 'intermediate_size', file),
    numHiddenLayers: positiveInt(raw, 'num_hidden_layers', file),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    vocabSize: positiveInt(raw, 'vocab_size', file),
    maxPositionEmbeddings: positiveInt(raw, 'max_position_embeddings', file, 2048),
    rmsNormEps: positiveNumber(raw, 'rms_norm_eps', file, 1e-6),
    ropeTheta: positiveNumber(raw, 'rope_theta', file, 10000),
    ropeScaling: ropeScaling(raw.rope_scaling, file),
    tieWordEmbeddings: flag(raw, 'tie_word_embeddings', file, false),
    attentionBias: flag(raw, 'attention_bias', file, false),
    mlpBias: flag(raw, 'mlp_bias', file, false),
    bosTokenIds: tokenIds(raw, 'bos_token_id', file),
    eosTokenIds: tokenIds(raw, 'eos_token_id', file),
  };
}

/**
 * The weight files of a checkpoint directory: `[model.safetensors]`, or the distinct shard files of
 * `model.safetensors.index.json` in first-mention order (each must exist beside it).
 * @throws DataFormatError when neither file exists, the index is malformed, or a shard is missing.
 */
export function checkpointFiles(dir: string): string[] {
  const single = path.join(dir, 'model.safetensors');
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexFile)) {
    const index = readJson(indexFile, 'the shard index');
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new DataFormatError(indexFile, 0, 'expected an object for "weight_map"');
    const files: string[] = [];
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.length === 0 || path.basename(shard) !== shard) {
        throw new DataFormatError(indexFile, 0, `weight_map["${name}"] must be a file name beside the index, found ${describe(shard)}`);
      }
      const full = path.join(dir, shard);
      if (!files.includes(full)) files.push(full);
    }
    if (files.length === 0) throw new DataFormatError(indexFile, 0, 'weight_map lists no tensors');
    for (const f of files) if (!fs.existsSync(f)) throw new DataFormatError(f, 0, `the shard named by ${path.basename(indexFile)} is missing`);
    return files;
  }
  if (fs.existsSync(single)) return [single];
  throw new DataFormatError(single, 0, 'the checkpoint has neither model.safetensors nor model.safetensors.index.json (only safetensors checkpoints are supported)');
}

/** The architecture of {@link writeRandomLlama}: config.json's main fields. */
export interface RandomLlamaOptions {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Default numAttentionHeads. */
  numKeyValueHeads?: number;
  vocabSize: number;
  /** Default 2048. */
  maxPositionEmbeddings?: number;
  /** Default 1e-5. */
  rmsNormEps?: number;
  /** Default 10000. */
  ropeTheta?: number;
  /** Default true. */
  tieWordEmbeddings?: boolean;
  /** Seeds the weights. Default 0. */
  seed?: number;
}

/**
 * Writes a random-weight Hugging Face Llama checkpoint (config.json + model.safetensors; weights N(0, 0.02²),
 * norm gains 1) to `dir`: a small LLM for demos and tests when no trained checkpoint is at hand.
 * @returns the config as read back by {@link readLlamaConfig}.
 * @throws InvalidArgumentError / DataFormatError for an inconsistent architecture.
 */
export async function writeRandomLlama(dir: string, o: RandomLlamaOptions): Promise<LlamaConfig> {
  if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('dir', 'a directory path', describe(dir));
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: o.hiddenSize,
    intermediate_size: o.intermediateSize,
    num_hidden_layers: o.numHiddenLayers,
    num_attention_heads: o.numAttentionHeads,
    num_key_value_heads: o.numKeyValueHeads ?? o.numAttentionHeads,
    vocab_size: o.vocabSize,
    max_position_embeddings: o.maxPositionEmbeddings ?? 2048,
    rms_norm_eps: o.rmsNormEps ?? 1e-5,
    rope_theta: o.ropeTheta ?? 10000,
    hidden_act: 'silu',
    tie_word_embeddings: o.tieWordEmbeddings ?? true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  const file = path.join(dir, 'config.json');
  await writeJsonAtomic(file, config);
  const parsed = readLlamaConfig(dir);
  await torch().llmWriteRandom({ config: parsed, seed: o.seed ?? 0, file: path.join(dir, 'model.safetensors') });
  return parsed;
}
