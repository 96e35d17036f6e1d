/**
 * The benchmark table: every trial names a kernel at one shape, the FLOPs it does, our implementation
 * and the baselines measured in the same process run. `npm run bench` runs each trial in a fresh process
 * (bench/run.ts → bench/trial.ts) and prints one table.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { saveTensors, type NamedTensor } from '../lib/data/embeddings';
import { rankBatch } from '../lib/evaluate/ranking';
import { createKernels, kernels } from '../lib/kernels';
import { core, hasTorch, torch } from '../lib/native';
import { SASREC_MODEL_FORMAT, SasrecModel } from '../lib/sasrec';

/** One timed call; a job may also measure its peak tensor memory (bench/trial.ts reports it as peak MB). */
export type Job = (() => Promise<unknown>) & { peakBytes?: () => Promise<number> };

export interface Trial {
  name: string;
  kernel: 'sgemm' | 'rqEncode' | 'mmdGaussian' | 'infoNce' | 'loraLinear' | 'sasrecTrain' | 'sasrecEvaluate' | 'tokenize' | 'llmTrain' | 'mmesidTrain' | 'mmesidEvaluate' | 'mmesidLoss';
  /** Floating-point operations of one call of `ours` (the maths, not what an implementation happens to do). */
  flop: number;
  /** Items per call, for throughput columns (items/s) where it means something (SASRec: training rows, users). */
  items?: number;
  /** Builds inputs and returns the job to time. */
  ours: () => Job;
  /** Named baselines, measured in the same process after ours. */
  baselines: Array<{ name: string; job: () => Job }>;
  /** benchmark.js sampling: more samples for fast ops, fewer for second-long ones. */
  minSamples: number;
  maxTime: number;
  /** Part of the short summary (`npm run demo`, `npm run bench -- --quick`). */
  quick?: boolean;
}

const quick = (trial: Trial): Trial => ({ ...trial, quick: true });

/** Deterministic pseudo-random floats (xorshift), fast enough for gigabyte-sized inputs. */
export function randomFloats(length: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 3.4641 * scale; // unit variance
  }
  return out;
}

const torchOrNull = () => (hasTorch() ? torch() : null);

function sgemmTrial(size: number): Trial {
  return {
    name: `sgemm ${size}³ (OpenBLAS, peak reference)`,
    kernel: 'sgemm',
    flop: 2 * size ** 3,
    ours: () => {
      const a = randomFloats(size * size, 1);
      const b = randomFloats(size * size, 2);
      const c = new Float32Array(size * size);
      return () => core()._sgemm({ a, b, c, m: size, n: size, k: size, threads: 0 });
    },
    baselines: [],
    minSamples: 5,
    maxTime: 3,
  };
}

function rqTrial(n: number, dim: number, beam: number): Trial {
  const levels = 4, size = 256;
  const data = () => ({ x: randomFloats(n * dim, 3), codebooks: randomFloats(levels * size * dim, 4, 0.5) });
  const baselines: Trial['baselines'] = [];
  if (beam === 1 && hasTorch()) {
    baselines.push({
      name: 'libtorch eager greedy (‖r‖²−2r·Cᵀ+‖c‖², argmin, gather, subtract)',
      job: () => {
        const { x, codebooks } = data();
        const codes = new Int32Array(n * levels);
        return () => torchOrNull()!._composite({ op: 'rqGreedy', x, codebooks, codes, n, dim, levels, codebookSize: size });
      },
    });
  }
  return {
    name: `rqEncode n=${n} d=${dim} L=4 K=256 ${beam === 1 ? 'greedy' : `beam ${beam}`}`,
    kernel: 'rqEncode',
    flop: 2 * levels * size * dim * n,
    items: n,
    ours: () => {
      const { x, codebooks } = data();
      return () => kernels.rqEncode({ x, dim, codebooks, levels, codes: size, beam });
    },
    baselines,
    minSamples: n * dim > 1e8 ? 3 : 5,
    maxTime: n * dim > 1e8 ? 1 : 3,
  };
}

function mmdTrial(n: number, dim: number): Trial {
  const data = () => ({ x: randomFloats(n * dim, 5), y: randomFloats(n * dim, 6, 1.2) });
  return {
    name: `mmdGaussian fwd+bwd n=${n} d=${dim}`,
    kernel: 'mmdGaussian',
    flop: 4 * (2 * n) ** 2 * dim,
    ours: () => {
      const { x, y } = data();
      return () => kernels.mmdGaussian({ x, y, dim, alphas: [0.5] });
    },
    baselines: hasTorch()
      ? [
          {
            name: 'libtorch eager MK-MMD, matmul form, autograd',
            job: () => {
              const { x, y } = data();
              const gradX = new Float32Array(n * dim), gradY = new Float32Array(n * dim);
              return () => torchOrNull()!._composite({ op: 'mmd', x, y, gradX, gradY, n, dim, alphas: [0.5] });
            },
          },
        ]
      : [],
    minSamples: 5,
    maxTime: 3,
  };
}

function infoNceTrial(n: number, dim: number, symmetric: boolean): Trial {
  const data = () => ({ a: randomFloats(n * dim, 7), b: randomFloats(n * dim, 8) });
  return {
    name: `infoNce fwd+bwd n=${n} d=${dim} ${symmetric ? 'symmetric' : 'a→b'}`,
    kernel: 'infoNce',
    flop: 6 * n * n * dim,
    ours: () => {
      const { a, b } = data();
      return () => kernels.infoNce({ a, b, dim, temperature: 0.07, symmetric });
    },
    baselines: hasTorch()
      ? [
          {
            name: 'libtorch eager InfoNCE (normalize, matmul, cross_entropy), autograd',
            job: () => {
              const { a, b } = data();
              const gradA = new Float32Array(n * dim), gradB = new Float32Array(n * dim);
              return () => torchOrNull()!._composite({ op: 'infoNce', a, b, gradA, gradB, n, dim, temperature: 0.07, symmetric });
            },
          },
        ]
      : [],
    minSamples: 5,
    maxTime: 3,
  };
}

function loraTrial(rows: number): Trial {
  const inDim = 4096, outDim = 14336, rank = 8, scale = 2;
  const data = () => ({
    x: randomFloats(rows * inDim, 9),
    weight: randomFloats(outDim * inDim, 10, 0.02),
    loraA: randomFloats(rank * inDim, 11, 0.02),
    loraB: randomFloats(outDim * rank, 12, 0.02),
    gradY: randomFloats(rows * outDim, 13),
  });
  const baselines: Trial['baselines'] = [];
  if (hasTorch()) {
    baselines.push({
      name: 'libtorch frozen base linear alone, fwd + bwd (grad x only)',
      job: () => {
        const { x, weight, gradY } = data();
        const gradX = new Float32Array(rows * inDim);
        return () => torchOrNull()!._composite({ op: 'linear', x, weight, gradY, gradX, rows, inDim, outDim });
      },
    });
    baselines.push({
      name: 'libtorch eager PEFT LoRA, fwd + bwd (x, A, B)',
      job: () => {
        const { x, weight, loraA, loraB, gradY } = data();
        const gradX = new Float32Array(rows * inDim), gradA = new Float32Array(rank * inDim), gradB = new Float32Array(outDim * rank);
        return () =>
          torchOrNull()!._composite({ op: 'lora', x, weight, loraA, loraB, gradY, gradX, gradA, gradB, rows, inDim, outDim, rank, scale });
      },
    });
  }
  return {
    name: `loraLinear fwd+bwd 4096→14336 r=8 rows=${rows}`,
    kernel: 'loraLinear',
    flop: 4 * rows * inDim * outDim + 2 * rows * rank * (inDim + outDim) * 3,
    ours: () => {
      const d = data();
      const opts = { x: d.x, weight: d.weight, loraA: d.loraA, loraB: d.loraB, rows, inDim, outDim, rank, scale };
      return async () => {
        await kernels.loraLinear(opts);
        await kernels.loraLinearBackward({ ...opts, gradY: d.gradY });
      };
    },
    baselines,
    minSamples: 3,
    maxTime: 2,
  };
}

/** SASRec at the Amazon Beauty shape of MME-SID (12,101 items, d 64, 2 blocks, 1 head, maxLen 50). */
const BEAUTY_SASREC = { numItems: 12101, dim: 64, blocks: 2, heads: 1, maxLen: 50, dropout: 0.2 };

/** Deterministic integers in [0, n) (xorshift32). */
function randomInts(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

/** Forward FLOPs of SASRec over every position of `sequences` rows: per token and block, the q/k/v,
 * output and two feed-forward projections (12·d²) and the causal attention products (4·L·d). */
function sasrecForwardFlop(sequences: number): number {
  const { dim, blocks, maxLen } = BEAUTY_SASREC;
  return sequences * maxLen * blocks * (12 * dim * dim + 4 * maxLen * dim);
}

/**
 * `count` training batches of `batch` rows, int32 [count, batch, maxLen] each: every row has 1–11
 * target positions (mean 6; Beauty's leave-one-out training rows have ≈ 5.9), left-padded with 0;
 * one uniform negative per target position for bce.
 */
function sasrecTrainingBatches(count: number, batch: number, bce: boolean) {
  const { numItems, maxLen } = BEAUTY_SASREC;
  const draw = randomInts(21);
  const size = count * batch * maxLen;
  const x = new Int32Array(size), pos = new Int32Array(size);
  const neg = bce ? new Int32Array(size) : undefined;
  let targets = 0;
  for (let row = 0; row < count * batch; row += 1) {
    const k = 1 + draw(11);
    const items = Array.from({ length: k + 1 }, () => 1 + draw(numItems));
    for (let j = 0; j < k; j += 1) {
      const at = row * maxLen + maxLen - k + j;
      x[at] = items[j]!;
      pos[at] = items[j + 1]!;
      if (neg) neg[at] = 1 + draw(numItems);
    }
    targets += k;
  }
  return { x, pos, ...(neg ? { neg } : {}), targets };
}

function sasrecTrainTrial(loss: 'bce' | 'ce'): Trial {
  const batch = 128, count = 4;
  const bce = loss === 'bce';
  const { targets } = sasrecTrainingBatches(count, batch, bce);
  const { dim, numItems } = BEAUTY_SASREC;
  const lossFlop = bce ? 2 * 2 * targets * dim : 2 * targets * numItems * dim;
  const job = (eager: boolean) => () => {
    const { x, pos, neg } = sasrecTrainingBatches(count, batch, bce);
    return () => torchOrNull()!._composite({ op: 'sasrecTrain', eager, x, pos, ...(neg ? { neg } : {}), batch, count, ...BEAUTY_SASREC });
  };
  return {
    name: `sasrecTrain ${loss} steps Beauty N=12101 d=64 2 blocks L=50 B=128 (${count} steps/call)`,
    kernel: 'sasrecTrain',
    flop: 3 * (sasrecForwardFlop(count * batch) + lossFlop),
    items: count * batch,
    ours: job(false),
    baselines: hasTorch()
      ? [{ name: `libtorch eager (torch::nn Embedding/MultiheadAttention/LayerNorm/Linear/Dropout, optim::Adam), same ${loss} loss`, job: job(true) }]
      : [],
    minSamples: 6,
    maxTime: 4,
  };
}

/**
 * Deterministic evaluation users: histories of 4–12 items (mean 8), a target per user, inputs
 * int32 [users, maxLen] left-padded, the history CSR (the whole input is masked).
 */
function sasrecEvalUsers(users: number) {
  const { numItems, maxLen } = BEAUTY_SASREC;
  const draw = randomInts(22);
  const inputs = new Int32Array(users * maxLen), targets = new Int32Array(users);
  const historyOffsets = new Int32Array(users + 1);
  const history: number[] = [];
  for (let u = 0; u < users; u += 1) {
    const n = 4 + draw(9);
    for (let j = 0; j < n; j += 1) {
      const item = 1 + draw(numItems);
      history.push(item);
      inputs[u * maxLen + maxLen - n + j] = item;
    }
    historyOffsets[u + 1] = history.length;
    targets[u] = 1 + draw(numItems);
  }
  return { inputs, targets, historyOffsets, historyItems: Int32Array.from(history) };
}

/** A SasrecModel with Xavier-scaled random weights at the Beauty shape, loaded from a temporary file. */
async function randomSasrecModel(): Promise<SasrecModel> {
  const { numItems, dim, blocks, heads, maxLen } = BEAUTY_SASREC;
  let seed = 30;
  const matrix = (name: string, rows: number, cols: number): NamedTensor => ({ name, shape: [rows, cols], data: randomFloats(rows * cols, (seed += 1), Math.sqrt(2 / (rows + cols))) });
  const vector = (name: string, length: number, value: number): NamedTensor => ({ name, shape: [length], data: new Float32Array(length).fill(value) });
  const tensors = [matrix('item_emb', numItems + 1, dim), matrix('pos_emb', maxLen, dim)];
  for (let b = 0; b < blocks; b += 1) {
    const p = `blocks.${b}.`;
    tensors.push(vector(`${p}attn_ln.weight`, dim, 1), vector(`${p}attn_ln.bias`, dim, 0));
    tensors.push(matrix(`${p}attn.in_proj_weight`, 3 * dim, dim), vector(`${p}attn.in_proj_bias`, 3 * dim, 0));
    tensors.push(matrix(`${p}attn.out_proj.weight`, dim, dim), vector(`${p}attn.out_proj.bias`, dim, 0));
    tensors.push(vector(`${p}ffn_ln.weight`, dim, 1), vector(`${p}ffn_ln.bias`, dim, 0));
    tensors.push(matrix(`${p}ffn.conv1.weight`, dim, dim), vector(`${p}ffn.conv1.bias`, dim, 0));
    tensors.push(matrix(`${p}ffn.conv2.weight`, dim, dim), vector(`${p}ffn.conv2.bias`, dim, 0));
  }
  tensors.push(vector('last_ln.weight', dim, 1), vector('last_ln.bias', dim, 0));
  tensors[0]!.data.fill(0, 0, dim);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-bench-sasrec-'));
  try {
    const file = path.join(dir, 'model.safetensors');
    await saveTensors(file, tensors, { format: SASREC_MODEL_FORMAT, version: '1', architecture: JSON.stringify({ numItems, dim, blocks, heads, maxLen }), dataset: '{}' });
    return await SasrecModel.load(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function sasrecEvaluateTrial(): Trial {
  const users = 2048, evalBatch = 256;
  const { numItems, dim, maxLen } = BEAUTY_SASREC;
  return {
    name: `sasrecEvaluate full ranking Beauty N=12101 d=64 L=50, history ≈ 8 masked, batch 256 (${users} users/call)`,
    kernel: 'sasrecEvaluate',
    flop: sasrecForwardFlop(users) + 2 * users * dim * (numItems + 1),
    items: users,
    ours: () => {
      const data = sasrecEvalUsers(users);
      const scores = new Float32Array(evalBatch * (numItems + 1));
      const batches = Array.from({ length: Math.ceil(users / evalBatch) }, (_, i) => {
        const start = i * evalBatch, end = Math.min(users, start + evalBatch);
        const first = data.historyOffsets[start]!, last = data.historyOffsets[end]!;
        return {
          batch: end - start,
          inputs: data.inputs.subarray(start * maxLen, end * maxLen),
          targets: data.targets.subarray(start, end),
          historyOffsets: data.historyOffsets.slice(start, end + 1).map((o) => o - first),
          historyItems: data.historyItems.subarray(first, last),
        };
      });
      let model: SasrecModel | undefined;
      return async () => {
        model ??= await randomSasrecModel();
        for (const b of batches) {
          const out = scores.subarray(0, b.batch * (numItems + 1));
          await model.scoreInto(b.inputs, b.batch, out);
          await rankBatch({ scores: out, numItems, targets: b.targets, historyOffsets: b.historyOffsets, historyItems: b.historyItems, ks: [5, 10, 20] });
        }
      };
    },
    baselines: hasTorch()
      ? [
          {
            name: 'libtorch eager (torch::nn forward, h·Eᵀ, index_put_ −inf history mask, rank = count beating target, HR/nDCG by torch ops)',
            job: () => {
              const data = sasrecEvalUsers(users);
              return () => torchOrNull()!._composite({ op: 'sasrecEvaluate', ...data, evalBatch, ...BEAUTY_SASREC });
            },
          },
        ]
      : [],
    minSamples: 6,
    maxTime: 3,
  };
}

/** The table. Order matters only for reading; each trial runs in its own process. */
export const trials: Trial[] = [
  quick(sgemmTrial(2048)),
  quick(rqTrial(12086, 64, 1)),
  quick(rqTrial(12086, 64, 5)),
  rqTrial(1_000_000, 64, 1),
  rqTrial(1_000_000, 64, 5),
  quick(rqTrial(12086, 1024, 1)),
  rqTrial(12086, 4096, 1),
  rqTrial(12086, 4096, 5),
  quick(mmdTrial(1024, 64)),
  mmdTrial(1024, 4096),
  quick(infoNceTrial(1024, 64, false)),
  infoNceTrial(1024, 64, true),
  infoNceTrial(1024, 4096, false),
  infoNceTrial(1024, 4096, true),
  quick(loraTrial(64)),
  loraTrial(512),
  sasrecTrainTrial('bce'),
  sasrecTrainTrial('ce'),
  sasrecEvaluateTrial(),
];

/** Keeps the reference kernels reachable for ad-hoc comparisons from a REPL. */
export const referenceKernels = () => createKernels(core, { reference: true });

// ---------------------------------------------------------------------------------------------------
// Tokenization service: encoder MLP + greedy RQ end to end, core addon vs libtorch eager

/** A tokenizer shape: input d, encoder hidden sizes, code dimension e; L = 4, K = 256. */
interface TokenizeShape {
  inputDim: number;
  hidden: number[];
  codeDim: number;
}

const TOKENIZE_LEVELS = 4, TOKENIZE_CODES = 256;

/** Random encoder layers (Xavier-scaled weights, small biases) and codebooks of a shape, deterministic. */
function tokenizerWeights(shape: TokenizeShape) {
  const dims = [shape.inputDim, ...shape.hidden, shape.codeDim];
  const layers = dims.slice(0, -1).map((inDim, i) => {
    const outDim = dims[i + 1]!;
    return { inDim, outDim, weight: randomFloats(outDim * inDim, 40 + i, Math.sqrt(2 / (inDim + outDim))), bias: randomFloats(outDim, 50 + i, 0.05) };
  });
  return { dims, layers, codebooks: randomFloats(TOKENIZE_LEVELS * TOKENIZE_CODES * shape.codeDim, 60, 0.5) };
}

/** Maths per item: the encoder GEMMs (2·in·out per layer) plus the RQ scores (2·L·K·e). */
function tokenizeFlopPerItem(shape: TokenizeShape): number {
  const dims = [shape.inputDim, ...shape.hidden, shape.codeDim];
  let flop = 2 * TOKENIZE_LEVELS * TOKENIZE_CODES * shape.codeDim;
  for (let i = 0; i + 1 < dims.length; i += 1) flop += 2 * dims[i]! * dims[i + 1]!;
  return flop;
}

/**
 * Writes a tokenizer folder (tokenizer.json + tokenizer.safetensors, decoders included) with the shape's
 * random weights into a temporary folder and loads it through the public API, as a service would.
 */
async function randomTokenizer(shape: TokenizeShape): Promise<import('../lib/tokenizer/service').Tokenizer> {
  const { Tokenizer, TOKENIZER_FORMAT, TOKENIZER_VERSION } = await import('../lib/tokenizer/service');
  const { createHash } = await import('node:crypto');
  const { dims, layers, codebooks } = tokenizerWeights(shape);
  const tensors: NamedTensor[] = [];
  layers.forEach((l, i) => tensors.push({ name: `collab.encoder.${i}.weight`, shape: [l.outDim, l.inDim], data: l.weight }, { name: `collab.encoder.${i}.bias`, shape: [l.outDim], data: l.bias }));
  const reversed = dims.slice().reverse();
  for (let i = 0; i + 1 < reversed.length; i += 1) {
    const inDim = reversed[i]!, outDim = reversed[i + 1]!;
    tensors.push({ name: `collab.decoder.${i}.weight`, shape: [outDim, inDim], data: new Float32Array(outDim * inDim) }, { name: `collab.decoder.${i}.bias`, shape: [outDim], data: new Float32Array(outDim) });
  }
  tensors.push({ name: 'collab.codebooks', shape: [TOKENIZE_LEVELS, TOKENIZE_CODES, shape.codeDim], data: codebooks });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-bench-tokenizer-'));
  try {
    const weights = path.join(dir, 'tokenizer.safetensors');
    await saveTensors(weights, tensors);
    const manifest = {
      format: TOKENIZER_FORMAT,
      version: TOKENIZER_VERSION,
      weights: 'tokenizer.safetensors',
      numItems: 0,
      levels: TOKENIZE_LEVELS,
      codes: TOKENIZE_CODES,
      codeDim: shape.codeDim,
      modalities: [{ name: 'collab', inputDim: shape.inputDim, hidden: shape.hidden }],
      settings: {},
      weightsSha256: createHash('sha256').update(fs.readFileSync(weights)).digest('hex'),
    };
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(manifest));
    return await Tokenizer.load(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function tokenizeTrial(n: number, shape: TokenizeShape): Trial {
  const data = () => randomFloats(n * shape.inputDim, 70);
  return {
    name: `tokenize end to end (encoder MLP + greedy RQ) n=${n} d=${shape.inputDim} hidden [${shape.hidden.join(', ')}] e=${shape.codeDim} L=4 K=256`,
    kernel: 'tokenize',
    flop: n * tokenizeFlopPerItem(shape),
    items: n,
    ours: () => {
      const x = data();
      let tokenizer: Awaited<ReturnType<typeof randomTokenizer>> | undefined;
      return async () => {
        tokenizer ??= await randomTokenizer(shape);
        await tokenizer.encode({ collab: x });
      };
    },
    baselines: hasTorch()
      ? [
          {
            name: 'libtorch eager (at::linear + relu encoder, greedy ‖r‖²−2r·Cᵀ+‖c‖² argmin/gather/subtract), same weights, one call',
            job: () => {
              const x = data();
              const { layers, codebooks } = tokenizerWeights(shape);
              const out = new Int32Array(n * TOKENIZE_LEVELS);
              return () => torchOrNull()!._tokenizeEager({ x, n, layers, codebooks, levels: TOKENIZE_LEVELS, codes: TOKENIZE_CODES, codeDim: shape.codeDim, out });
            },
          },
        ]
      : [],
    minSamples: 6,
    maxTime: 4,
  };
}

/** d = 64 (hidden [256, 128], e 64) and d = 4,096 (hidden [1024, 512], e 4,096: 16 MiB of codebooks). */
export const TOKENIZE_SHAPES: Record<'d64' | 'd4096', TokenizeShape> = {
  d64: { inputDim: 64, hidden: [256, 128], codeDim: 64 },
  d4096: { inputDim: 4096, hidden: [1024, 512], codeDim: 4096 },
};

trials.push(quick(tokenizeTrial(65536, TOKENIZE_SHAPES.d64)), tokenizeTrial(4096, TOKENIZE_SHAPES.d4096));

/**
 * Event-loop responsiveness while the tokenization service encodes: a 1 ms timer and
 * perf_hooks.monitorEventLoopDelay run on the JS thread while `Tokenizer.encode` calls (batches of
 * 4,096 rows on the libuv pool, all cores) run back to back for `seconds`. Reports the delay percentiles
 * (ms) and the items/s achieved meanwhile. Run: `npx ts-node -T bench/trials.ts tokenize-event-loop`.
 */
export async function tokenizeEventLoopDelay(shape: TokenizeShape, n: number, seconds: number) {
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const tokenizer = await randomTokenizer(shape);
  try {
    const x = randomFloats(n * shape.inputDim, 71);
    await tokenizer.encode({ collab: x }); // warm-up
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    const timer = setInterval(() => undefined, 1);
    histogram.enable();
    const started = process.hrtime.bigint();
    let items = 0;
    while (Number(process.hrtime.bigint() - started) / 1e9 < seconds) {
      await tokenizer.encode({ collab: x });
      items += n;
    }
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    histogram.disable();
    clearInterval(timer);
    const ms = (ns: number) => ns / 1e6;
    return { d: shape.inputDim, n, seconds: elapsed, itemsPerSecond: items / elapsed, p50Ms: ms(histogram.percentile(50)), p99Ms: ms(histogram.percentile(99)), maxMs: ms(histogram.max) };
  } finally {
    tokenizer.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------
// The LLM: forward + backward of the Llama with LoRA on gate/up/down (r 8, α 16, the paper's),
// fused LoRA kernel vs the same model with the adapters as plain libtorch eager ops (at::linear ×3).

/** A Llama shape for the benchmarks (random weights, N(0, 0.02²)). */
export interface LlmBenchShape {
  label: string;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  batch: number;
  length: number;
}

export const LLM_BENCH_SHAPES: Record<'tiny' | 'base100m', LlmBenchShape> = {
  tiny: { label: 'tiny (stories260K shape)', hidden: 64, intermediate: 172, layers: 5, heads: 8, kvHeads: 4, vocab: 512, batch: 8, length: 64 },
  base100m: { label: '~100M', hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 4, vocab: 32000, batch: 2, length: 256 },
};

const LLM_BENCH_RANK = 8;

function llmConfig(s: LlmBenchShape) {
  const headDim = s.hidden / s.heads;
  return {
    hiddenSize: s.hidden,
    intermediateSize: s.intermediate,
    numHiddenLayers: s.layers,
    numAttentionHeads: s.heads,
    numKeyValueHeads: s.kvHeads,
    headDim,
    vocabSize: s.vocab,
    maxPositionEmbeddings: 4096,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: { type: 'none', factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
    tieWordEmbeddings: true,
    attentionBias: false,
    mlpBias: false,
  };
}

/**
 * FLOPs of one forward + backward (the maths, frozen base): per token and layer the base projections
 * 2·(q + k + v + o + gate + up + down weights) forward and again for the input gradient, attention
 * 2·2·T·hd·heads forward (QKᵀ and PV, full T×T) and twice that backward, LoRA 2·r·(in + out) per adapted
 * module forward and three times that backward (∂x, ∂A, ∂B). Norms, RoPE, softmax and SiLU are not counted.
 */
export function llmTrainFlop(s: LlmBenchShape): number {
  const h = s.hidden, f = s.intermediate, hd = s.hidden / s.heads;
  const base = 2 * (2 * h * h + 2 * h * s.kvHeads * hd + 3 * h * f);
  const attention = 4 * s.length * hd * s.heads;
  const lora = 2 * LLM_BENCH_RANK * ((h + f) * 2 + (f + h));
  return s.batch * s.length * s.layers * (2 * base + 3 * attention + 4 * lora);
}

function llmTrainTrial(s: LlmBenchShape): Trial {
  const job = (fused: boolean): Job => {
    let handle: Awaited<ReturnType<ReturnType<typeof torch>['_llmBench']>> | undefined;
    const ready = async () =>
      (handle ??= await torchOrNull()!._llmBench({
        config: llmConfig(s),
        seed: 7,
        batch: s.batch,
        length: s.length,
        rank: LLM_BENCH_RANK,
        alpha: 16,
        targetModules: ['gate_proj', 'up_proj', 'down_proj'],
        fused,
        threads: 0,
      }));
    const run: Job = async () => (await ready()).step();
    run.peakBytes = async () => (await ready()).peakBytes();
    return run;
  };
  return {
    name: `llmTrain fwd+bwd ${s.label}: h=${s.hidden} L=${s.layers} heads ${s.heads}/${s.kvHeads} ff=${s.intermediate}, LoRA r=8 gate/up/down, ${s.batch}×${s.length} tokens`,
    kernel: 'llmTrain',
    flop: llmTrainFlop(s),
    items: s.batch * s.length,
    ours: () => job(true),
    baselines: hasTorch() ? [{ name: 'libtorch eager, unfused LoRA (same model)', job: () => job(false) }] : [],
    minSamples: s.hidden > 256 ? 6 : 30,
    maxTime: s.hidden > 256 ? 30 : 6,
  };
}

if (hasTorch()) trials.push(quick(llmTrainTrial(LLM_BENCH_SHAPES.tiny)), llmTrainTrial(LLM_BENCH_SHAPES.base100m));

if (require.main === module && process.argv[2] === 'tokenize-event-loop') {
  void (async () => {
    for (const [shape, n] of [[TOKENIZE_SHAPES.d64, 65536], [TOKENIZE_SHAPES.d4096, 4096]] as const) {
      console.log(JSON.stringify(await tokenizeEventLoopDelay(shape, n, 5)));
    }
  })();
}

// ---------------------------------------------------------------------------------------------------
// MME-SID: fine-tuning samples/s and evaluation users/s at Beauty's shape (12,086 items, collab +
// text 64-d tables, 4 × 256 SIDs) with a stories260K-shaped LLM (random weights), fused LoRA vs the same
// model with eager unfused LoRA; peak tensor memory per call.

const MMESID_ITEMS = 12086, MMESID_SAMPLES = 2048, MMESID_STEPS = 8, MMESID_MICRO = 16;

/** Beauty-like histories: lengths 1 … 50, geometric around Beauty's mean of ≈ 7, items uniform. */
function mmesidHistories(count: number, seed: number): { offsets: Float64Array; items: Int32Array; targets: Int32Array } {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const lengths = Array.from({ length: count }, () => Math.min(50, 1 + Math.floor(Math.log(1 - next()) / Math.log(1 - 1 / 7))));
  const offsets = new Float64Array(count + 1);
  lengths.forEach((l, i) => (offsets[i + 1] = offsets[i]! + l));
  const items = Int32Array.from({ length: offsets[count]! }, () => 1 + Math.floor(next() * MMESID_ITEMS));
  const targets = Int32Array.from({ length: count }, () => 1 + Math.floor(next() * MMESID_ITEMS));
  return { offsets, items, targets };
}

async function mmesidBenchHead(fusedLora: boolean, items = MMESID_ITEMS) {
  const { writeRandomLlama } = await import('../lib/llm/checkpoint');
  const { LlamaModel } = await import('../lib/llm/model');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-bench-mmesid-'));
  const s = LLM_BENCH_SHAPES.tiny;
  await writeRandomLlama(dir, { hiddenSize: s.hidden, intermediateSize: s.intermediate, numHiddenLayers: s.layers, numAttentionHeads: s.heads, numKeyValueHeads: s.kvHeads, vocabSize: s.vocab, seed: 1 });
  const llm = await LlamaModel.load(dir, { threads: 0 });
  llm.applyLora({ rank: 8, alpha: 16, dropout: 0.05, targetModules: ['gate_proj', 'up_proj', 'down_proj'] });
  const n = items + 1, h = s.hidden, levels = 4, codes = 256;
  const modality = (name: string, seed: number) => ({
    name,
    table: randomFloats(n * 64, seed),
    dim: 64,
    sids: Int32Array.from({ length: n * levels }, (_, i) => (i < levels ? -1 : (i * 2654435761) % codes)),
    levels,
    codes,
    codebooks: randomFloats(levels * codes * h, seed + 1, 0.1),
  });
  const head = await torch().mmesidHead(llm._native(), {
    variant: 'mme-sid',
    fusion: true,
    temperature: 1e-3,
    hidden: h,
    scoreChunk: 8192,
    seed: 1,
    numItems: n,
    frequency: Float64Array.from({ length: n }, (_, i) => (i === 0 ? 0 : 1 + (i % 97))),
    modalities: [modality('collab', 11), modality('text', 13)],
  });
  const data = mmesidHistories(MMESID_SAMPLES, 5);
  const prefix = Int32Array.from([1]), suffix = Int32Array.from([13]);
  let calls = 0;
  const train: Job = async () => {
    calls += 1;
    const handle = head.train(
      {
        totalSteps: MMESID_STEPS,
        accumulationSteps: 1,
        lr: 1e-3,
        weightDecay: 0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        schedule: 'constant',
        warmupSteps: 0,
        maxGradNorm: 1,
        fp16LossScaling: false,
        seed: calls,
        checkpointPath: '',
        checkpointEvery: 0,
        resume: false,
        ...data,
        prefix,
        suffix,
        microBatch: MMESID_MICRO,
        gradientCheckpointing: false,
        fingerprint: 'bench',
        stopAt: 0,
        fusedLora,
        referenceHead: !fusedLora,
      },
      () => undefined,
    );
    await handle.promise;
  };
  const users = 256;
  const evalBatch = { offsets: data.offsets.subarray(0, users + 1), items: data.items.subarray(0, data.offsets[users]), prefix, suffix };
  const scores = new Float32Array(users * n);
  const evaluate: Job = async () => head.score({ ...evalBatch, scores, fusedLora, oneBatch: !fusedLora });
  const peak = (job: Job) => async () => {
    const before = torch()._peakReset();
    await job();
    return torch()._peakBytes() - before;
  };
  // The cross-entropy over every item alone (fwd + bwd of B = 16 hidden states): chunked and fast, or the
  // plain reference path in one chunk of all items (what an unchunked eager implementation holds).
  const b = MMESID_MICRO;
  const hidden = randomFloats(b * h, 17), gradH = new Float32Array(b * h);
  const targets = Int32Array.from({ length: b }, (_, i) => 1 + ((i * 7919) % items));
  const loss: Job = async () => head._loss({ h: hidden, targets, chunk: fusedLora ? 8192 : n, gradH, reference: !fusedLora });
  train.peakBytes = peak(train);
  evaluate.peakBytes = peak(evaluate);
  loss.peakBytes = peak(loss);
  return { train, evaluate, loss };
}

/** One of mmesidBenchHead's jobs, the head built on the first call (ours: fused; the baseline: eager). */
function mmesidJob(kind: 'train' | 'evaluate' | 'loss', fused: boolean, items = MMESID_ITEMS): Job {
  let ready: ReturnType<typeof mmesidBenchHead> | undefined;
  const run: Job = async () => (await (ready ??= mmesidBenchHead(fused, items)))[kind]();
  run.peakBytes = async () => (await (ready ??= mmesidBenchHead(fused, items)))[kind].peakBytes!();
  return run;
}

function mmesidTrial(kind: 'train' | 'evaluate'): Trial {
  const job = (fused: boolean): Job => mmesidJob(kind, fused);
  const s = LLM_BENCH_SHAPES.tiny;
  const samples = kind === 'train' ? MMESID_STEPS * MMESID_MICRO : 256;
  const meanTokens = 2 + 7;
  const transformer = llmTrainFlop({ ...s, batch: samples, length: meanTokens });
  return {
    name: kind === 'train'
      ? `mmesidTrain Beauty shape (12,086 items, collab+text, 4×256 SIDs), stories260K-shaped LLM, LoRA r8, ${MMESID_STEPS} steps × ${MMESID_MICRO} samples`
      : `mmesidEvaluate Beauty shape: score all 12,087 items for 256 users`,
    kernel: kind === 'train' ? 'mmesidTrain' : 'mmesidEvaluate',
    flop: kind === 'train' ? transformer + samples * 3 * 2 * (MMESID_ITEMS + 1) * s.hidden : transformer / 3 + samples * 2 * (MMESID_ITEMS + 1) * s.hidden,
    items: samples,
    ours: () => job(true),
    baselines: hasTorch() ? [{ name: 'libtorch eager (same model: unfused LoRA, plain head, one padded batch)', job: () => job(false) }] : [],
    minSamples: 6,
    maxTime: 20,
  };
}

const MMESID_LOSS_ITEMS = 1_000_000;

/** The chunked cross-entropy at 1,000,000 items: time and peak tensor memory against one unchunked chunk. */
function mmesidLossTrial(): Trial {
  const job = (fused: boolean): Job => mmesidJob('loss', fused, MMESID_LOSS_ITEMS);
  const h = LLM_BENCH_SHAPES.tiny.hidden, n = MMESID_LOSS_ITEMS + 1, b = MMESID_MICRO;
  return {
    name: `mmesidLoss cross-entropy over 1,000,000 items (collab+text 64-d, fusion), B ${b}, H ${h}: chunks of 8,192 (fast path) vs one chunk (plain path)`,
    kernel: 'mmesidLoss',
    // The maths: logits B·N·H, their backward 2·B·N·H, the item vectors' projections 2 modalities · N·64·H.
    flop: 3 * 2 * b * n * h + 2 * 2 * n * 64 * h,
    items: b,
    ours: () => job(true),
    baselines: hasTorch() ? [{ name: 'libtorch eager (plain head, all items in one chunk)', job: () => job(false) }] : [],
    minSamples: 3,
    maxTime: 20,
  };
}

if (hasTorch()) trials.push(mmesidTrial('train'), mmesidTrial('evaluate'), mmesidLossTrial());
