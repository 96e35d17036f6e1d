/**
 * The single written contract of what the native addons export. Only lib/native.ts loads a `.node`;
 * everything else goes through these types. All options objects are fully defaulted and validated by
 * the TypeScript layer before they reach native code; output buffers are allocated by the caller and
 * written in place. Every kernel call returns a Promise and runs on the libuv pool.
 *
 * Native failures reject with an Error carrying `code`: ERR_MMESID_INVALID_ARGUMENT,
 * ERR_MMESID_OUT_OF_MEMORY or ERR_MMESID_NATIVE.
 */

import type { NativeLoopOptions, TrainResult, TrainStep } from '../lib/llm/train';

/** Options of a residual-quantization encode. Row-major float32; codes [n, levels] int32 (out). */
export interface NativeRqEncodeOptions {
  x: Float32Array;
  codebooks: Float32Array;
  n: number;
  dim: number;
  levels: number;
  codebookSize: number;
  beam: number;
  threads: number;
  codes: Int32Array;
  sqError?: Float32Array;
  /** Test-only: run the naive scalar reference instead of the optimized kernel. */
  _reference?: boolean;
  /** Test-only: force the scoring strategy (0 automatic, 1 explicit residuals, 2 cross-product table). */
  _strategy?: number;
}

export interface NativeMmdOptions {
  x: Float32Array;
  y: Float32Array;
  n: number;
  dim: number;
  /** Relative bandwidths (σ² = α · mean pairwise squared distance); used when `sigmas` is empty. */
  alphas: number[];
  /** Fixed bandwidths σ; non-empty selects fixed mode. */
  sigmas: number[];
  threads: number;
  gradX?: Float32Array;
  gradY?: Float32Array;
  _reference?: boolean;
}

export interface NativeInfoNceOptions {
  a: Float32Array;
  b: Float32Array;
  n: number;
  dim: number;
  temperature: number;
  symmetric: boolean;
  threads: number;
  gradA?: Float32Array;
  gradB?: Float32Array;
  _reference?: boolean;
}

export interface NativeLoraOptions {
  x: Float32Array;
  /** LoRA dropout: the low-rank path's input drop(x), [rows, inDim]; absent = x. */
  xLora?: Float32Array;
  weight: Float32Array;
  bias?: Float32Array;
  loraA: Float32Array;
  loraB: Float32Array;
  rows: number;
  inDim: number;
  outDim: number;
  rank: number;
  scale: number;
  threads: number;
  _reference?: boolean;
}

export interface NativeLoraForwardOptions extends NativeLoraOptions {
  y: Float32Array;
}

export interface NativeLoraBackwardOptions extends NativeLoraOptions {
  gradY: Float32Array;
  /** grad_y·W (+ the low-rank term when xLora is absent). */
  gradX?: Float32Array;
  /** Only with xLora: the low-rank path's input gradient, [rows, inDim]. */
  gradXLora?: Float32Array;
  gradA?: Float32Array;
  gradB?: Float32Array;
  gradBias?: Float32Array;
}

/** Kernel entry points shared by both addons (the torch addon routes them through autograd ops). */
export interface NativeKernelExports {
  /** Resolves when `codes` (and `sqError`) are written. */
  rqEncode(options: NativeRqEncodeOptions): Promise<number>;
  /** Resolves with the loss; writes gradX/gradY when given. */
  mmdGaussian(options: NativeMmdOptions): Promise<number>;
  /** Resolves with the loss; writes gradA/gradB when given. */
  infoNce(options: NativeInfoNceOptions): Promise<number>;
  loraLinear(options: NativeLoraForwardOptions): Promise<number>;
  loraLinearBackward(options: NativeLoraBackwardOptions): Promise<number>;
}

export interface CoreBuildInfo {
  addon: 'mmesid_core';
  blas: string;
  openmp: number;
  hardwareThreads: number;
  cuda: boolean;
  /** CMAKE_CUDA_ARCHITECTURES the twins were compiled for, when cuda is true. */
  cudaArchitectures?: string;
  cudaDeviceAvailable: boolean;
}

export interface TorchBuildInfo {
  addon: 'mmesid_torch';
  torchVersion: string;
  blas: string;
  torchThreads: number;
  cuda: boolean;
}

/** Bench-only: C[m, n] = A[m, k]·B[k, n] through the kernels' BLAS. */
export interface NativeSgemmOptions {
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  m: number;
  n: number;
  k: number;
  threads: number;
}

/** Bench-only: a libtorch eager composite of one kernel's maths (forward + autograd backward). */
export type NativeCompositeOptions =
  | { op: 'rqGreedy'; x: Float32Array; codebooks: Float32Array; codes: Int32Array; n: number; dim: number; levels: number; codebookSize: number }
  | { op: 'mmd'; x: Float32Array; y: Float32Array; gradX: Float32Array; gradY: Float32Array; n: number; dim: number; alphas: number[] }
  | { op: 'infoNce'; a: Float32Array; b: Float32Array; gradA: Float32Array; gradB: Float32Array; n: number; dim: number; temperature: number; symmetric: boolean }
  | { op: 'linear'; x: Float32Array; weight: Float32Array; gradY: Float32Array; gradX: Float32Array; rows: number; inDim: number; outDim: number }
  | {
      op: 'lora';
      x: Float32Array;
      weight: Float32Array;
      loraA: Float32Array;
      loraB: Float32Array;
      gradY: Float32Array;
      gradX: Float32Array;
      gradA: Float32Array;
      gradB: Float32Array;
      rows: number;
      inDim: number;
      outDim: number;
      rank: number;
      scale: number;
    }
  | ({
      /** SASRec training steps, one per batch; `neg` given = bce, absent = ce. Resolves with the mean loss. */
      op: 'sasrecTrain';
      /** false: our train::SasrecStepper; true: the torch::nn + torch::optim baseline. */
      eager: boolean;
      /** int32 [count, batch, maxLen] each, left-padded with 0 (pos 0 = no target). */
      x: Int32Array;
      pos: Int32Array;
      neg?: Int32Array;
      batch: number;
      count: number;
    } & NativeCompositeSasrecShape)
  | ({
      /** Eager full-ranking evaluation, history masked; resolves with the sum of nDCG@10. */
      op: 'sasrecEvaluate';
      /** int32 [users, maxLen], left-padded with 0. */
      inputs: Int32Array;
      /** int32 [users], in [1, numItems]. */
      targets: Int32Array;
      /** int32 [users + 1], CSR row pointers into historyItems. */
      historyOffsets: Int32Array;
      historyItems: Int32Array;
      evalBatch: number;
    } & NativeCompositeSasrecShape);

/** The SASRec shape of the bench-only SASRec composites (models are built once per process per shape). */
export interface NativeCompositeSasrecShape {
  numItems: number;
  dim: number;
  blocks: number;
  heads: number;
  maxLen: number;
  dropout: number;
}

/**
 * Full-ranking evaluation of one batch of users (native/eval/ranking.h). Items 1..numItems are ranked;
 * history items other than the target are masked; ties go to the lower item id. Writes `ranks` and
 * `sums` in place.
 */
export interface NativeEvaluateRankingOptions {
  /** float32 [batch, numItems + 1], column 0 = padding. */
  scores: Float32Array;
  batch: number;
  numItems: number;
  /** int32 [batch], in [1, numItems]. */
  targets: Int32Array;
  /** int32 [batch + 1], CSR row pointers into historyItems. */
  historyOffsets: Int32Array;
  /** int32, items in [0, numItems] (0 ignored). */
  historyItems: Int32Array;
  /** int32 [numItems + 1]; enables the cold/warm groups. */
  trainFrequency?: Int32Array;
  /** Cold: trainFrequency[target] <= coldThreshold. */
  coldThreshold: number;
  /** Cut-offs K, each >= 1. */
  ks: number[];
  threads: number;
  /** out: int32 [batch], the target's rank (0 = first). */
  ranks: Int32Array;
  /** out: float64 [3 × (1 + 3 × ks.length)]: groups all, cold, warm; each [users, HR@k…, nDCG@k…, MRR@k…]. */
  sums: Float64Array;
}

/**
 * The tokenization service (native/tokenizer, no libtorch): weights copied into native memory by
 * `tokenizerCreate`; encoder MLP + greedy residual assignment per the tokenizer specification.
 */
export interface NativeTokenizerLayer {
  /** float32 [outDim, inDim] (nn.Linear layout). */
  weight: Float32Array;
  /** float32 [outDim]. */
  bias: Float32Array;
  inDim: number;
  outDim: number;
}

export interface NativeTokenizerModality {
  name: string;
  /** Encoder layers in order; ReLU between layers, none after the last. */
  layers: NativeTokenizerLayer[];
  /** float32 [levels, codes, codeDim]. */
  codebooks: Float32Array;
  levels: number;
  codes: number;
  codeDim: number;
}

export interface NativeTokenizerEncodeOptions {
  /** A modality name given to tokenizerCreate. */
  modality: string;
  /** float32 [n, inputDim], read in place. */
  x: Float32Array;
  n: number;
  /** out: int32 [n, levels]. */
  codes: Int32Array;
  /** BLAS + RQ kernel threads (0 = all cores). */
  threads: number;
  /** Added to row numbers in error messages (position of x's first row in the caller's table). */
  rowOffset?: number;
  /** Argument name in error messages (default "options.x"). */
  label?: string;
  /** Test-only: the naive references (double-accumulated MLP + rq_encode_reference). */
  _reference?: boolean;
}

/** A native tokenizer. Concurrent encode calls are safe; dispose() while calls run is safe. */
export interface NativeTokenizerHandle {
  /** Resolves when `codes` is written. Throws (synchronously) with code ERR_MMESID_INVALID_ARGUMENT after dispose(). */
  encode(options: NativeTokenizerEncodeOptions): Promise<number>;
  /** Drops the weights (freed when the last running encode ends). Idempotent. */
  dispose(): void;
  /** Bytes of native weights held (0 after dispose). */
  bytes(): number;
}

/** Bench-only (torch addon): the tokenization contract as libtorch eager ops (at::linear + relu, then a
 * torch-only greedy residual argmin), NOT the mmesid kernels. Layers/codebooks as NativeTokenizerModality. */
export interface NativeTokenizeEagerOptions {
  x: Float32Array;
  n: number;
  layers: NativeTokenizerLayer[];
  codebooks: Float32Array;
  levels: number;
  codes: number;
  codeDim: number;
  /** out: int32 [n, levels]. */
  out: Int32Array;
}

/** mmesid_core.node */
export interface CoreAddon extends NativeKernelExports {
  buildInfo(): CoreBuildInfo;
  /** Resolves (with 0) when `ranks` and `sums` are written. */
  evaluateRanking(options: NativeEvaluateRankingOptions): Promise<number>;
  _sgemm(options: NativeSgemmOptions): Promise<number>;
  /** @throws Error with code ERR_MMESID_INVALID_ARGUMENT on inconsistent shapes or non-finite weights. */
  tokenizerCreate(options: { modalities: NativeTokenizerModality[] }): NativeTokenizerHandle;
}

/** mmesid_torch.node */
/** Fully-defaulted options of `sasrecTrain` (validated by lib/sasrec.ts). */
export interface NativeSasrecTrainOptions {
  /** int32 [users + 1], CSR row pointers of the users' chronological items. */
  offsets: Int32Array;
  /** int32, every user's items, each in [1, numItems]. */
  items: Int32Array;
  numItems: number;
  dim: number;
  blocks: number;
  heads: number;
  maxLen: number;
  dropout: number;
  loss: 'bce' | 'ce';
  lr: number;
  batchSize: number;
  epochs: number;
  patience: number;
  seed: number;
  /** ATen threads of the training thread (0 = all cores). */
  threads: number;
  /** Checkpoint file written atomically after every epoch; absent: none. */
  checkpoint?: string;
  /** Continue from `checkpoint` when it exists. */
  resume?: boolean;
}

/** Means over the evaluated users, one value per cut-off of `ks`. */
export interface NativeSasrecMetrics {
  users: number;
  hr: number[];
  ndcg: number[];
  mrr: number[];
}

export interface NativeSasrecEpoch {
  epoch: number;
  /** Mean training loss of the epoch. */
  loss: number;
  /** Wall seconds of the training steps / of the validation. */
  seconds: number;
  evalSeconds: number;
  improved: boolean;
  valid: NativeSasrecMetrics;
}

export type NativeSasrecProgress =
  | ({ kind: 'epoch' } & NativeSasrecEpoch)
  | { kind: 'step'; epoch: number; step: number; steps: number; loss: number; samplesPerSecond: number };

export interface NativeSasrecResult {
  /** float32 [numItems + 1, dim] of the best epoch, row 0 = padding. */
  itemEmbeddings: Float32Array;
  epochs: NativeSasrecEpoch[];
  bestEpoch: number;
  stoppedEarly: boolean;
  trainingRows: number;
  /** The checkpoint's epoch when the run resumed from one, else 0. */
  resumedFromEpoch: number;
  /** Test metrics of the best epoch's weights. */
  test: NativeSasrecMetrics;
  /** Cut-offs of every metrics list: [5, 10, 20]. */
  ks: number[];
  /** Every parameter of the best weights, in the model's fixed order. */
  parameters: NativeNamedTensor[];
}

/** A named float32 tensor (row-major). */
export interface NativeNamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Options of `sasrecScorer`: the architecture and the trained weights (copied once). */
export interface NativeSasrecScorerOptions {
  numItems: number;
  dim: number;
  blocks: number;
  heads: number;
  maxLen: number;
  parameters: NativeNamedTensor[];
}

/** A loaded SASRec. */
export interface NativeSasrecScorer {
  /** Scores every item from the last position: inputs int32 [batch, maxLen] (left-padded with 0) → scores float32 [batch, numItems + 1] (column 0 = −inf). */
  score(options: { inputs: Int32Array; batch: number; scores: Float32Array }): Promise<number>;
}

/** A running training: settle with `promise`; `cancel()` makes it reject with code ERR_MMESID_CANCELLED. */
export interface NativeSasrecHandle {
  promise: Promise<NativeSasrecResult>;
  cancel(): void;
}

export interface TorchAddon extends NativeKernelExports {
  buildInfo(): TorchBuildInfo;
  /** Trains SASRec on a thread of its own; one training per process at a time. */
  sasrecTrain(options: NativeSasrecTrainOptions, onProgress: (event: NativeSasrecProgress) => void): NativeSasrecHandle;
  /** @throws Error with code ERR_MMESID_INVALID_ARGUMENT when a weight is missing, unknown or mis-shaped. */
  sasrecScorer(options: NativeSasrecScorerOptions): NativeSasrecScorer;
  /** Sets libtorch's intra-op thread count (process-wide). */
  setThreads(threads: number): void;
  _composite(options: NativeCompositeOptions): Promise<number>;
  _tokenizeEager(options: NativeTokenizeEagerOptions): Promise<number>;
}

// ---------------------------------------------------------------- mmesid_torch.node: MM-RQ-VAE tokenizer
/** One modality's item table: float32 [rows, dim], rows = numItems + 1 (row 0 = padding). */
export interface NativeRqvaeTable {
  data: Float32Array;
  rows: number;
  dim: number;
}

/** Fully-defaulted options of `tokenizerTrain` (validated by lib/tokenizer/train.ts; native re-checks and rejects with ERR_MMESID_INVALID_ARGUMENT naming the option). */
export interface NativeRqvaeTrainOptions {
  /** 1–3 modalities, every table with the same rows; trained in the order collab, text, visual. */
  tables: { collab?: NativeRqvaeTable; text?: NativeRqvaeTable; visual?: NativeRqvaeTable };
  /** Encoder hidden sizes of every modality (the decoder mirrors them), e.g. [256, 128]. */
  hidden: number[];
  /** L, K, e. */
  levels: number;
  codes: number;
  codeDim: number;
  recon: 'mmd' | 'mse';
  align: 'infonce' | 'mmd' | 'none';
  reconWeight: number;
  alignWeight: number;
  /** Commitment weight. */
  beta: number;
  /** InfoNCE temperature. */
  temperature: number;
  /** InfoNCE in both directions (default false: collab → other, as the authors' info_nce package). */
  infonceSymmetric?: boolean;
  /** α of the one Gaussian MMD kernel (default 0.5). */
  mmdAlpha?: number;
  /** Gradient through the residuals: 'exact' (default) or 'lc-rec' (the authors' code: r_l, l >= 1, detached). */
  residualGradient?: 'exact' | 'lc-rec';
  /** Levels assigned by Sinkhorn while training (official: [levels − 1]; [] for none). */
  sinkhornLevels: number[];
  sinkhornEpsilon: number;
  sinkhornIterations: number;
  kmeansInit: 'plain' | 'constrained' | 'none';
  /** Lloyd iterations per level (default 20). */
  kmeansIterations?: number;
  lr: number;
  weightDecay: number;
  batchSize: number;
  epochs: number;
  /** Early stopping on the epoch's mean total loss. */
  patience: number;
  seed: number;
  /** ATen threads of the training thread (0 = all cores; 1 for bit-exact runs). */
  threads: number;
  /** Checkpoint file written atomically after every epoch; absent: none. */
  checkpoint?: string;
  /** Continue from `checkpoint` when it exists (every setting but epochs/patience/threads must match). */
  resume?: boolean;
}

/** Losses of an epoch (means over its steps): total and the unweighted parts (recon, rq summed over modalities; align over pairs). */
export interface NativeRqvaeEpoch {
  epoch: number;
  loss: number;
  recon: number;
  align: number;
  rq: number;
  seconds: number;
  /** Lowest mean total loss so far. */
  improved: boolean;
}

export type NativeRqvaeProgress =
  | ({ kind: 'epoch' } & NativeRqvaeEpoch)
  | { kind: 'step'; epoch: number; step: number; steps: number; loss: number; recon: number; align: number; rq: number };

/** One modality's outputs from the best weights (greedy inference assignment). */
export interface NativeRqvaeModalityResult {
  name: 'collab' | 'text' | 'visual';
  /** int32 [numItems, levels] of items 1..numItems (no padding row). */
  codes: Int32Array;
  /** float32 [numItems, codeDim]: z_q = Σ_l C_l[code_l]. */
  quantized: Float32Array;
  /** Mean over items and columns of (decoder(z_q) − x)². */
  reconMse: number;
}

export interface NativeRqvaeResult {
  /** The best (lowest-loss) epoch's weights, named as in tokenizer.safetensors. */
  parameters: NativeNamedTensor[];
  epochs: NativeRqvaeEpoch[];
  bestEpoch: number;
  stoppedEarly: boolean;
  /** The checkpoint's epoch when the run resumed from one, else 0. */
  resumedFromEpoch: number;
  numItems: number;
  /** In the order collab, text, visual (those trained). */
  modalities: NativeRqvaeModalityResult[];
}

export interface NativeRqvaeTrainHandle {
  promise: Promise<NativeRqvaeResult>;
  cancel(): void;
}

/** A trained tokenizer: its weights and the manifest's architecture fields (`codebookSize` = the manifest's `codes`). */
export interface NativeRqvaeModel {
  weights: NativeNamedTensor[];
  levels: number;
  codebookSize: number;
  codeDim: number;
  modalities: { name: string; inputDim: number; hidden: number[] }[];
}

/** `tokenizerEncode`: x float32 [n, inputDim] of `modality` → codes int32 [n, levels] (written). */
export interface NativeRqvaeEncodeOptions extends NativeRqvaeModel {
  modality: string;
  x: Float32Array;
  n: number;
  codes: Int32Array;
}

/** Test-only: the RQ loss of x (greedy codes, or `frozen`), its codes and ∂rq/∂parameter. */
export interface NativeRqvaeProbeOptions extends NativeRqvaeModel {
  modality: string;
  x: Float32Array;
  n: number;
  beta: number;
  frozen?: Int32Array;
  /** Default `<modality>.encoder.0.weight`. */
  parameter?: string;
  /** Default 'exact'. */
  residualGradient?: 'exact' | 'lc-rec';
  codes: Int32Array;
  grad: Float32Array;
}

// Declaration merging: the tokenizer's exports of mmesid_torch.node.
export interface TorchAddon {
  /** Trains the MM-RQ-VAE on a thread of its own; one tokenizer training per process at a time. Rejects with ERR_MMESID_CANCELLED after cancel(). */
  tokenizerTrain(options: NativeRqvaeTrainOptions, onProgress: (event: NativeRqvaeProgress) => void): NativeRqvaeTrainHandle;
  /** The libtorch inference path (at::addmm + ReLU encoder, greedy rq_encode). Resolves with 0. @throws ERR_MMESID_INVALID_ARGUMENT for missing/mis-shaped weights. */
  tokenizerEncode(options: NativeRqvaeEncodeOptions): Promise<number>;
  /** Test-only: Sinkhorn-balanced assignment of distances [rows, cols] → codes [rows]. */
  _tokenizerSinkhorn(options: { distances: Float32Array; rows: number; cols: number; epsilon: number; iterations: number; codes: Int32Array }): Promise<number>;
  /** Test-only: resolves with the RQ loss. */
  _tokenizerRqProbe(options: NativeRqvaeProbeOptions): Promise<number>;
  /** Test-only: the trainer's k-means (k-means++ from a sampler seeded by `seed`) of x [n, dim] → centroids [k, dim] and each row's assignment to them (written). */
  _tokenizerKmeans(options: { x: Float32Array; n: number; dim: number; k: number; iterations: number; constrained: boolean; seed: number; centroids: Float32Array; assignment: Int32Array }): Promise<number>;
}

// ---------------------------------------------------------------- mmesid_torch.node: the LLM (Llama + LoRA)


/** The architecture fields the native Llama reads (lib/llm/checkpoint.ts readLlamaConfig validates them). */
export interface NativeLlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Divides numAttentionHeads (grouped-query attention when smaller). */
  numKeyValueHeads: number;
  /** Even. */
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** type 'none' | 'llama3' | 'linear'; the factors are read for llama3 only (factor for linear too). */
  ropeScaling: { type: string; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };
  /** lm_head = embed_tokens. */
  tieWordEmbeddings: boolean;
  /** q/k/v/o biases. */
  attentionBias: boolean;
  /** gate/up/down biases. */
  mlpBias: boolean;
}

/** Options of `llmLoad`. */
export interface NativeLlmLoadOptions {
  /** The safetensors files holding the weights (one, or every shard). */
  files: string[];
  config: NativeLlamaConfig;
  dtype: 'float32' | 'bfloat16' | 'float16';
  /** A libtorch device string: "cpu", "cuda", "cuda:1". */
  device: string;
  /** ATen intra-op threads used by this model's calls; 0 = all cores. */
  threads: number;
}

/** Options of NativeLlm.forward: token ids OR input embeddings, row-major [batch, length(, hidden)]. */
export interface NativeLlmForwardOptions {
  batch: number;
  length: number;
  inputIds?: Int32Array;
  inputsEmbeds?: Float32Array;
  /** int32 [batch, length], 1 = token, 0 = padding. */
  attentionMask?: Int32Array;
  /** int32 [batch, length]; default 0..length−1. */
  positionIds?: Int32Array;
  /** Receives the last hidden states float32 [batch, length, hidden]. */
  hidden?: Float32Array;
  /** Receives the logits float32 [batch, length, vocab]. */
  logits?: Float32Array;
  /** LoRA dropout on (default false). */
  training?: boolean;
}

export interface NativeLlmGenerateOptions {
  promptIds: Int32Array;
  maxNewTokens: number;
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stopIds: Int32Array;
}

export interface NativeLoraOptionsOfModel {
  rank: number;
  alpha: number;
  dropout: number;
  targetModules: string[];
  seed: number;
}

export interface NativeLlmInfo {
  dtype: string;
  device: string;
  baseParameters: number;
  loraParameters: number;
  lora: { rank: number; alpha: number; dropout: number; targetModules: string[] } | null;
}

/** A loaded Llama. Calls on one model are serialised; synchronous mutators throw ERR_MMESID_NATIVE while a call runs. */
export interface NativeLlm {
  forward(options: NativeLlmForwardOptions): Promise<undefined>;
  generate(options: NativeLlmGenerateOptions): Promise<Int32Array>;
  /** Makes a running generate() return the tokens so far. */
  cancelGeneration(): void;
  info(): NativeLlmInfo;
  applyLora(options: NativeLoraOptionsOfModel): void;
  loraTensors(): { name: string; shape: number[] }[];
  /** Writes adapter_model.safetensors (PEFT names) atomically. */
  saveAdapter(file: string): Promise<undefined>;
  /** Reads an adapter_model.safetensors into the applied adapters (names and shapes must match). @throws ERR_MMESID_DATA_FORMAT */
  loadAdapter(file: string): Promise<undefined>;
  mergeLora(): void;
  dropLora(): void;
  dispose(): Promise<undefined>;
  /** LoRA language-model fine-tuning on a thread of its own (one LLM training per process at a time). */
  trainLora(options: NativeLmTrainOptions, onProgress: (step: TrainStep) => void): { promise: Promise<TrainResult>; cancel(): void };
  /** Test-only: next-token cross-entropy on inputIds [batch, length], one backward; which tensors got gradients. */
  _gradientProbe(options: { inputIds: Int32Array; batch: number; length: number; training: boolean }): Promise<{
    loss: number;
    /** Per LoRA tensor (loraTensors() order), the gradient's L2 norm, or −1 when it got none. */
    loraGradNorms: Float64Array;
    /** Base weights that require or hold a gradient (0 when frozen). */
    baseGradients: number;
  }>;
}

/** Options of NativeLlm.trainLora: the step loop's (lib/llm/train.ts) plus the data. */
export interface NativeLmTrainOptions extends NativeLoopOptions {
  /** Sequence i = tokens[offsets[i], offsets[i + 1]). */
  offsets: Float64Array;
  tokens: Int32Array;
  maxLength: number;
  microBatch: number;
  gradientCheckpointing: boolean;
  autocast: 'none' | 'bfloat16' | 'float16';
  /** The run's identity, stored in checkpoints. */
  fingerprint: string;
}

/** A parsed safetensors header (test export). */
export interface NativeSafetensorsHeader {
  tensors: { name: string; dtype: string; shape: number[]; begin: number; end: number }[];
  metadata: Record<string, string>;
  dataStart: number;
}

/** One modality of the MME-SID head: its item table [numItems, dim] (row 0 padding), semantic IDs [numItems, levels] (row 0 = −1) and codebooks [levels, codes, hidden]. With sids, levels and codes (K, the code-table size also for random tables) are required. */
export interface NativeMmesidModality {
  name: string;
  table: Float32Array;
  dim: number;
  sids?: Int32Array;
  levels?: number;
  codes?: number;
  codebooks?: Float32Array;
}

/** Options of `mmesidHead` (native/torch/models/mmesid.h). numItems counts the padding row. */
export interface NativeMmesidHeadOptions {
  variant: string;
  fusion: boolean;
  temperature: number;
  hidden: number;
  scoreChunk: number;
  seed: number;
  numItems: number;
  frequency: Float64Array;
  modalities: NativeMmesidModality[];
}

/** Histories (CSR, oldest first) and the prompt ids around them. */
export interface NativeMmesidHistories {
  offsets: Float64Array;
  items: Int32Array;
  prefix: Int32Array;
  suffix: Int32Array;
}

/** An MME-SID head on a loaded Llama; its calls take the Llama's lock. */
export interface NativeMmesidHead {
  /** Fine-tunes the adapters + head; `stopAt` > 0 returns after that step (checkpointed). */
  train(
    options: NativeLoopOptions & { offsets: Float64Array; items: Int32Array; targets: Int32Array; prefix: Int32Array; suffix: Int32Array; microBatch: number; gradientCheckpointing: boolean; fingerprint: string; stopAt: number; fusedLora?: boolean; referenceHead?: boolean },
    onProgress: (step: TrainStep) => void,
  ): { promise: Promise<TrainResult>; cancel(): void };
  /**
   * Every item's score for each history: scores float32 [B, numItems] (column 0 = padding). Histories run
   * in groups of similar length unless oneBatch (one batch padded to the longest: the eager baseline).
   */
  score(options: NativeMmesidHistories & { scores: Float32Array; fusedLora?: boolean; oneBatch?: boolean }): Promise<undefined>;
  /** Top-k per history (padding, and the history when excludeHistory, never returned). */
  topK(options: NativeMmesidHistories & { k: number; excludeHistory: boolean; ids: Int32Array; values: Float32Array }): Promise<undefined>;
  save(file: string): Promise<undefined>;
  /** @throws ERR_MMESID_DATA_FORMAT when the tensors do not match the head. */
  load(file: string): Promise<undefined>;
  tensor(what: 'itemInputs' | 'targetItems' | 'itemVectors' | 'fusionWeights' | 'codes', modality?: number): Promise<Float32Array>;
  parameterNames(): string[];
  /**
   * Test-only: the chunked cross-entropy of h [B, H] against targets, ∂loss/∂h into gradH, every head
   * parameter's gradient concatenated in parameterNames() order into gradHead; reference: the plain loss.
   */
  _loss(options: { h: Float32Array; targets: Int32Array; chunk: number; gradH: Float32Array; gradHead?: Float32Array; reference?: boolean }): Promise<number>;
  dispose(): Promise<undefined>;
}

// Declaration merging: the LLM's exports of mmesid_torch.node.
export interface TorchAddon {
  /** @throws (rejects) ERR_MMESID_DATA_FORMAT (with file) for a malformed file or tensors not matching the config. */
  llmLoad(options: NativeLlmLoadOptions): Promise<NativeLlm>;
  /** Bench-only: starts a peak measurement of ATen CPU tensor memory; returns the bytes live now. */
  _peakReset(): number;
  /** Bench-only: the peak since _peakReset, bytes. */
  _peakBytes(): number;
  /** Writes a random-weight checkpoint of `config` (N(0, 0.02²), unit norm gains) to `file` (safetensors, HF names). */
  llmWriteRandom(options: { config: NativeLlamaConfig; seed: number; file: string }): Promise<undefined>;
  /** An MME-SID head on a loaded Llama. @throws ERR_MMESID_INVALID_ARGUMENT for inconsistent tables/codebooks. */
  mmesidHead(llm: NativeLlm, options: NativeMmesidHeadOptions): Promise<NativeMmesidHead>;
  /**
   * Bench-only: a random-weight Llama with LoRA adapters (B drawn too); `step()` = one forward (last hidden
   * states) + backward of mean(hidden²) on fixed random ids, adapters fused (`fused`) or plain ATen ops;
   * `peakBytes()` = one step's peak ATen tensor memory above what was live before it.
   */
  _llmBench(options: {
    config: NativeLlamaConfig;
    seed: number;
    batch: number;
    length: number;
    rank: number;
    alpha: number;
    targetModules: string[];
    fused: boolean;
    threads: number;
  }): Promise<{ step(): Promise<undefined>; peakBytes(): Promise<number>; parameters: number }>;
  /** Test-only: the learning-rate multiplier of every step of a schedule. */
  _lrMultipliers(options: { schedule: 'constant' | 'linear' | 'cosine'; warmupSteps: number; totalSteps: number }): Float64Array;
  /** Test-only: clip_grad_norm over gradients concatenated in `grads` (clipped in place); returns the norm before clipping. */
  _clipGradNorm(options: { grads: Float32Array; sizes: Float64Array; maxNorm: number }): number;
  /** Test-only: validates a safetensors header held in memory. @throws ERR_MMESID_DATA_FORMAT */
  _safetensorsParse(bytes: Uint8Array): NativeSafetensorsHeader;
}
