/**
 * The benchmark table: every trial names a kernel at one shape, the FLOPs it does, our implementation
 * and the baselines measured in the same process run. `npm run bench` runs each trial in a fresh process
 * (bench/run.ts → bench/trial.ts) and prints one table.
 */
import { createKernels, kernels } from '../lib/kernels';
import { core, hasTorch, torch } from '../lib/native';

export type Job = () => Promise<unknown>;

export interface Trial {
  name: string;
  kernel: 'sgemm' | 'rqEncode' | 'mmdGaussian' | 'infoNce' | 'loraLinear';
  /** Floating-point operations of one call of `ours` (the maths, not what an implementation happens to do). */
  flop: number;
  /** Items per call, for throughput columns (items/s) where it means something. */
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
];

/** Keeps the reference kernels reachable for ad-hoc comparisons from a REPL. */
export const referenceKernels = () => createKernels(core, { reference: true });
