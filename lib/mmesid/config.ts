/**
 * The MME-SID fine-tuning configuration: one JSON file (paths relative to it) naming the base model, the
 * data, the tokenizer, the embedding tables, the variant, LoRA and the schedule. {@link readFinetuneConfig}
 * validates it once and returns the fully-defaulted, path-resolved config that the run records.
 *
 * ```json
 * {
 *   "model": "../shared/models/stories260K",
 *   "sequences": "../shared/data/beauty/sequences.txt",
 *   "tokenizer": "runs/tokenizer",
 *   "embeddings": { "collab": "../shared/data/beauty/sasrec_item_emb.npy", "text": "runs/text_emb.npy" },
 *   "variant": "mme-sid",
 *   "prompt": { "prefixIds": [1, 2], "suffixIds": [3] },
 *   "lora": { "rank": 8, "alpha": 16, "dropout": 0.05, "targetModules": ["gate_proj", "up_proj", "down_proj"] },
 *   "train": { "epochs": 1, "lr": 3e-4, "microBatch": 4, "accumulationSteps": 4, "validateEvery": 500 },
 *   "out": "runs/mmesid-beauty"
 * }
 * ```
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DataFormatError, describe } from '../errors';
import { LORA_TARGET_MODULES, type LoraTargetModule } from '../llm/model';
import { TOKENIZER_MODALITIES, type TokenizerModalityName } from '../tokenizer/service';

/** The harness's models: MME-SID, its ablations and the E4SRec / Concat baselines. */
export const MMESID_VARIANTS = ['mme-sid', 'mme-random', 'e4srec', 'concat', 'concat-mlp'] as const;
export type MmesidVariant = (typeof MMESID_VARIANTS)[number];

/** The resolved configuration (every default filled, every path absolute). */
export interface FinetuneConfig {
  /** The base model: a Hugging Face Llama directory. */
  model: string;
  /** The user → item sequences file. */
  sequences: string;
  /** The tokenizer directory (semantic IDs + codebooks); needed by mme-sid and mme-random. */
  tokenizer: string | null;
  /** Item embedding tables [items + 1, d] (.npy or .safetensors) per modality. */
  embeddings: Partial<Record<TokenizerModalityName, string>>;
  /** The modalities used, in collab, text, visual order. Default: those with a table. */
  modalities: TokenizerModalityName[];
  variant: MmesidVariant;
  /** Frequency-aware fusion of the four score terms (false: the target-item table alone). Default true. */
  fusion: boolean;
  /** Fusion temperature. Default 1e-3 (the official script's). */
  temperature: number;
  /** The prompt: a template (paper | official | text with {items}) tokenized with the model's tokenizer.json, or ids. */
  prompt: { template: string; prefixIds: number[] | null; suffixIds: number[] | null };
  lora: { rank: number; alpha: number; dropout: number; targetModules: LoraTargetModule[] };
  train: {
    /** Epochs over the training samples (used when steps is 0). Default 1. */
    epochs: number;
    /** Optimizer steps; 0 = from epochs. */
    steps: number;
    lr: number;
    weightDecay: number;
    schedule: 'constant' | 'linear' | 'cosine';
    /** Default min(100, steps / 10). */
    warmupSteps: number | null;
    microBatch: number;
    accumulationSteps: number;
    maxGradNorm: number;
    seed: number;
    /** Validate (HR/nDCG@10 on the validation split) every this many steps; 0 = only at the end. */
    validateEvery: number;
    /** Validation users at most (a seeded subsample when fewer than all; 0 = all). */
    validateUsers: number;
    gradientCheckpointing: boolean;
    /** Items per chunk of the chunked cross-entropy. */
    scoreChunk: number;
    checkpointEvery: number;
  };
  maxHistory: number;
  maxTargetsPerUser: number;
  device: string;
  threads: number;
  /** The run directory. */
  out: string;
}

type Raw = Record<string, unknown>;

function fail(file: string, field: string, expected: string, value: unknown): never {
  throw new DataFormatError(file, 0, `expected ${expected} for "${field}" but found ${describe(value)}`);
}

function object(raw: unknown, file: string, field: string): Raw {
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(file, field, 'an object', raw);
  return raw as Raw;
}

function num(raw: Raw, key: string, file: string, field: string, fallback: number, ok: (x: number) => boolean, expected: string): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(file, `${field}${key}`, expected, v);
  return v;
}

const int = (min: number) => (x: number) => Number.isInteger(x) && x >= min;

function bool(raw: Raw, key: string, file: string, field: string, fallback: boolean): boolean {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'boolean') fail(file, `${field}${key}`, 'a boolean', v);
  return v;
}

function ids(raw: unknown, file: string, field: string): number[] | null {
  if (raw === undefined || raw === null) return null;
  if (!Array.isArray(raw) || !raw.every((x) => Number.isInteger(x) && (x as number) >= 0)) fail(file, field, 'a list of token ids', raw);
  return raw as number[];
}

/**
 * Reads and validates a fine-tuning config.
 * @throws DataFormatError naming the file and the field.
 */
export function readFinetuneConfig(file: string): FinetuneConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DataFormatError(file, 0, 'the config file does not exist');
    throw new DataFormatError(file, 0, `not valid JSON (${(error as Error).message})`);
  }
  return resolveFinetuneConfig(object(raw, file, 'config'), file);
}

/** Validates a config object; relative paths are resolved against `file`'s directory. */
export function resolveFinetuneConfig(c: Raw, file: string): FinetuneConfig {
  const base = path.dirname(path.resolve(file));
  const filePath = (key: string, v: unknown, required: boolean): string | null => {
    if (v === undefined || v === null) {
      if (required) fail(file, key, 'a path', v);
      return null;
    }
    if (typeof v !== 'string' || v.length === 0) fail(file, key, 'a path', v);
    return path.resolve(base, v);
  };
  const embeddingsRaw = object(c.embeddings, file, 'embeddings');
  const embeddings: FinetuneConfig['embeddings'] = {};
  for (const [name, value] of Object.entries(embeddingsRaw)) {
    if (!(TOKENIZER_MODALITIES as readonly string[]).includes(name)) fail(file, `embeddings.${name}`, `a modality among ${TOKENIZER_MODALITIES.join(', ')}`, name);
    embeddings[name as TokenizerModalityName] = filePath(`embeddings.${name}`, value, true)!;
  }
  const modalitiesRaw = c.modalities ?? TOKENIZER_MODALITIES.filter((m) => embeddings[m] !== undefined);
  if (!Array.isArray(modalitiesRaw) || modalitiesRaw.length === 0) fail(file, 'modalities', 'a non-empty list of modalities with embedding tables', modalitiesRaw);
  for (const m of modalitiesRaw) {
    if (typeof m !== 'string' || embeddings[m as TokenizerModalityName] === undefined) fail(file, 'modalities', 'modalities that have a table in "embeddings"', m);
  }
  const modalities = TOKENIZER_MODALITIES.filter((m) => (modalitiesRaw as string[]).includes(m));
  const variant = c.variant ?? 'mme-sid';
  if (!(MMESID_VARIANTS as readonly unknown[]).includes(variant)) fail(file, 'variant', MMESID_VARIANTS.join(' | '), variant);
  const tokenizer = filePath('tokenizer', c.tokenizer, variant === 'mme-sid' || variant === 'mme-random');
  if (variant === 'e4srec' && !modalities.includes('collab')) fail(file, 'modalities', 'collab (e4srec projects the collaborative embedding)', modalities);
  const prompt = object(c.prompt, file, 'prompt');
  const template = prompt.template ?? 'paper';
  if (typeof template !== 'string') fail(file, 'prompt.template', '"paper", "official" or a template with {items}', template);
  const prefixIds = ids(prompt.prefixIds, file, 'prompt.prefixIds');
  const suffixIds = ids(prompt.suffixIds, file, 'prompt.suffixIds');
  if ((prefixIds === null) !== (suffixIds === null)) fail(file, 'prompt', 'both prefixIds and suffixIds, or neither', prompt);
  const lora = object(c.lora, file, 'lora');
  const targets = lora.targetModules ?? ['gate_proj', 'up_proj', 'down_proj'];
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => (LORA_TARGET_MODULES as readonly unknown[]).includes(t))) {
    fail(file, 'lora.targetModules', `a list of ${LORA_TARGET_MODULES.join(', ')}`, targets);
  }
  const t = object(c.train, file, 'train');
  const schedule = t.schedule ?? 'cosine';
  if (schedule !== 'constant' && schedule !== 'linear' && schedule !== 'cosine') fail(file, 'train.schedule', '"constant", "linear" or "cosine"', schedule);
  const warmup = t.warmupSteps;
  if (warmup !== undefined && warmup !== null && !(typeof warmup === 'number' && int(0)(warmup))) fail(file, 'train.warmupSteps', 'an integer >= 0', warmup);
  const out = filePath('out', c.out, true)!;
  const device = c.device ?? 'cpu';
  if (typeof device !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(device)) fail(file, 'device', '"cpu", "cuda" or "cuda:N"', device);
  return {
    model: filePath('model', c.model, true)!,
    sequences: filePath('sequences', c.sequences, true)!,
    tokenizer,
    embeddings,
    modalities,
    variant: variant as MmesidVariant,
    fusion: bool(c, 'fusion', file, '', true),
    temperature: num(c, 'temperature', file, '', 1e-3, (x) => x > 0, 'a positive number'),
    prompt: { template, prefixIds, suffixIds },
    lora: {
      rank: num(lora, 'rank', file, 'lora.', 8, int(1), 'an integer >= 1'),
      alpha: num(lora, 'alpha', file, 'lora.', 16, (x) => x > 0, 'a positive number'),
      dropout: num(lora, 'dropout', file, 'lora.', 0.05, (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
      targetModules: targets as LoraTargetModule[],
    },
    train: {
      epochs: num(t, 'epochs', file, 'train.', 1, (x) => x > 0, 'a positive number'),
      steps: num(t, 'steps', file, 'train.', 0, int(0), 'an integer >= 0'),
      lr: num(t, 'lr', file, 'train.', 3e-4, (x) => x > 0, 'a positive number'),
      weightDecay: num(t, 'weightDecay', file, 'train.', 0, (x) => x >= 0, 'a number >= 0'),
      schedule,
      warmupSteps: (warmup as number | undefined) ?? null,
      microBatch: num(t, 'microBatch', file, 'train.', 4, int(1), 'an integer >= 1'),
      accumulationSteps: num(t, 'accumulationSteps', file, 'train.', 4, int(1), 'an integer >= 1'),
      maxGradNorm: num(t, 'maxGradNorm', file, 'train.', 1, (x) => x >= 0, 'a number >= 0'),
      seed: num(t, 'seed', file, 'train.', 42, int(0), 'an integer >= 0'),
      validateEvery: num(t, 'validateEvery', file, 'train.', 0, int(0), 'an integer >= 0'),
      validateUsers: num(t, 'validateUsers', file, 'train.', 0, int(0), 'an integer >= 0'),
      gradientCheckpointing: bool(t, 'gradientCheckpointing', file, 'train.', false),
      scoreChunk: num(t, 'scoreChunk', file, 'train.', 8192, int(1), 'an integer >= 1'),
      checkpointEvery: num(t, 'checkpointEvery', file, 'train.', 0, int(0), 'an integer >= 0'),
    },
    maxHistory: num(c, 'maxHistory', file, '', 50, int(1), 'an integer >= 1'),
    maxTargetsPerUser: num(c, 'maxTargetsPerUser', file, '', 50, int(1), 'an integer >= 1'),
    device,
    threads: num(c, 'threads', file, '', 0, int(0), 'an integer >= 0'),
    out,
  };
}
