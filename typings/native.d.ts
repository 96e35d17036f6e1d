/**
 * The single written contract of what the native addons export. Only lib/native.ts loads a `.node`;
 * everything else goes through these types. All options objects are fully defaulted and validated by
 * the TypeScript layer before they reach native code; output buffers are allocated by the caller and
 * written in place. Every kernel call returns a Promise and runs on the libuv pool.
 *
 * Native failures reject with an Error carrying `code`: ERR_MMESID_INVALID_ARGUMENT,
 * ERR_MMESID_OUT_OF_MEMORY or ERR_MMESID_NATIVE.
 */

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
  gradX?: Float32Array;
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
    };

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

/** mmesid_core.node */
export interface CoreAddon extends NativeKernelExports {
  buildInfo(): CoreBuildInfo;
  /** Resolves (with 0) when `ranks` and `sums` are written. */
  evaluateRanking(options: NativeEvaluateRankingOptions): Promise<number>;
  _sgemm(options: NativeSgemmOptions): Promise<number>;
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
  /** Sets libtorch's intra-op thread count (process-wide). */
  setThreads(threads: number): void;
  _composite(options: NativeCompositeOptions): Promise<number>;
}
