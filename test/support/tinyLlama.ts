/**
 * Tiny random Hugging Face Llama checkpoints for tests: config.json plus `model.safetensors` or a sharded
 * `model-0000k-of-0000n.safetensors` set with `model.safetensors.index.json`, in F32, F16 or BF16, with
 * switches that make them broken in one named way (a tensor dropped, an unexpected tensor, a mis-shaped
 * tensor) for loader error tests.
 *
 * The weights depend only on the seed and the model's dimensions and biases: layout switches (shards,
 * prefix, tied lm_head stored or omitted, dtype) never change them, so every layout of one model must
 * give the same forward pass (the 16-bit ones after rounding). The tensors are drawn in HF's
 * state_dict order; an untied lm_head is drawn last.
 *
 * The safetensors writer is here rather than lib/data/embeddings.ts's saveTensors because that one writes
 * F32 only. float32 → F16 / BF16 rounds to nearest, ties to even (as torch's `.to(dtype)` does).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Rng } from './random';

export type TinyDtype = 'F32' | 'F16' | 'BF16';

/** A tensor to write: float32 values (rounded to the file's dtype on write). */
export interface TinyTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface TinyLlamaOptions {
  /** hidden_size. Default 16. */
  hidden?: number;
  /** num_hidden_layers. Default 2. */
  layers?: number;
  /** num_attention_heads. Default 4. */
  heads?: number;
  /** num_key_value_heads. Default 2 (GQA). */
  kvHeads?: number;
  /** head_dim, written to config.json only when given. Default hidden / heads. */
  headDim?: number;
  /** intermediate_size. Default 24. */
  intermediate?: number;
  /** vocab_size. Default 40. */
  vocab?: number;
  /** Seed of the weights. Default 1. */
  seed?: number;
  /** 'untied' (lm_head.weight drawn and stored), 'tied-omitted' (default) or 'tied-stored' (a copy of embed_tokens). */
  lmHead?: 'untied' | 'tied-omitted' | 'tied-stored';
  /** Names carry the `model.` prefix (LlamaForCausalLM) or not (a bare LlamaModel). Default true. */
  prefix?: boolean;
  /** Stored dtype. Default 'F32'. */
  dtype?: TinyDtype;
  /** 1 (default): model.safetensors; n ≥ 2: n shards plus the index. */
  shards?: number;
  /** Default 10000. */
  ropeTheta?: number;
  /** Default 1e-5. */
  rmsNormEps?: number;
  /** Written to config.json as given (e.g. `{ rope_type: 'llama3', factor: 8, ... }`). Default null. */
  ropeScaling?: Record<string, unknown> | null;
  /** attention_bias (q/k/v/o biases). Default false. */
  attentionBias?: boolean;
  /** mlp_bias (gate/up/down biases). Default false. */
  mlpBias?: boolean;
  /** Leave this tensor out (its canonical name, e.g. `model.layers.1.mlp.up_proj.weight`). */
  dropTensor?: string;
  /** Add a tensor of this (stored) name, shape [hidden]. */
  extraTensor?: string;
  /** Store this tensor (canonical name) with its first dimension one short. */
  misshapeTensor?: string;
}

export interface TinyLlamaCheckpoint {
  dir: string;
  /** The config.json written. */
  config: Record<string, unknown>;
  /** The drawn float32 weights by canonical name (`model.` prefix; lm_head.weight), before any rounding to the stored dtype; the tied lm_head is not listed. */
  weights: Map<string, TinyTensor>;
  /** The safetensors files written (absolute paths). */
  files: string[];
}

// ---------------------------------------------------------------------------------------------------
// float32 → 16-bit

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits of Math.fround(value), round to nearest even; overflow → ±Inf; NaN stays NaN. */
export function toF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: m = (1.mant · 2^23) >> (14 − e), rounded.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let half = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half += 1; // a carry into the exponent is right (up to Inf)
  return sign | half;
}

/** bfloat16 bits of Math.fround(value), round to nearest even; NaN stays (quiet) NaN. */
export function toBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function encode(data: Float32Array, dtype: TinyDtype): Buffer {
  if (dtype === 'F32') return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out = Buffer.alloc(2 * data.length);
  const convert = dtype === 'F16' ? toF16Bits : toBf16Bits;
  for (let i = 0; i < data.length; i += 1) out.writeUInt16LE(convert(data[i]!), 2 * i);
  return out;
}

/**
 * Writes one safetensors file: 8-byte LE header length, JSON header padded with spaces to 8 bytes,
 * tensors in the order given.
 * @returns the number of bytes of tensor data written (the data section, header excluded)
 */
export function writeSafetensors(file: string, tensors: readonly TinyTensor[], dtype: TinyDtype, metadata: Record<string, string> = { format: 'pt' }): number {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const parts: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = encode(t.data, dtype);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(padded.length));
  fs.writeFileSync(file, Buffer.concat([prefix, padded, ...parts]));
  return offset;
}

/**
 * Writes `tensors` (stored names as given) as a checkpoint in `dir`: model.safetensors, or `shards`
 * contiguous groups of tensors as model-0000k-of-0000n.safetensors plus model.safetensors.index.json.
 * @returns the files written (absolute paths)
 */
export function writeCheckpointFiles(dir: string, tensors: readonly TinyTensor[], dtype: TinyDtype, shards = 1): string[] {
  fs.mkdirSync(dir, { recursive: true });
  if (shards === 1) {
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, tensors, dtype);
    return [file];
  }
  if (!Number.isInteger(shards) || shards < 2 || shards > tensors.length) throw new Error(`shards must be an integer in [1, ${tensors.length}] but is ${shards}`);
  const pad = (n: number): string => String(n).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  const files: string[] = [];
  let total = 0;
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s += 1) {
    const group = tensors.slice(s * per, Math.min(tensors.length, (s + 1) * per));
    const name = `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`;
    total += writeSafetensors(path.join(dir, name), group, dtype);
    for (const t of group) weightMap[t.name] = name;
    files.push(path.join(dir, name));
  }
  const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]!]));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2)}\n`);
  return files;
}

// ---------------------------------------------------------------------------------------------------
// The model

/**
 * Writes a random, seeded, deterministic HF Llama checkpoint into `dir` (created if needed).
 * @throws Error for inconsistent dimensions or a switch that names no tensor.
 */
export function writeTinyLlama(dir: string, options: TinyLlamaOptions = {}): TinyLlamaCheckpoint {
  const H = options.hidden ?? 16;
  const L = options.layers ?? 2;
  const heads = options.heads ?? 4;
  const kvHeads = options.kvHeads ?? 2;
  const hd = options.headDim ?? H / heads;
  const I = options.intermediate ?? 24;
  const V = options.vocab ?? 40;
  const dtype = options.dtype ?? 'F32';
  const lmHead = options.lmHead ?? 'tied-omitted';
  const prefix = options.prefix ?? true;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new Error(`head_dim ${hd} must be an even integer`);
  if (heads % kvHeads !== 0) throw new Error(`heads ${heads} must be a multiple of kvHeads ${kvHeads}`);
  const rng = new Rng(options.seed ?? 1);
  const weights = new Map<string, TinyTensor>();
  const order: string[] = [];
  const draw = (name: string, shape: number[], kind: 'matrix' | 'norm' | 'bias' | 'embed'): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (kind === 'norm') data = Float32Array.from(rng.gaussian(n, 0.1), (x) => 1 + x);
    else if (kind === 'bias') data = rng.gaussian(n, 0.1);
    else if (kind === 'embed') data = rng.gaussian(n, 1);
    else data = rng.gaussian(n, 1 / Math.sqrt(shape[1]!));
    weights.set(name, { name, shape, data });
    order.push(name);
  };
  const qDim = heads * hd, kvDim = kvHeads * hd;
  draw('model.embed_tokens.weight', [V, H], 'embed');
  for (let i = 0; i < L; i += 1) {
    const p = `model.layers.${i}.`;
    for (const [proj, rows, cols] of [['q_proj', qDim, H], ['k_proj', kvDim, H], ['v_proj', kvDim, H], ['o_proj', H, qDim]] as const) {
      draw(`${p}self_attn.${proj}.weight`, [rows, cols], 'matrix');
      if (options.attentionBias) draw(`${p}self_attn.${proj}.bias`, [rows], 'bias');
    }
    for (const [proj, rows, cols] of [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]] as const) {
      draw(`${p}mlp.${proj}.weight`, [rows, cols], 'matrix');
      if (options.mlpBias) draw(`${p}mlp.${proj}.bias`, [rows], 'bias');
    }
    draw(`${p}input_layernorm.weight`, [H], 'norm');
    draw(`${p}post_attention_layernorm.weight`, [H], 'norm');
  }
  draw('model.norm.weight', [H], 'norm');
  if (lmHead === 'untied') draw('lm_head.weight', [V, H], 'matrix');

  const storedName = (canonical: string): string => (prefix || !canonical.startsWith('model.') ? canonical : canonical.slice('model.'.length));
  const stored: TinyTensor[] = order.map((name) => {
    const t = weights.get(name)!;
    return { name: storedName(name), shape: t.shape, data: t.data };
  });
  if (lmHead === 'tied-stored') {
    const e = weights.get('model.embed_tokens.weight')!;
    stored.push({ name: 'lm_head.weight', shape: e.shape, data: e.data });
  }
  if (options.dropTensor !== undefined) {
    const at = stored.findIndex((t) => t.name === storedName(options.dropTensor!));
    if (at < 0) throw new Error(`dropTensor: no tensor ${options.dropTensor}`);
    stored.splice(at, 1);
  }
  if (options.misshapeTensor !== undefined) {
    const at = stored.findIndex((t) => t.name === storedName(options.misshapeTensor!));
    if (at < 0) throw new Error(`misshapeTensor: no tensor ${options.misshapeTensor}`);
    const t = stored[at]!;
    const shape = [t.shape[0]! - 1, ...t.shape.slice(1)];
    stored[at] = { name: t.name, shape, data: t.data.slice(0, shape.reduce((a, b) => a * b, 1)) };
  }
  if (options.extraTensor !== undefined) stored.push({ name: options.extraTensor, shape: [H], data: rng.gaussian(H) });

  const config: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: L,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    ...(options.headDim !== undefined ? { head_dim: options.headDim } : {}),
    vocab_size: V,
    max_position_embeddings: 256,
    rms_norm_eps: options.rmsNormEps ?? 1e-5,
    rope_theta: options.ropeTheta ?? 10000,
    rope_scaling: options.ropeScaling ?? null,
    hidden_act: 'silu',
    attention_bias: options.attentionBias ?? false,
    mlp_bias: options.mlpBias ?? false,
    tie_word_embeddings: lmHead !== 'untied',
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16',
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const files = writeCheckpointFiles(dir, stored, dtype, options.shards ?? 1);
  return { dir, config, weights, files };
}
