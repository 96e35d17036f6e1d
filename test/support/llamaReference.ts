/**
 * A plain float64 reference of Hugging Face `LlamaForCausalLM` (transformers' modeling_llama.py), written
 * from HF's semantics and nothing else: it is the oracle the libtorch Llama is checked against, so it
 * uses no native code and no library model code (only lib/data/embeddings.ts's safetensors reader, which
 * widens F16/BF16 to float32 exactly; every weight is then held as float64).
 *
 * What is reproduced, per HF:
 * - config: `head_dim` defaults to hidden_size / num_attention_heads (also when it is null),
 *   `num_key_value_heads` to num_attention_heads, `attention_bias` / `mlp_bias` to false;
 *   `rope_scaling` null, `{rope_type|type: "default"}` or `{rope_type|type: "llama3", ...}`
 *   (`_compute_llama3_parameters`); any other RoPE type is refused.
 * - weights: `model.safetensors`, else a sharded `model.safetensors.index.json` (what from_pretrained
 *   tries, in that order); names with or without the `model.` prefix (a bare LlamaModel checkpoint);
 *   lm_head from `lm_head.weight`, or `embed_tokens` when `tie_word_embeddings` (HF then ties the two and
 *   a stored `lm_head.weight` is ignored; its shape is still checked). Missing, unexpected and mis-shaped
 *   tensors are errors (HF would warn and random-initialize or drop them; an oracle must not). The one
 *   buffer old checkpoints carry, `layers.N.self_attn.rotary_emb.inv_freq`, is ignored as HF does.
 * - forward: RMSNorm x·rsqrt(mean(x²) + eps)·w; rotate-half RoPE with cos/sin of position·inv_freq
 *   repeated over both halves (HF layout: q/k rows are already permuted in the checkpoint); GQA where
 *   query head h reads kv head ⌊h / (heads / kv_heads)⌋; softmax(q·k / √head_dim) over keys that are
 *   causal (key ≤ query) and not padding; SwiGLU down(silu(gate(x)) · up(x)); pre-norm residuals; final
 *   norm; logits = lm_head(hidden).
 *
 * Differences from HF that are deliberate: everything is float64 (HF computes inv_freq, cos/sin and the
 * norms in float32); a query row whose every causal key is padding (a left-pad query row) attends to its
 * causal keys ignoring the padding so that it stays finite; such rows are garbage in HF as well and are
 * never compared.
 *
 * Two independent code paths: {@link referenceForward} is layer-major over whole sequences with an
 * explicit [query, key] mask (how HF runs a forward); {@link referenceGreedy} is token-major with a KV
 * cache (how HF generates). Tests check one against the other.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadTensors } from '../../lib/data/embeddings';

/** HF `rope_scaling` of type llama3 (Llama 3.1 / 3.2), normalized: `rope_type` is always set. */
export interface Llama3RopeScaling {
  rope_type: 'llama3';
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

/** The fields of an HF Llama `config.json` the forward pass needs, every default resolved. */
export interface LlamaConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  /** Default: num_attention_heads (MHA). */
  num_key_value_heads: number;
  /** Default: hidden_size / num_attention_heads. */
  head_dim: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  /** null for plain RoPE (also for `{rope_type: "default"}`). */
  rope_scaling: Llama3RopeScaling | null;
  tie_word_embeddings: boolean;
  /** Biases on q/k/v/o_proj. Default false. */
  attention_bias: boolean;
  /** Biases on gate/up/down_proj. Default false. */
  mlp_bias: boolean;
}

/** y = W·x (+ b) with W float64 row-major [rows, cols] (HF nn.Linear layout: [out, in]). */
export interface ReferenceLinear {
  rows: number;
  cols: number;
  weight: Float64Array;
  bias: Float64Array | null;
}

export interface ReferenceLayer {
  inputLayernorm: Float64Array;
  q: ReferenceLinear;
  k: ReferenceLinear;
  v: ReferenceLinear;
  o: ReferenceLinear;
  postAttentionLayernorm: Float64Array;
  gate: ReferenceLinear;
  up: ReferenceLinear;
  down: ReferenceLinear;
}

/** A loaded Llama: config, float64 weights, and the RoPE inverse frequencies. */
export interface ReferenceLlama {
  config: LlamaConfig;
  /** float64 [vocab_size, hidden_size]. */
  embedTokens: Float64Array;
  layers: ReferenceLayer[];
  /** The final norm's weight, float64 [hidden_size]. */
  norm: Float64Array;
  /** [vocab_size, hidden_size]; the same object as embedTokens' data when tied. */
  lmHead: ReferenceLinear;
  /** Where lm_head came from. */
  lmHeadSource: 'lm_head.weight' | 'tied to embed_tokens';
  /** float64 [head_dim / 2]: HF's inv_freq (after rope_scaling). */
  invFreq: Float64Array;
  /** Every tensor read, by its name with the `model.` prefix (lm_head.weight unprefixed), as float64. */
  tensors: Map<string, { shape: number[]; data: Float64Array }>;
  /** The safetensors files read. */
  files: string[];
}

/** Inputs of {@link referenceForward}: exactly one of inputIds / inputsEmbeds. */
export interface ReferenceForwardInputs {
  /** Token ids, [batch][seq] (rectangular). */
  inputIds?: number[][];
  /** Input embeddings, [batch][seq] of Float64Array(hidden_size). */
  inputsEmbeds?: Float64Array[][];
  /** 1 = token, 0 = padding, [batch][seq]. Default: all ones. */
  attentionMask?: number[][];
  /** Positions, [batch][seq]. Default: 0..seq-1 in every row (HF's forward, even with left padding). */
  positionIds?: number[][];
  /** Compute logits (default true). */
  logits?: boolean;
}

export interface ReferenceForwardOutput {
  /** Last hidden states after the final norm, [batch][seq] of Float64Array(hidden_size). */
  hidden: Float64Array[][];
  /** [batch][seq] of Float64Array(vocab_size); absent when `logits: false`. */
  logits?: Float64Array[][];
}

// ---------------------------------------------------------------------------------------------------
// config.json

function field(raw: Record<string, unknown>, key: string, kind: 'int' | 'positive' | 'bool', fallback?: number | boolean): number | boolean {
  const value = raw[key] ?? fallback;
  const ok = kind === 'bool' ? typeof value === 'boolean' : typeof value === 'number' && Number.isFinite(value) && value > 0 && (kind !== 'int' || Number.isInteger(value));
  if (!ok) throw new Error(`config.json: "${key}" must be ${kind === 'bool' ? 'a boolean' : kind === 'int' ? 'a positive integer' : 'a positive number'} but is ${JSON.stringify(raw[key])}`);
  return value as number | boolean;
}

function parseRopeScaling(raw: unknown): Llama3RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`config.json: "rope_scaling" must be null or an object but is ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  // HF's BC rule: "rope_type" was originally "type".
  const type = r.rope_type ?? r.type ?? 'default';
  if (type === 'default') return null;
  if (type !== 'llama3') throw new Error(`config.json: rope_scaling type ${JSON.stringify(type)} is not supported by the reference (default and llama3 are)`);
  const num = (key: string): number => {
    const v = r[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`config.json: rope_scaling.${key} must be a positive number but is ${JSON.stringify(v)}`);
    return v;
  };
  return {
    rope_type: 'llama3',
    factor: num('factor'),
    low_freq_factor: num('low_freq_factor'),
    high_freq_factor: num('high_freq_factor'),
    original_max_position_embeddings: num('original_max_position_embeddings'),
  };
}

/**
 * Parses an HF Llama config.json object, resolving HF's defaults.
 * @throws Error naming the field for a missing or malformed field, heads not divisible by kv heads, or
 *   an odd head_dim.
 */
export function parseLlamaConfig(raw: unknown): LlamaConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('config.json is not a JSON object');
  const r = raw as Record<string, unknown>;
  const hidden = field(r, 'hidden_size', 'int') as number;
  const heads = field(r, 'num_attention_heads', 'int') as number;
  const kvHeads = field(r, 'num_key_value_heads', 'int', heads) as number;
  if (r.head_dim === undefined || r.head_dim === null) {
    if (hidden % heads !== 0) throw new Error(`config.json: hidden_size ${hidden} is not divisible by num_attention_heads ${heads} and no head_dim is given`);
  }
  const headDim = field(r, 'head_dim', 'int', hidden / heads) as number;
  if (heads % kvHeads !== 0) throw new Error(`config.json: num_attention_heads ${heads} is not divisible by num_key_value_heads ${kvHeads}`);
  if (headDim % 2 !== 0) throw new Error(`config.json: head_dim ${headDim} is odd (RoPE rotates halves)`);
  return {
    hidden_size: hidden,
    intermediate_size: field(r, 'intermediate_size', 'int') as number,
    num_hidden_layers: field(r, 'num_hidden_layers', 'int') as number,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: field(r, 'vocab_size', 'int') as number,
    rms_norm_eps: field(r, 'rms_norm_eps', 'positive', 1e-6) as number,
    rope_theta: field(r, 'rope_theta', 'positive', 10000) as number,
    rope_scaling: parseRopeScaling(r.rope_scaling),
    tie_word_embeddings: field(r, 'tie_word_embeddings', 'bool', false) as boolean,
    attention_bias: field(r, 'attention_bias', 'bool', false) as boolean,
    mlp_bias: field(r, 'mlp_bias', 'bool', false) as boolean,
  };
}

/**
 * HF's inv_freq: 1 / theta^(2j / head_dim), j < head_dim / 2, then `_compute_llama3_parameters` when
 * rope_scaling is llama3: wavelengths 2π / inv_freq shorter than original_max / high_freq_factor are
 * kept, longer than original_max / low_freq_factor are divided by factor, and those in between are
 * blended: (1 − s)·f / factor + s·f with s = (original_max / wavelen − low) / (high − low).
 * @returns float64 [head_dim / 2]
 */
export function llamaInvFreq(config: LlamaConfig): Float64Array {
  const dim = config.head_dim;
  const out = new Float64Array(dim / 2);
  for (let j = 0; j < dim / 2; j += 1) out[j] = 1 / Math.pow(config.rope_theta, (2 * j) / dim);
  const s = config.rope_scaling;
  if (s === null) return out;
  const lowFreqWavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const highFreqWavelen = s.original_max_position_embeddings / s.high_freq_factor;
  for (let j = 0; j < out.length; j += 1) {
    const invFreq = out[j]!;
    const wavelen = (2 * Math.PI) / invFreq;
    // torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    const llama = wavelen > lowFreqWavelen ? invFreq / s.factor : invFreq;
    const smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const smoothed = ((1 - smooth) * llama) / s.factor + smooth * llama;
    const isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    out[j] = isMedium ? smoothed : llama;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Loading

/** Expected tensors (names without the `model.` prefix, except lm_head.weight) and their shapes. */
function expectedShapes(c: LlamaConfig): Map<string, number[]> {
  const H = c.hidden_size, I = c.intermediate_size, qDim = c.num_attention_heads * c.head_dim, kvDim = c.num_key_value_heads * c.head_dim;
  const shapes = new Map<string, number[]>();
  shapes.set('embed_tokens.weight', [c.vocab_size, H]);
  for (let i = 0; i < c.num_hidden_layers; i += 1) {
    const p = `layers.${i}.`;
    shapes.set(`${p}input_layernorm.weight`, [H]);
    const attn: [string, number, number][] = [['q_proj', qDim, H], ['k_proj', kvDim, H], ['v_proj', kvDim, H], ['o_proj', H, qDim]];
    for (const [name, rows, cols] of attn) {
      shapes.set(`${p}self_attn.${name}.weight`, [rows, cols]);
      if (c.attention_bias) shapes.set(`${p}self_attn.${name}.bias`, [rows]);
    }
    shapes.set(`${p}post_attention_layernorm.weight`, [H]);
    const mlp: [string, number, number][] = [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]];
    for (const [name, rows, cols] of mlp) {
      shapes.set(`${p}mlp.${name}.weight`, [rows, cols]);
      if (c.mlp_bias) shapes.set(`${p}mlp.${name}.bias`, [rows]);
    }
  }
  shapes.set('norm.weight', [H]);
  shapes.set('lm_head.weight', [c.vocab_size, H]);
  return shapes;
}

/** The safetensors files of a checkpoint folder and, for a sharded one, which file each tensor is in. */
function checkpointFiles(dir: string): { files: string[]; weightMap: Map<string, string> | null } {
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) return { files: [single], weightMap: null };
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (!fs.existsSync(indexFile)) throw new Error(`${dir}: neither model.safetensors nor model.safetensors.index.json exists`);
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { weight_map?: unknown };
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map) || !Object.values(map).every((v) => typeof v === 'string')) {
    throw new Error(`${indexFile}: "weight_map" must be an object of tensor name → file name`);
  }
  const weightMap = new Map(Object.entries(map as Record<string, string>).map(([k, v]) => [k, path.join(dir, v)] as const));
  return { files: [...new Set(weightMap.values())], weightMap };
}

const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Reads an HF Llama checkpoint folder (config.json + model.safetensors or a sharded index) into float64.
 * @param dir the folder
 * @throws Error (rejection) for a malformed config, a missing file, a tensor missing, unexpected,
 *   duplicated (with and without prefix) or mis-shaped (each named), or a weight_map that disagrees with
 *   its shards.
 */
export async function loadReferenceLlama(dir: string): Promise<ReferenceLlama> {
  const config = parseLlamaConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')));
  const { files, weightMap } = checkpointFiles(dir);
  const expected = expectedShapes(config);
  const found = new Map<string, { shape: number[]; data: Float64Array; stored: string }>();
  const ignored = /^layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;
  for (const file of files) {
    const { tensors } = await loadTensors(file);
    for (const t of tensors) {
      if (weightMap !== null && weightMap.get(t.name) !== file) {
        throw new Error(`${file}: tensor "${t.name}" is not listed for this file in model.safetensors.index.json`);
      }
      const key = t.name === 'lm_head.weight' ? t.name : t.name.startsWith('model.') ? t.name.slice('model.'.length) : t.name;
      if (ignored.test(key)) continue;
      const shape = expected.get(key);
      if (shape === undefined) throw new Error(`${file}: unexpected tensor "${t.name}"`);
      if (found.has(key)) throw new Error(`${file}: tensor "${t.name}" duplicates "${found.get(key)!.stored}"`);
      if (!same(t.shape, shape)) throw new Error(`${file}: tensor "${t.name}" has shape [${t.shape.join(', ')}] but [${shape.join(', ')}] is expected`);
      found.set(key, { shape: t.shape, data: Float64Array.from(t.data), stored: t.name });
    }
  }
  if (weightMap !== null) {
    for (const name of weightMap.keys()) {
      const key = name === 'lm_head.weight' ? name : name.startsWith('model.') ? name.slice('model.'.length) : name;
      if (!found.has(key) && !ignored.test(key)) throw new Error(`model.safetensors.index.json lists "${name}" but ${weightMap.get(name)} does not hold it`);
    }
  }
  for (const name of expected.keys()) {
    if (name === 'lm_head.weight' && config.tie_word_embeddings) continue;
    if (!found.has(name)) throw new Error(`${dir}: tensor "${name === 'lm_head.weight' ? name : `model.${name}`}" is missing (untied lm_head needs lm_head.weight)`);
  }
  const get = (name: string): Float64Array => found.get(name)!.data;
  const linear = (name: string, hasBias: boolean): ReferenceLinear => {
    const [rows, cols] = expected.get(`${name}.weight`) as [number, number];
    return { rows, cols, weight: get(`${name}.weight`), bias: hasBias ? get(`${name}.bias`) : null };
  };
  const layers: ReferenceLayer[] = [];
  for (let i = 0; i < config.num_hidden_layers; i += 1) {
    const p = `layers.${i}.`;
    layers.push({
      inputLayernorm: get(`${p}input_layernorm.weight`),
      q: linear(`${p}self_attn.q_proj`, config.attention_bias),
      k: linear(`${p}self_attn.k_proj`, config.attention_bias),
      v: linear(`${p}self_attn.v_proj`, config.attention_bias),
      o: linear(`${p}self_attn.o_proj`, config.attention_bias),
      postAttentionLayernorm: get(`${p}post_attention_layernorm.weight`),
      gate: linear(`${p}mlp.gate_proj`, config.mlp_bias),
      up: linear(`${p}mlp.up_proj`, config.mlp_bias),
      down: linear(`${p}mlp.down_proj`, config.mlp_bias),
    });
  }
  const embedTokens = get('embed_tokens.weight');
  const tied = config.tie_word_embeddings;
  const lmHead: ReferenceLinear = { rows: config.vocab_size, cols: config.hidden_size, weight: tied ? embedTokens : get('lm_head.weight'), bias: null };
  const tensors = new Map<string, { shape: number[]; data: Float64Array }>();
  for (const [key, t] of found) tensors.set(key === 'lm_head.weight' ? key : `model.${key}`, { shape: t.shape, data: t.data });
  return {
    config,
    embedTokens,
    layers,
    norm: get('norm.weight'),
    lmHead,
    lmHeadSource: tied ? 'tied to embed_tokens' : 'lm_head.weight',
    invFreq: llamaInvFreq(config),
    tensors,
    files,
  };
}

// ---------------------------------------------------------------------------------------------------
// Blocks (shared by both code paths; each is a line of HF's module)

function applyLinear(l: ReferenceLinear, x: Float64Array): Float64Array {
  const y = new Float64Array(l.rows);
  for (let r = 0; r < l.rows; r += 1) {
    let acc = 0;
    const base = r * l.cols;
    for (let c = 0; c < l.cols; c += 1) acc += l.weight[base + c]! * x[c]!;
    y[r] = l.bias === null ? acc : acc + l.bias[r]!;
  }
  return y;
}

/** LlamaRMSNorm: w · x · rsqrt(mean(x²) + eps). */
function rmsNorm(x: Float64Array, weight: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i += 1) ss += x[i]! * x[i]!;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i += 1) y[i] = weight[i]! * (x[i]! * inv);
  return y;
}

/**
 * apply_rotary_pos_emb on every head of `x` ([heads · head_dim]) in place: x·cos + rotate_half(x)·sin,
 * rotate_half(x) = [−x₂, x₁] over the two halves, cos/sin of position·inv_freq[j mod head_dim/2].
 */
function applyRope(x: Float64Array, heads: number, headDim: number, position: number, invFreq: Float64Array): void {
  const half = headDim / 2;
  for (let j = 0; j < half; j += 1) {
    const angle = position * invFreq[j]!;
    const c = Math.cos(angle), s = Math.sin(angle);
    for (let h = 0; h < heads; h += 1) {
      const i1 = h * headDim + j, i2 = i1 + half;
      const x1 = x[i1]!, x2 = x[i2]!;
      x[i1] = x1 * c - x2 * s;
      x[i2] = x2 * c + x1 * s;
    }
  }
}

/** LlamaMLP: down(silu(gate(x)) · up(x)). */
function swiglu(layer: ReferenceLayer, x: Float64Array): Float64Array {
  const g = applyLinear(layer.gate, x);
  const u = applyLinear(layer.up, x);
  for (let i = 0; i < g.length; i += 1) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
  return applyLinear(layer.down, g);
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i += 1) a[i] = a[i]! + b[i]!;
}

/** softmax(q·kₜ / √head_dim) over the listed keys, weighted sum of their values, for query head h. */
function attendHead(q: Float64Array, h: number, keys: readonly Float64Array[], values: readonly Float64Array[], keyIds: readonly number[], kvHead: number, headDim: number, out: Float64Array): void {
  const scale = 1 / Math.sqrt(headDim);
  const qo = h * headDim, ko = kvHead * headDim;
  const scores = new Float64Array(keyIds.length);
  let max = -Infinity;
  keyIds.forEach((t, n) => {
    const k = keys[t]!;
    let dot = 0;
    for (let d = 0; d < headDim; d += 1) dot += q[qo + d]! * k[ko + d]!;
    scores[n] = dot * scale;
    if (scores[n] > max) max = scores[n];
  });
  let sum = 0;
  for (let n = 0; n < scores.length; n += 1) {
    scores[n] = Math.exp(scores[n]! - max);
    sum += scores[n]!;
  }
  keyIds.forEach((t, n) => {
    const v = values[t]!;
    const w = scores[n]! / sum;
    for (let d = 0; d < headDim; d += 1) out[qo + d] = out[qo + d]! + w * v[ko + d]!;
  });
}

// ---------------------------------------------------------------------------------------------------
// Forward (layer-major, explicit mask)

function requireRect(value: unknown, name: string, batch: number, seq: number): void {
  if (!Array.isArray(value) || value.length !== batch || !value.every((row) => Array.isArray(row) && row.length === seq)) {
    throw new Error(`${name} must be [${batch}][${seq}]`);
  }
}

/**
 * One forward pass of LlamaForCausalLM (HF semantics, float64); every batch row independently.
 * @throws Error for both or neither of inputIds / inputsEmbeds, ragged or mis-sized inputs, ids out of
 *   [0, vocab_size), mask entries other than 0/1, non-finite positions.
 */
export function referenceForward(model: ReferenceLlama, inputs: ReferenceForwardInputs): ReferenceForwardOutput {
  const c = model.config;
  const H = c.hidden_size, heads = c.num_attention_heads, kvHeads = c.num_key_value_heads, hd = c.head_dim;
  if ((inputs.inputIds === undefined) === (inputs.inputsEmbeds === undefined)) throw new Error('exactly one of inputIds and inputsEmbeds must be given');
  const rows: Float64Array[][] = [];
  if (inputs.inputIds !== undefined) {
    const ids = inputs.inputIds;
    if (!Array.isArray(ids) || ids.length === 0 || !Array.isArray(ids[0])) throw new Error('inputIds must be a non-empty [batch][seq] array');
    requireRect(ids, 'inputIds', ids.length, ids[0].length);
    for (const row of ids) {
      rows.push(row.map((id) => {
        if (!Number.isInteger(id) || id < 0 || id >= c.vocab_size) throw new Error(`inputIds: token id ${id} is not in [0, ${c.vocab_size})`);
        return model.embedTokens.slice(id * H, (id + 1) * H);
      }));
    }
  } else {
    const e = inputs.inputsEmbeds!;
    if (!Array.isArray(e) || e.length === 0 || !Array.isArray(e[0])) throw new Error('inputsEmbeds must be a non-empty [batch][seq] array');
    requireRect(e, 'inputsEmbeds', e.length, e[0].length);
    for (const row of e) {
      rows.push(row.map((x) => {
        if (!(x instanceof Float64Array) || x.length !== H) throw new Error(`inputsEmbeds: every entry must be a Float64Array(${H})`);
        return Float64Array.from(x);
      }));
    }
  }
  const batch = rows.length, seq = rows[0]!.length;
  if (seq === 0) throw new Error('sequences must not be empty');
  if (inputs.attentionMask !== undefined) {
    requireRect(inputs.attentionMask, 'attentionMask', batch, seq);
    if (!inputs.attentionMask.every((row) => row.every((m) => m === 0 || m === 1))) throw new Error('attentionMask entries must be 0 or 1');
  }
  if (inputs.positionIds !== undefined) {
    requireRect(inputs.positionIds, 'positionIds', batch, seq);
    if (!inputs.positionIds.every((row) => row.every((p) => Number.isFinite(p)))) throw new Error('positionIds must be finite numbers');
  }
  const wantLogits = inputs.logits ?? true;
  const hidden: Float64Array[][] = [];
  const logits: Float64Array[][] = [];
  const group = heads / kvHeads;
  for (let b = 0; b < batch; b += 1) {
    const mask = inputs.attentionMask?.[b] ?? new Array<number>(seq).fill(1);
    const positions = inputs.positionIds?.[b] ?? Array.from({ length: seq }, (_, t) => t);
    // keyLists[t]: the keys query t attends to: causal and not padding (see the module comment for the
    // all-padding fallback).
    const keyLists = Array.from({ length: seq }, (_, t) => {
      const keys = Array.from({ length: t + 1 }, (_, s) => s).filter((s) => mask[s] === 1);
      return keys.length > 0 ? keys : Array.from({ length: t + 1 }, (_, s) => s);
    });
    let h = rows[b]!;
    for (const layer of model.layers) {
      const xn = h.map((x) => rmsNorm(x, layer.inputLayernorm, c.rms_norm_eps));
      const q = xn.map((x, t) => {
        const y = applyLinear(layer.q, x);
        applyRope(y, heads, hd, positions[t]!, model.invFreq);
        return y;
      });
      const k = xn.map((x, t) => {
        const y = applyLinear(layer.k, x);
        applyRope(y, kvHeads, hd, positions[t]!, model.invFreq);
        return y;
      });
      const v = xn.map((x) => applyLinear(layer.v, x));
      h = h.map((x, t) => {
        const attn = new Float64Array(heads * hd);
        for (let head = 0; head < heads; head += 1) attendHead(q[t]!, head, k, v, keyLists[t]!, Math.floor(head / group), hd, attn);
        const y = Float64Array.from(x);
        addInPlace(y, applyLinear(layer.o, attn));
        addInPlace(y, swiglu(layer, rmsNorm(y, layer.postAttentionLayernorm, c.rms_norm_eps)));
        return y;
      });
    }
    const out = h.map((x) => rmsNorm(x, model.norm, c.rms_norm_eps));
    hidden.push(out);
    if (wantLogits) logits.push(out.map((x) => applyLinear(model.lmHead, x)));
  }
  return wantLogits ? { hidden, logits } : { hidden };
}

// ---------------------------------------------------------------------------------------------------
// Greedy decoding (token-major, KV cache)

/** Index of the largest value; ties go to the lowest index. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i += 1) if (values[i]! > values[best]!) best = i;
  return best;
}

interface KvCache {
  /** keys[layer][t], RoPE applied, [kv_heads · head_dim]. */
  keys: Float64Array[][];
  values: Float64Array[][];
}

/** Runs one unpadded token at `position` through every layer, appending to the cache; final-normed hidden. */
function decodeStep(model: ReferenceLlama, cache: KvCache, id: number, position: number): Float64Array {
  const c = model.config;
  const H = c.hidden_size, heads = c.num_attention_heads, kvHeads = c.num_key_value_heads, hd = c.head_dim;
  const group = heads / kvHeads;
  const h = model.embedTokens.slice(id * H, (id + 1) * H);
  model.layers.forEach((layer, l) => {
    const xn = rmsNorm(h, layer.inputLayernorm, c.rms_norm_eps);
    const q = applyLinear(layer.q, xn);
    const k = applyLinear(layer.k, xn);
    applyRope(q, heads, hd, position, model.invFreq);
    applyRope(k, kvHeads, hd, position, model.invFreq);
    cache.keys[l]!.push(k);
    cache.values[l]!.push(applyLinear(layer.v, xn));
    const all = cache.keys[l]!.map((_, t) => t);
    const attn = new Float64Array(heads * hd);
    for (let head = 0; head < heads; head += 1) attendHead(q, head, cache.keys[l]!, cache.values[l]!, all, Math.floor(head / group), hd, attn);
    addInPlace(h, applyLinear(layer.o, attn));
    addInPlace(h, swiglu(layer, rmsNorm(h, layer.postAttentionLayernorm, c.rms_norm_eps)));
  });
  return rmsNorm(h, model.norm, c.rms_norm_eps);
}

/**
 * Greedy decoding (HF `generate(do_sample=False)` without stopping criteria): positions 0.., argmax of
 * the last logits with ties to the lowest id, exactly maxNewTokens tokens (EOS does not stop it).
 * @returns the generated ids (not including the prompt)
 * @throws Error for an empty prompt, ids out of range, or a negative / non-integer maxNewTokens.
 */
export function referenceGreedy(model: ReferenceLlama, promptIds: number[], maxNewTokens: number): number[] {
  const V = model.config.vocab_size;
  if (!Array.isArray(promptIds) || promptIds.length === 0) throw new Error('promptIds must be a non-empty array');
  if (!promptIds.every((id) => Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`promptIds must be token ids in [0, ${V})`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new Error('maxNewTokens must be an integer >= 0');
  const cache: KvCache = { keys: model.layers.map(() => []), values: model.layers.map(() => []) };
  let last: Float64Array = new Float64Array(0);
  promptIds.forEach((id, t) => {
    last = decodeStep(model, cache, id, t);
  });
  const out: number[] = [];
  for (let n = 0; n < maxNewTokens; n += 1) {
    const next = argmax(applyLinear(model.lmHead, last));
    out.push(next);
    if (n + 1 < maxNewTokens) last = decodeStep(model, cache, next, promptIds.length + n);
  }
  return out;
}
