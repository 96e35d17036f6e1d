/**
 * Quality measures of a semantic-ID tokenizer, computed the same way for every run:
 *
 * - **Codebook usage** per level: codes used at least once, their fraction of K, and the perplexity
 *   exp(H) of the level's code distribution over the items (K when perfectly balanced, 1 when collapsed).
 * - **Collision rate**: the fraction of items whose full semantic ID (all L codes) is shared with at
 *   least one other item.
 * - **Kendall τ of distances**: how well quantization preserves the order of pairwise distances.
 *   Pair sampling: `pairs` unordered item pairs (i, j), i ≠ j, drawn uniformly with replacement from the
 *   items by a seeded generator (sfc32, the synthetic data's generator); for each pair the Euclidean
 *   distance between the ORIGINAL input embeddings and between the QUANTIZED vectors z_q (Σ of the
 *   chosen codewords) is taken; τ-b between the two lists is then computed EXACTLY on that sample
 *   (Knight's O(P log P) algorithm, ties in either list handled by the τ-b correction).
 *   With every pair of a small set the sample is the whole population.
 */
import { InvalidArgumentError } from '../errors';
import { requireInteger } from '../validate';

/** Usage of one level's codebook. */
export interface LevelUsage {
  /** Codes used by at least one item. */
  used: number;
  /** used / K. */
  fraction: number;
  /** exp(entropy) of the code distribution (natural log), in [1, K]. */
  perplexity: number;
}

/**
 * Per-level usage. @param codes int32 [n, levels] row-major, each in [0, codesPerLevel)
 * @throws InvalidArgumentError on a code out of range or a length that is not n · levels
 */
export function codebookUsage(codes: Int32Array, levels: number, codesPerLevel: number): LevelUsage[] {
  requireInteger(levels, 'levels', 1);
  requireInteger(codesPerLevel, 'codesPerLevel', 1);
  if (codes.length % levels !== 0) throw new InvalidArgumentError('codes', `a length divisible by levels (${levels})`, codes.length);
  const n = codes.length / levels;
  return Array.from({ length: levels }, (_, l) => {
    const counts = new Float64Array(codesPerLevel);
    for (let i = 0; i < n; i += 1) {
      const c = codes[i * levels + l]!;
      if (c < 0 || c >= codesPerLevel) throw new InvalidArgumentError(`codes[${i * levels + l}]`, `a code in [0, ${codesPerLevel})`, c);
      counts[c]! += 1;
    }
    let used = 0;
    let entropy = 0;
    for (const count of counts) {
      if (count === 0) continue;
      used += 1;
      const p = count / n;
      entropy -= p * Math.log(p);
    }
    return { used, fraction: used / codesPerLevel, perplexity: n > 0 ? Math.exp(entropy) : 0 };
  });
}

/** Fraction of the n items whose full code row (levels codes) equals another item's. */
export function collisionRate(codes: Int32Array, levels: number): number {
  requireInteger(levels, 'levels', 1);
  const n = Math.floor(codes.length / levels);
  if (n === 0) return 0;
  const counts = new Map<string, number>();
  const keys: string[] = new Array<string>(n);
  for (let i = 0; i < n; i += 1) {
    const key = codes.subarray(i * levels, (i + 1) * levels).join(',');
    keys[i] = key;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  let colliding = 0;
  for (const key of keys) if (counts.get(key)! > 1) colliding += 1;
  return colliding / n;
}

/** Number of discordant pairs (inversions) of `values`, sorting it in place (merge sort). */
function countInversions(values: Float64Array, scratch: Float64Array, lo: number, hi: number): number {
  if (hi - lo < 2) return 0;
  const mid = (lo + hi) >>> 1;
  let swaps = countInversions(values, scratch, lo, mid) + countInversions(values, scratch, mid, hi);
  let i = lo;
  let j = mid;
  let k = lo;
  while (i < mid && j < hi) {
    if (values[j]! < values[i]!) {
      swaps += mid - i;
      scratch[k++] = values[j++]!;
    } else {
      scratch[k++] = values[i++]!;
    }
  }
  while (i < mid) scratch[k++] = values[i++]!;
  while (j < hi) scratch[k++] = values[j++]!;
  for (let t = lo; t < hi; t += 1) values[t] = scratch[t]!;
  return swaps;
}

/** Σ t(t−1)/2 over runs of equal values of a sorted list. */
function tiedPairs(sorted: ArrayLike<number>): number {
  let total = 0;
  let run = 1;
  for (let i = 1; i <= sorted.length; i += 1) {
    if (i < sorted.length && sorted[i] === sorted[i - 1]) run += 1;
    else {
      total += (run * (run - 1)) / 2;
      run = 1;
    }
  }
  return total;
}

/**
 * Kendall's τ-b of two equally long lists, exactly, in O(P log P) (Knight 1966).
 * @returns τ-b in [−1, 1]; NaN when either list is constant (τ-b is undefined)
 * @throws InvalidArgumentError on different lengths or a NaN value
 */
export function kendallTau(x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x.length !== y.length) throw new InvalidArgumentError('y', `a list as long as x (${x.length})`, y.length);
  const n = x.length;
  for (let i = 0; i < n; i += 1) {
    if (Number.isNaN(x[i]!) || Number.isNaN(y[i]!)) throw new InvalidArgumentError(Number.isNaN(x[i]!) ? `x[${i}]` : `y[${i}]`, 'a number', NaN);
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => x[a]! - x[b]! || y[a]! - y[b]!);
  const total = (n * (n - 1)) / 2;
  const xTies = tiedPairs(order.map((i) => x[i]!));
  // Pairs tied in both x and y.
  let jointTies = 0;
  let run = 1;
  for (let k = 1; k <= n; k += 1) {
    if (k < n && x[order[k]!] === x[order[k - 1]!] && y[order[k]!] === y[order[k - 1]!]) run += 1;
    else {
      jointTies += (run * (run - 1)) / 2;
      run = 1;
    }
  }
  const ys = Float64Array.from(order, (i) => y[i]!);
  // Within runs of equal x the y's are already ascending, so they add no inversions.
  const swaps = countInversions(ys, new Float64Array(n), 0, n);
  const yTies = tiedPairs(ys);
  const concordantMinusDiscordant = total - xTies - yTies + jointTies - 2 * swaps;
  const denominator = Math.sqrt((total - xTies) * (total - yTies));
  return denominator === 0 ? NaN : concordantMinusDiscordant / denominator;
}

/** sfc32 seeded by splitmix32, as lib/data/synthetic.ts uses. */
function sfc32(seed: number): () => number {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

function distance(data: Float32Array, dim: number, i: number, j: number): number {
  let sum = 0;
  for (let k = 0; k < dim; k += 1) {
    const d = data[i * dim + k]! - data[j * dim + k]!;
    sum += d * d;
  }
  return Math.sqrt(sum);
}

/** Options of {@link distanceKendallTau}. */
export interface DistanceTauOptions {
  /** Sampled pairs. Default 10,000. */
  pairs?: number;
  /** Seed of the pair sampler. Default 1. */
  seed?: number;
}

/**
 * Kendall τ-b between original and quantized pairwise distances on a seeded sample of item pairs
 * (see the module comment).
 * @param original  float32 [n, originalDim], row-major
 * @param quantized float32 [n, quantizedDim], the same n items in the same order
 * @throws InvalidArgumentError on mismatched sizes or fewer than 2 items
 */
export function distanceKendallTau(original: Float32Array, originalDim: number, quantized: Float32Array, quantizedDim: number, options: DistanceTauOptions = {}): { tau: number; pairs: number; seed: number } {
  requireInteger(originalDim, 'originalDim', 1);
  requireInteger(quantizedDim, 'quantizedDim', 1);
  const n = original.length / originalDim;
  if (!Number.isInteger(n) || quantized.length !== n * quantizedDim) {
    throw new InvalidArgumentError('quantized', `[n, quantizedDim] with the n (${n}) rows of original`, quantized.length);
  }
  if (n < 2) throw new InvalidArgumentError('original', 'at least 2 items', n);
  const pairs = requireInteger(options.pairs ?? 10_000, 'options.pairs', 1);
  const seed = requireInteger(options.seed ?? 1, 'options.seed', 0, 2 ** 32 - 1);
  const next = sfc32(seed);
  const a = new Float64Array(pairs);
  const b = new Float64Array(pairs);
  for (let p = 0; p < pairs; p += 1) {
    const i = Math.floor(next() * n);
    let j = Math.floor(next() * (n - 1));
    if (j >= i) j += 1;
    a[p] = distance(original, originalDim, i, j);
    b[p] = distance(quantized, quantizedDim, i, j);
  }
  return { tau: kendallTau(a, b), pairs, seed };
}
