/**
 * The four hot kernels of mmesid, callable from Node: residual-quantization encode, Gaussian MK-MMD,
 * InfoNCE and the LoRA linear layer. Every call validates its arguments (InvalidArgumentError naming the
 * argument, the expectation and the value), runs in a native worker off the JS thread, and returns a
 * Promise. Buffers are row-major Float32Array; they must not be modified or transferred while a call is
 * in flight (the native side reads them in place, without copying).
 *
 * @example
 *   import { kernels } from 'mmesid';
 *   const { codes } = await kernels.rqEncode({ x, dim: 64, codebooks, levels: 4, codes: 256 });
 */
import { CancelledError, InvalidArgumentError, fromNative } from './errors';
import { core } from './native';
import {
  optionalBoolean,
  optionalFloat32Array,
  optionalInteger,
  optionalSignal,
  requireFloat32Array,
  requireInteger,
  requireLength,
  requireObject,
  requirePositive,
  requirePositiveList,
  requireFinite,
  rowsOf,
} from './validate';
import type { NativeKernelExports, NativeLoraOptions } from '../typings/native';

/** Options of {@link Kernels.rqEncode}. */
export interface RqEncodeOptions {
  /** Items, [n, dim] float32 row-major. */
  x: Float32Array;
  /** Embedding dimension d. */
  dim: number;
  /** Codebooks, [levels, codes, dim] float32 row-major. */
  codebooks: Float32Array;
  /** L, number of residual levels. */
  levels: number;
  /** K, codewords per level. */
  codes: number;
  /** Beam width B (1 = greedy, the paper's choice; FAISS's default is 5). Default 1. */
  beam?: number;
  /** Also return each item's squared reconstruction error. Default false. */
  withError?: boolean;
  /** Worker threads for this call (0 = all cores). Default 0. */
  threads?: number;
  /** Cancels between chunks of items; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
  /** Called after each chunk with (items done, items total). */
  onProgress?: (done: number, total: number) => void;
}

export interface RqEncodeResult {
  /** [n, levels] int32, codes[i * levels + l] in [0, codes). */
  codes: Int32Array;
  /** [n] float32, ‖x_i − Σ_l C_l[code_il]‖², when `withError` was set. */
  sqError?: Float32Array;
}

/** Options of {@link Kernels.mmdGaussian}. */
export interface MmdOptions {
  /** [n, dim] float32, n >= 2. */
  x: Float32Array;
  /** [n, dim] float32 (same n as x). */
  y: Float32Array;
  dim: number;
  /** Relative bandwidths α (σ² = α · mean pairwise squared distance of [x; y]). Default [0.5]. */
  alphas?: number | number[];
  /** Fixed bandwidths σ (kernel exp(−‖u−v‖²/(2σ²))); selects fixed mode. Exclusive with `alphas`. */
  sigma?: number | number[];
  threads?: number;
}


export interface MmdResult {
  loss: number;
  /** ∂loss/∂x, [n, dim]. */
  gradX: Float32Array;
  /** ∂loss/∂y, [n, dim]. */
  gradY: Float32Array;
}

/** Options of {@link Kernels.infoNce}. */
export interface InfoNceOptions {
  /** [n, dim] float32. */
  a: Float32Array;
  /** [n, dim] float32, b_i is a_i's positive. */
  b: Float32Array;
  dim: number;
  /** τ > 0. */
  temperature: number;
  /** false: a→b only (default); true: ½(a→b + b→a). */
  symmetric?: boolean;
  threads?: number;
}

export interface InfoNceResult {
  loss: number;
  gradA: Float32Array;
  gradB: Float32Array;
}

/**
 * Options of {@link Kernels.loraLinear}: y = x·Wᵀ + bias + scale·(xLora·Aᵀ)·Bᵀ (PEFT layout), where
 * xLora = x unless given.
 */
export interface LoraLinearOptions {
  /** [rows, inDim] */
  x: Float32Array;
  /**
   * LoRA dropout (PEFT `lora_dropout`): the low-rank path's input, i.e. x after dropout, [rows, inDim].
   * Absent = x (no dropout; results identical to a call without it). When given, the backward returns
   * its gradient separately as `gradXLora` and `gradX` is grad_y·W only.
   */
  xLora?: Float32Array;
  /** [outDim, inDim], frozen. */
  weight: Float32Array;
  /** [outDim] */
  bias?: Float32Array;
  /** lora_A.weight, [rank, inDim] */
  loraA: Float32Array;
  /** lora_B.weight, [outDim, rank] */
  loraB: Float32Array;
  rows: number;
  inDim: number;
  outDim: number;
  rank: number;
  /** lora_alpha / rank. */
  scale: number;
  threads?: number;
}

export interface LoraLinearBackwardOptions extends LoraLinearOptions {
  /** ∂loss/∂y, [rows, outDim]. */
  gradY: Float32Array;
}

export interface LoraLinearBackwardResult {
  /** [rows, inDim]: gradY·W, plus scale·(gradY·B)·A when `xLora` was not given. */
  gradX: Float32Array;
  /** [rows, inDim] = scale·(gradY·B)·A, the gradient w.r.t. `xLora`; only when `xLora` was given. */
  gradXLora?: Float32Array;
  /** [rank, inDim] */
  gradA: Float32Array;
  /** [outDim, rank] */
  gradB: Float32Array;
  /** [outDim], when a bias was given. */
  gradBias?: Float32Array;
}

export interface Kernels {
  /**
   * Residual-quantization encode (greedy or beam search).
   * @throws InvalidArgumentError (rejection) on a bad argument, including NaN/Inf in x or codebooks.
   * @throws CancelledError when `signal` aborts.
   */
  rqEncode(options: RqEncodeOptions): Promise<RqEncodeResult>;
  /** Gaussian MK-MMD loss and its gradients (σ constant). @throws InvalidArgumentError */
  mmdGaussian(options: MmdOptions): Promise<MmdResult>;
  /** InfoNCE loss (cosine similarity / τ, diagonal positives) and its gradients. @throws InvalidArgumentError */
  infoNce(options: InfoNceOptions): Promise<InfoNceResult>;
  /** LoRA linear forward. @throws InvalidArgumentError */
  loraLinear(options: LoraLinearOptions): Promise<{ y: Float32Array }>;
  /** LoRA linear backward: gradients for x, A, B (and bias, and xLora when given). @throws InvalidArgumentError */
  loraLinearBackward(options: LoraLinearBackwardOptions): Promise<LoraLinearBackwardResult>;
}

const MAX_THREADS = 1024;

/** Items per native call of rqEncode: large enough that per-call codebook tables cost < ~2 %. */
function rqChunkRows(levels: number, codes: number): number {
  return Math.max(16384, 64 * levels * codes);
}

async function call<T>(run: () => Promise<T>): Promise<T> {
  const callerStack = new Error().stack;
  try {
    return await run();
  } catch (error) {
    throw fromNative(error, callerStack);
  }
}

function loraCommon(raw: Record<string, unknown>, reference: boolean): NativeLoraOptions {
  const rows = requireInteger(raw.rows, 'options.rows');
  const inDim = requireInteger(raw.inDim, 'options.inDim');
  const outDim = requireInteger(raw.outDim, 'options.outDim');
  const rank = requireInteger(raw.rank, 'options.rank');
  const x = requireFloat32Array(raw.x, 'options.x');
  const xLora = optionalFloat32Array(raw.xLora, 'options.xLora');
  const weight = requireFloat32Array(raw.weight, 'options.weight');
  const bias = optionalFloat32Array(raw.bias, 'options.bias');
  const loraA = requireFloat32Array(raw.loraA, 'options.loraA');
  const loraB = requireFloat32Array(raw.loraB, 'options.loraB');
  requireLength(x, rows * inDim, 'options.x', `[rows=${rows}, inDim=${inDim}]`);
  if (xLora) requireLength(xLora, rows * inDim, 'options.xLora', `[rows=${rows}, inDim=${inDim}] like options.x`);
  requireLength(weight, outDim * inDim, 'options.weight', `[outDim=${outDim}, inDim=${inDim}]`);
  if (bias) requireLength(bias, outDim, 'options.bias', `[outDim=${outDim}]`);
  requireLength(loraA, rank * inDim, 'options.loraA', `[rank=${rank}, inDim=${inDim}]`);
  requireLength(loraB, outDim * rank, 'options.loraB', `[outDim=${outDim}, rank=${rank}]`);
  return {
    x,
    ...(xLora ? { xLora } : {}),
    weight,
    ...(bias ? { bias } : {}),
    loraA,
    loraB,
    rows,
    inDim,
    outDim,
    rank,
    scale: requireFinite(raw.scale, 'options.scale'),
    threads: optionalInteger(raw.threads, 'options.threads', 0, 0, MAX_THREADS),
    ...(reference ? { _reference: true } : {}),
  };
}

/**
 * Builds the kernel API over an addon. `kernels` (exported) uses mmesid_core; tests and model code can
 * bind the same API to mmesid_torch's autograd ops, or (`reference: true`) to the naive references.
 * @internal
 */
export function createKernels(
  addon: () => NativeKernelExports,
  options: { reference?: boolean; rqStrategy?: 0 | 1 | 2 } = {},
): Kernels {
  const reference = options.reference === true;
  const flag = reference ? { _reference: true } : {};
  const strategy = options.rqStrategy ? { _strategy: options.rqStrategy } : {};

  return {
    async rqEncode(raw: RqEncodeOptions): Promise<RqEncodeResult> {
      const o = requireObject(raw, 'options');
      const dim = requireInteger(o.dim, 'options.dim');
      const levels = requireInteger(o.levels, 'options.levels', 1, 64);
      const codebookSize = requireInteger(o.codes, 'options.codes', 1, 2 ** 31 - 1);
      const x = requireFloat32Array(o.x, 'options.x');
      const codebooks = requireFloat32Array(o.codebooks, 'options.codebooks');
      const n = rowsOf(x, dim, 'options.x', 'options.dim');
      requireLength(codebooks, levels * codebookSize * dim, 'options.codebooks', `[levels=${levels}, codes=${codebookSize}, dim=${dim}]`);
      const maxBeam = Math.min(codebookSize ** levels, 4096);
      const beam = optionalInteger(o.beam, 'options.beam', 1, 1, maxBeam);
      const withError = optionalBoolean(o.withError, 'options.withError', false);
      const threads = optionalInteger(o.threads, 'options.threads', 0, 0, MAX_THREADS);
      const signal = optionalSignal(o.signal, 'options.signal');
      if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
        throw new InvalidArgumentError('options.onProgress', 'a function', o.onProgress);
      }
      const onProgress = o.onProgress as RqEncodeOptions['onProgress'];

      const codes = new Int32Array(n * levels);
      const sqError = withError ? new Float32Array(n) : undefined;
      const chunk = rqChunkRows(levels, codebookSize);
      for (let start = 0; start < n; start += chunk) {
        if (signal?.aborted) throw new CancelledError('rqEncode was cancelled');
        const rows = Math.min(chunk, n - start);
        await call(() =>
          addon().rqEncode({
            x: x.subarray(start * dim, (start + rows) * dim),
            codebooks,
            n: rows,
            dim,
            levels,
            codebookSize,
            beam,
            threads,
            codes: codes.subarray(start * levels, (start + rows) * levels),
            ...(sqError ? { sqError: sqError.subarray(start, start + rows) } : {}),
            ...flag,
            ...strategy,
          }),
        );
        onProgress?.(start + rows, n);
      }
      return sqError ? { codes, sqError } : { codes };
    },

    async mmdGaussian(raw: MmdOptions): Promise<MmdResult> {
      const o = requireObject(raw, 'options');
      const dim = requireInteger(o.dim, 'options.dim');
      const x = requireFloat32Array(o.x, 'options.x');
      const y = requireFloat32Array(o.y, 'options.y');
      const n = rowsOf(x, dim, 'options.x', 'options.dim');
      requireLength(y, n * dim, 'options.y', `[n=${n}, dim=${dim}] like options.x`);
      if (n < 2) throw new InvalidArgumentError('options.x', 'at least 2 rows (the estimator divides by n − 1)', x);
      if (o.alphas !== undefined && o.sigma !== undefined) {
        throw new InvalidArgumentError('options.sigma', 'no value when options.alphas is given (choose one bandwidth mode)', o.sigma);
      }
      const sigmas = o.sigma === undefined ? [] : requirePositiveList(o.sigma, 'options.sigma');
      const alphas = o.alphas === undefined ? [0.5] : requirePositiveList(o.alphas, 'options.alphas');
      const threads = optionalInteger(o.threads, 'options.threads', 0, 0, MAX_THREADS);
      const gradX = new Float32Array(n * dim);
      const gradY = new Float32Array(n * dim);
      const loss = await call(() => addon().mmdGaussian({ x, y, n, dim, alphas, sigmas, threads, gradX, gradY, ...flag }));
      return { loss, gradX, gradY };
    },

    async infoNce(raw: InfoNceOptions): Promise<InfoNceResult> {
      const o = requireObject(raw, 'options');
      const dim = requireInteger(o.dim, 'options.dim');
      const a = requireFloat32Array(o.a, 'options.a');
      const b = requireFloat32Array(o.b, 'options.b');
      const n = rowsOf(a, dim, 'options.a', 'options.dim');
      requireLength(b, n * dim, 'options.b', `[n=${n}, dim=${dim}] like options.a`);
      const temperature = requirePositive(o.temperature, 'options.temperature');
      const symmetric = optionalBoolean(o.symmetric, 'options.symmetric', false);
      const threads = optionalInteger(o.threads, 'options.threads', 0, 0, MAX_THREADS);
      const gradA = new Float32Array(n * dim);
      const gradB = new Float32Array(n * dim);
      const loss = await call(() => addon().infoNce({ a, b, n, dim, temperature, symmetric, threads, gradA, gradB, ...flag }));
      return { loss, gradA, gradB };
    },

    async loraLinear(raw: LoraLinearOptions): Promise<{ y: Float32Array }> {
      const common = loraCommon(requireObject(raw, 'options'), reference);
      const y = new Float32Array(common.rows * common.outDim);
      await call(() => addon().loraLinear({ ...common, y }));
      return { y };
    },

    async loraLinearBackward(raw: LoraLinearBackwardOptions): Promise<LoraLinearBackwardResult> {
      const o = requireObject(raw, 'options');
      const common = loraCommon(o, reference);
      const gradY = requireFloat32Array(o.gradY, 'options.gradY');
      requireLength(gradY, common.rows * common.outDim, 'options.gradY', `[rows=${common.rows}, outDim=${common.outDim}]`);
      const gradX = new Float32Array(common.rows * common.inDim);
      const gradXLora = common.xLora ? new Float32Array(common.rows * common.inDim) : undefined;
      const gradA = new Float32Array(common.rank * common.inDim);
      const gradB = new Float32Array(common.outDim * common.rank);
      const gradBias = common.bias ? new Float32Array(common.outDim) : undefined;
      await call(() =>
        addon().loraLinearBackward({
          ...common,
          gradY,
          gradX,
          ...(gradXLora ? { gradXLora } : {}),
          gradA,
          gradB,
          ...(gradBias ? { gradBias } : {}),
        }),
      );
      return { gradX, ...(gradXLora ? { gradXLora } : {}), gradA, gradB, ...(gradBias ? { gradBias } : {}) };
    },
  };
}

/** The kernels on mmesid_core.node (no libtorch needed). */
export const kernels: Kernels = createKernels(core);
