/**
 * The demo: the synthetic data set's item features (lib/data/synthetic.ts: latent clusters) → residual codebooks fitted level by level with k-means
 * (assignment by the RQ kernel with one level, centroid update in JS) → a streaming, cancellable encode
 * of every item with a progress bar → semantic-ID statistics.
 */
import { SingleBar, Presets } from 'cli-progress';

import { generateSynthetic } from '../data/synthetic';
import { kernels } from '../kernels';

export interface DemoOptions {
  items: number;
  dim: number;
  levels: number;
  codes: number;
  beam: number;
  seed: number;
  signal?: AbortSignal;
  progress: boolean;
}

export interface DemoReport {
  items: number;
  dim: number;
  levels: number;
  codes: number;
  beam: number;
  fitItems: number;
  fitSeconds: number;
  encodeSeconds: number;
  itemsPerSecond: number;
  relativeError: number;
  codesUsed: number[];
  distinctIds: number;
  collisionRate: number;
  sample: number[][];
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/**
 * The items to tokenize: the text feature table of the library's synthetic data set (items in 64 latent
 * clusters, Gaussian noise around each cluster's centroid), without its padding row.
 */
function syntheticItems(n: number, dim: number, seed: number): Float32Array {
  const { text } = generateSynthetic({ seed, numItems: n, numUsers: 100, numClusters: Math.min(64, n), textDim: dim, visualDim: 1, maxLength: Math.min(30, n), minLength: Math.min(5, n) });
  return text.data.subarray(dim);
}

/** Lloyd's k-means on rows of `data`, assignments through kernels.rqEncode with one level. */
async function kmeans(data: Float32Array, dim: number, k: number, iterations: number, next: () => number): Promise<Float32Array> {
  const n = data.length / dim;
  const centroids = new Float32Array(k * dim);
  for (let c = 0; c < k; c += 1) {
    const row = Math.floor(next() * n);
    centroids.set(data.subarray(row * dim, (row + 1) * dim), c * dim);
  }
  for (let it = 0; it < iterations; it += 1) {
    const { codes } = await kernels.rqEncode({ x: data, dim, codebooks: centroids, levels: 1, codes: k });
    const sums = new Float64Array(k * dim);
    const counts = new Int32Array(k);
    for (let i = 0; i < n; i += 1) {
      const c = codes[i]!;
      counts[c] = counts[c]! + 1;
      for (let j = 0; j < dim; j += 1) sums[c * dim + j] = sums[c * dim + j]! + data[i * dim + j]!;
    }
    for (let c = 0; c < k; c += 1) {
      if (counts[c] === 0) {
        const row = Math.floor(next() * n); // re-seed an empty cluster
        centroids.set(data.subarray(row * dim, (row + 1) * dim), c * dim);
        continue;
      }
      for (let j = 0; j < dim; j += 1) centroids[c * dim + j] = sums[c * dim + j]! / counts[c]!;
    }
  }
  return centroids;
}

export async function runTokenizeDemo(o: DemoOptions): Promise<DemoReport> {
  const x = syntheticItems(o.items, o.dim, o.seed);
  const next = rng(o.seed + 1);

  const fitStart = performance.now();
  const fitItems = Math.min(o.items, 20_000);
  const residual = x.slice(0, fitItems * o.dim);
  const codebooks = new Float32Array(o.levels * o.codes * o.dim);
  for (let l = 0; l < o.levels; l += 1) {
    const book = await kmeans(residual, o.dim, o.codes, 10, next);
    codebooks.set(book, l * o.codes * o.dim);
    const { codes } = await kernels.rqEncode({ x: residual, dim: o.dim, codebooks: book, levels: 1, codes: o.codes });
    for (let i = 0; i < fitItems; i += 1) {
      const c = codes[i]!;
      for (let j = 0; j < o.dim; j += 1) residual[i * o.dim + j] = residual[i * o.dim + j]! - book[c * o.dim + j]!;
    }
  }
  const fitSeconds = (performance.now() - fitStart) / 1000;

  const bar = o.progress ? new SingleBar({ format: 'encode [{bar}] {percentage}% | {value}/{total} items | eta {eta}s', stream: process.stderr }, Presets.shades_classic) : undefined;
  bar?.start(o.items, 0);
  const encodeStart = performance.now();
  const { codes, sqError } = await kernels.rqEncode({
    x,
    dim: o.dim,
    codebooks,
    levels: o.levels,
    codes: o.codes,
    beam: o.beam,
    withError: true,
    ...(o.signal ? { signal: o.signal } : {}),
    onProgress: (done) => bar?.update(done),
  }).finally(() => bar?.stop());
  const encodeSeconds = (performance.now() - encodeStart) / 1000;

  let err = 0;
  let norm = 0;
  for (let i = 0; i < o.items; i += 1) err += sqError![i]!;
  for (const v of x) norm += v * v;
  const used = Array.from({ length: o.levels }, (_, l) => {
    const seen = new Set<number>();
    for (let i = 0; i < o.items; i += 1) seen.add(codes[i * o.levels + l]!);
    return seen.size;
  });
  const ids = new Map<string, number>();
  for (let i = 0; i < o.items; i += 1) {
    const key = codes.subarray(i * o.levels, (i + 1) * o.levels).join(',');
    ids.set(key, (ids.get(key) ?? 0) + 1);
  }
  let shared = 0;
  for (const count of ids.values()) if (count > 1) shared += count;
  return {
    items: o.items,
    dim: o.dim,
    levels: o.levels,
    codes: o.codes,
    beam: o.beam,
    fitItems,
    fitSeconds,
    encodeSeconds,
    itemsPerSecond: o.items / encodeSeconds,
    relativeError: err / norm,
    codesUsed: used,
    distinctIds: ids.size,
    collisionRate: shared / o.items,
    sample: Array.from({ length: Math.min(5, o.items) }, (_, i) => Array.from(codes.subarray(i * o.levels, (i + 1) * o.levels))),
  };
}
