/**
 * A deterministic synthetic data set with the structure a sequential recommender learns from, for
 * tests, demos and benchmarks that must not depend on downloaded data:
 *
 * - items belong to latent clusters (every cluster non-empty, assigned by a seeded shuffle);
 * - long-tail popularity: item weights follow Zipf, w = 1 / rank^s, over a seeded permutation of the
 *   ids (popularity is not correlated with the id, so the evaluator's lower-id tie rule favours nobody);
 * - sequential structure: a user's first item is drawn by popularity; each next item's cluster is drawn
 *   from a cluster transition matrix row of the previous item's cluster (a self-transition plus a few
 *   preferred successor clusters plus a uniform floor), then the item by popularity within that cluster;
 *   an item is not repeated within one user (redrawn; after a few tries a repeat is kept);
 * - every user has between `minLength` (default 5, "5-core"-like) and `maxLength` items;
 * - text and visual feature tables `[numItems + 1, dim]` (row 0 = padding = 0): each item's row is its
 *   cluster's centroid in that modality plus Gaussian noise; the modalities have different dims and
 *   independent centroids.
 *
 * The interactions come in exactly the shape {@link loadSequences} returns, so the splits and the
 * evaluator work on them unchanged. `numItems` is the catalogue size (an item may have no interactions).
 * Same options (seed included) → identical output: the generator is sfc32 (seeded by splitmix32), and
 * the Gaussian draws use Math.log/cos/sqrt, which V8 computes with its own portable code.
 */
import { createHash } from 'node:crypto';

import type { Sequences } from './sequences';
import type { EmbeddingTable } from './embeddings';
import { InvalidArgumentError } from '../errors';
import { optionalInteger, requireObject } from '../validate';

/** Options of {@link generateSynthetic}; every field has a default. */
export interface SyntheticOptions {
  /** PRNG seed, an integer in [0, 2^32). Default 1. */
  seed?: number;
  /** Default 1000. */
  numUsers?: number;
  /** Default 500. */
  numItems?: number;
  /** Latent clusters, <= numItems. Default 10. */
  numClusters?: number;
  /** Shortest user sequence, >= 1. Default 5. */
  minLength?: number;
  /** Longest user sequence, >= minLength and <= numItems. Default 30. */
  maxLength?: number;
  /** Mean of the (geometric) number of items beyond minLength. Default 5. */
  meanExtraLength?: number;
  /** Zipf exponent s of the item popularity, >= 0. Default 1. */
  zipfExponent?: number;
  /** Probability mass of staying in the same cluster, in [0, 1]. Default 0.3. */
  selfTransition?: number;
  /** Probability mass spread uniformly over all clusters, in [0, 1 − selfTransition]. Default 0.1. */
  uniformTransition?: number;
  /** Preferred successor clusters per cluster (share the remaining mass). Default 2. */
  successors?: number;
  /** Dim of the text feature table. Default 32. */
  textDim?: number;
  /** Dim of the visual feature table. Default 16. */
  visualDim?: number;
  /** Standard deviation of the per-item noise around the centroid (centroids are N(0, 1)). Default 0.5. */
  featureNoise?: number;
}

/** The generated data set. */
export interface SyntheticDataset {
  /** The interactions, as {@link loadSequences} returns them (`source` names the generator and seed). */
  sequences: Sequences;
  /** float32 [numItems + 1, textDim], row 0 = 0. */
  text: EmbeddingTable;
  /** float32 [numItems + 1, visualDim], row 0 = 0. */
  visual: EmbeddingTable;
  /** int32 [numItems + 1], each item's cluster (index 0 = −1). */
  clusters: Int32Array;
  /** float64 [numClusters · numClusters], row-major: P(next cluster | previous cluster). */
  transitions: Float64Array;
  /** float64 [numItems + 1], each item's unnormalized popularity weight (index 0 = 0). */
  popularity: Float64Array;
  /** The fully-defaulted options used. */
  options: Required<SyntheticOptions>;
}

/** sfc32: a small, fast, well-tested 32-bit PRNG; state from the seed by splitmix32. */
class Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = 1;
    for (let i = 0; i < 12; i += 1) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box–Muller, one value per call). */
  normal(): number {
    const u = 1 - this.uniform(); // (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }

  shuffle(array: Int32Array): void {
    for (let i = array.length - 1; i > 0; i -= 1) {
      const j = this.below(i + 1);
      const t = array[i]!;
      array[i] = array[j]!;
      array[j] = t;
    }
  }
}

/** Cumulative weights for sampling by binary search. */
function cumulative(weights: ArrayLike<number>): Float64Array {
  const out = new Float64Array(weights.length);
  let sum = 0;
  for (let i = 0; i < weights.length; i += 1) out[i] = sum += weights[i]!;
  return out;
}

/** Index i with cum[i−1] <= u·total < cum[i]. */
function draw(cum: Float64Array, random: Random): number {
  const target = random.uniform() * cum[cum.length - 1]!;
  let lo = 0;
  let hi = cum.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cum[mid]! > target) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function requireUnit(value: unknown, name: string, fallback: number, max = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max) {
    throw new InvalidArgumentError(name, `a number in [0, ${max}]`, value);
  }
  return value;
}

function resolve(options: SyntheticOptions | undefined): Required<SyntheticOptions> {
  const o = options === undefined ? {} : requireObject(options, 'options');
  const numItems = optionalInteger(o.numItems, 'options.numItems', 500, 2, 1 << 24);
  const minLength = optionalInteger(o.minLength, 'options.minLength', 5, 1, numItems);
  const selfTransition = requireUnit(o.selfTransition, 'options.selfTransition', 0.3);
  const meanExtraLength = requireUnit(o.meanExtraLength, 'options.meanExtraLength', 5, 1e6);
  const zipfExponent = requireUnit(o.zipfExponent, 'options.zipfExponent', 1, 10);
  const featureNoise = requireUnit(o.featureNoise, 'options.featureNoise', 0.5, 1e6);
  return {
    seed: optionalInteger(o.seed, 'options.seed', 1, 0, 2 ** 32 - 1),
    numUsers: optionalInteger(o.numUsers, 'options.numUsers', 1000, 1, 1 << 24),
    numItems,
    numClusters: optionalInteger(o.numClusters, 'options.numClusters', Math.min(10, numItems), 1, numItems),
    minLength,
    maxLength: optionalInteger(o.maxLength, 'options.maxLength', Math.min(30, numItems), minLength, numItems),
    meanExtraLength,
    zipfExponent,
    selfTransition,
    uniformTransition: requireUnit(o.uniformTransition, 'options.uniformTransition', Math.min(0.1, 1 - selfTransition), 1 - selfTransition),
    successors: optionalInteger(o.successors, 'options.successors', 2, 0, 1 << 16),
    textDim: optionalInteger(o.textDim, 'options.textDim', 32, 1, 1 << 16),
    visualDim: optionalInteger(o.visualDim, 'options.visualDim', 16, 1, 1 << 16),
    featureNoise,
  };
}

/** Centroid + noise rows for one modality. */
function featureTable(random: Random, clusters: Int32Array, numClusters: number, dim: number, noise: number): EmbeddingTable {
  const centroids = new Float64Array(numClusters * dim);
  for (let i = 0; i < centroids.length; i += 1) centroids[i] = random.normal();
  const rows = clusters.length;
  const data = new Float32Array(rows * dim);
  for (let item = 1; item < rows; item += 1) {
    const c = clusters[item]!;
    for (let k = 0; k < dim; k += 1) data[item * dim + k] = centroids[c * dim + k]! + noise * random.normal();
  }
  return { rows, dim, data };
}

/**
 * Generates a synthetic data set (see the module comment for the model).
 * @param options every field optional; `seed` makes it reproducible
 * @returns interactions in the {@link Sequences} shape, text and visual feature tables, and the
 *   ground truth (clusters, transition matrix, popularity weights)
 * @throws InvalidArgumentError on a bad option
 */
export function generateSynthetic(options?: SyntheticOptions): SyntheticDataset {
  const o = resolve(options);
  const { numItems, numClusters, numUsers } = o;
  // Separate streams per concern, so changing e.g. the feature dims leaves the interactions unchanged.
  const structure = new Random(o.seed);
  const behaviour = new Random((o.seed ^ 0x5bd1e995) >>> 0);
  const features = new Random((o.seed ^ 0x27d4eb2f) >>> 0);

  // Clusters: a shuffled round-robin, so each is non-empty.
  const order = new Int32Array(numItems).map((_, i) => i + 1);
  structure.shuffle(order);
  const clusters = new Int32Array(numItems + 1);
  clusters[0] = -1;
  for (let i = 0; i < numItems; i += 1) clusters[order[i]!] = i % numClusters;

  // Popularity: Zipf over an independent permutation of the ids.
  const ranks = new Int32Array(numItems).map((_, i) => i + 1);
  structure.shuffle(ranks);
  const popularity = new Float64Array(numItems + 1);
  for (let r = 0; r < numItems; r += 1) popularity[ranks[r]!] = 1 / (r + 1) ** o.zipfExponent;

  // Per-cluster item lists and their cumulative popularity.
  const members: number[][] = Array.from({ length: numClusters }, () => []);
  for (let item = 1; item <= numItems; item += 1) members[clusters[item]!]!.push(item);
  const memberCum = members.map((list) => cumulative(list.map((item) => popularity[item]!)));
  const globalCum = cumulative(popularity);

  // Transitions: self + preferred successors + uniform floor; rows sum to 1.
  const transitions = new Float64Array(numClusters * numClusters);
  const successors = Math.min(o.successors, numClusters - 1);
  for (let c = 0; c < numClusters; c += 1) {
    const row = transitions.subarray(c * numClusters, (c + 1) * numClusters);
    row.fill(o.uniformTransition / numClusters);
    let rest = 1 - o.uniformTransition;
    if (successors === 0 || numClusters === 1) {
      row[c]! += rest;
      continue;
    }
    row[c]! += o.selfTransition;
    rest -= o.selfTransition;
    const others = new Int32Array(numClusters - 1).map((_, i) => (i < c ? i : i + 1));
    structure.shuffle(others);
    for (let k = 0; k < successors; k += 1) row[others[k]!]! += rest / successors;
  }
  const transitionCum = Array.from({ length: numClusters }, (_, c) => cumulative(transitions.subarray(c * numClusters, (c + 1) * numClusters)));

  // Users.
  const offsets = new Int32Array(numUsers + 1);
  const itemList: number[] = [];
  const seen = new Set<number>();
  const extraStop = 1 / (1 + o.meanExtraLength); // geometric, mean meanExtraLength
  for (let u = 0; u < numUsers; u += 1) {
    let length = o.minLength;
    while (length < o.maxLength && behaviour.uniform() >= extraStop) length += 1;
    seen.clear();
    let previous = 0;
    for (let t = 0; t < length; t += 1) {
      let item = 0;
      for (let attempt = 0; attempt < 16; attempt += 1) {
        if (previous === 0) {
          item = draw(globalCum, behaviour);
        } else {
          const cluster = draw(transitionCum[clusters[previous]!]!, behaviour);
          item = members[cluster]![draw(memberCum[cluster]!, behaviour)]!;
        }
        if (!seen.has(item)) break;
      }
      seen.add(item);
      itemList.push(item);
      previous = item;
    }
    offsets[u + 1] = itemList.length;
  }
  const items = Int32Array.from(itemList);
  const userIds = new Int32Array(numUsers).map((_, i) => i + 1);
  const present = new Uint8Array(numItems + 1);
  let distinctItems = 0;
  for (const item of items) {
    if (present[item] === 0) {
      present[item] = 1;
      distinctItems += 1;
    }
  }
  const hash = createHash('sha256');
  for (const array of [userIds, offsets, items]) hash.update(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));

  const text = featureTable(features, clusters, numClusters, o.textDim, o.featureNoise);
  const visual = featureTable(features, clusters, numClusters, o.visualDim, o.featureNoise);
  return {
    sequences: {
      source: `synthetic:seed=${o.seed}`,
      sha256: hash.digest('hex'),
      numUsers,
      numItems,
      distinctItems,
      numInteractions: items.length,
      userIds,
      offsets,
      items,
    },
    text,
    visual,
    clusters,
    transitions,
    popularity,
    options: o,
  };
}
