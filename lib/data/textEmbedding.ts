/**
 * Text embeddings of the item catalogue without a pretrained model: TF-IDF over each item's title,
 * brand and category names, reduced by a randomized truncated SVD (LSA). The result is an item table
 * `[numItems + 1, dim]` (row 0 = padding zeros) usable as the text modality until a language-model
 * encoder is plugged in.
 *
 * 1. Documents ({@link itemDocument}). Text is NFKC-normalised and lower-cased (`toLowerCase`, locale
 *    independent); a word is a maximal run of Unicode letters and digits (`/[\p{L}\p{N}]+/u`), so
 *    punctuation, spaces and symbols separate words ("0.5-Fluid" → "0", "5", "fluid").
 *    - every title word is a term, counted as often as it occurs;
 *    - the brand is ONE term, `brand:` + its words joined by `_` ("Maybelline New York" →
 *      `brand:maybelline_new_york`), so a brand is a feature of its own, distinct from the same word
 *      in a title;
 *    - every category name on the item's paths is one term, `cat:` + its words joined by `_`
 *      ("Nail Polish" → `cat:nail_polish`), counted once per item even when several paths share it;
 *      the hierarchy shows through shared ancestors ("Makeup" > "Nails").
 *    With `prefixFields: false` the brand and category words are plain words like the title's.
 * 2. Vocabulary: the terms with document frequency >= `minDf` (default 2), sorted by UTF-16 code
 *    units (JavaScript's default string order), so the column order is fixed by the data alone.
 * 3. TF-IDF as scikit-learn's TfidfVectorizer defaults: tf = the raw count (or 1 + ln(count) with
 *    `sublinearTf`), smooth idf = ln((1 + N) / (1 + df)) + 1 with N = number of items, each row scaled
 *    to unit L2 norm (a row with no vocabulary term stays zero). Stored as CSR, float64.
 * 4. Randomized truncated SVD (Halko, Martinsson and Tropp 2011, Algorithm 4.4): a Gaussian test matrix
 *    Ω [vocabulary, dim + oversampling] from a seeded PRNG (mulberry32 + Box–Muller), Y = AΩ, then
 *    `powerIterations` rounds of Q ← qr(Aᵀ Q), Q ← qr(A Q) (re-orthonormalised by a Householder QR every
 *    half step), B = Qᵀ A, and the exact SVD of the small B. Output U·Σ for the first `dim` components
 *    (what scikit-learn's TruncatedSVD.fit_transform returns). The dense QR and SVD are ml-matrix's.
 * 5. Signs: each component (column) is flipped so that its entry of largest magnitude is positive (the
 *    first such entry on ties). All arithmetic is float64 in a fixed order: the same catalogue, options
 *    and seed give the same bytes.
 *
 * The work runs on the calling thread in phases (tokenize, TF-IDF, each power iteration, the final
 * SVD) and yields to the event loop between them, where cancellation is checked; a phase itself is
 * synchronous (about a second for Amazon Beauty's 12k items). A server that must stay responsive
 * should call it from a worker thread.
 */
import { Matrix, QrDecomposition, SingularValueDecomposition } from 'ml-matrix';

import { CancelledError, InvalidArgumentError } from '../errors';
import { optionalBoolean, optionalInteger, optionalSignal, requireInteger, requireObject } from '../validate';
import type { ItemCatalog, ItemInfo } from './items';

/** A sparse matrix in compressed sparse row form, float64; column indices ascending within each row. */
export interface CsrMatrix {
  rows: number;
  cols: number;
  /** Int32 [rows + 1]: row r holds entries indptr[r] .. indptr[r + 1] - 1. */
  indptr: Int32Array;
  /** Int32 [nnz]: column of each entry. */
  indices: Int32Array;
  /** float64 [nnz]: value of each entry. */
  data: Float64Array;
}

/** Options of {@link itemDocument} and {@link buildTfidf}. */
export interface TfidfOptions {
  /** Keep terms appearing in at least this many items (default 2). */
  minDf?: number;
  /** tf = 1 + ln(count) instead of the raw count (default false, scikit-learn's default). */
  sublinearTf?: boolean;
  /** Brand and category names as distinct `brand:` / `cat:` terms (default true); false: plain words. */
  prefixFields?: boolean;
}

/** The TF-IDF matrix of a catalogue. */
export interface TfidfMatrix {
  /** [numItems, vocabulary.length]: row r is item r + 1, rows L2-normalised. */
  matrix: CsrMatrix;
  /** The terms, in column order (sorted). */
  vocabulary: string[];
  /** float64 [vocabulary.length]: smooth idf of each term. */
  idf: Float64Array;
  /** float64 [vocabulary.length]: document frequency of each term. */
  df: Float64Array;
}

/** Options of {@link randomizedSvd}. */
export interface RandomizedSvdOptions {
  /** Extra random directions beyond the rank (default 10). */
  oversampling?: number;
  /** Power (subspace) iterations, 0..20 (default 4). */
  powerIterations?: number;
  /** PRNG seed, a uint32 (default 0). */
  seed?: number;
}

/** A rank-k truncated SVD A ≈ U Σ Vᵀ. */
export interface TruncatedSvd {
  rank: number;
  /** float64 [rank], descending. */
  singularValues: Float64Array;
  /** float64 [A.rows, rank], row-major: U·Σ with the sign convention of this module. */
  transformed: Float64Array;
}

/** Options of {@link embedItemText}. */
export interface TextEmbeddingOptions extends TfidfOptions, RandomizedSvdOptions {
  /** Output dimension D, 1 <= D <= min(items, vocabulary size). */
  dim: number;
  /** Cancels between phases; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
  /** Called with a one-line description as each phase starts. */
  onProgress?: (message: string) => void;
}

/** An item text embedding table and how it was made. */
export interface TextEmbedding {
  /** numItems + 1 (row 0 = padding, all zeros). */
  rows: number;
  dim: number;
  /** float32 [rows, dim], row-major. */
  data: Float32Array;
  vocabularySize: number;
  /** Non-zeros of the TF-IDF matrix. */
  nnz: number;
  /** float64 [dim], descending. */
  singularValues: number[];
  /**
   * [dim]: variance of each output column over the items / total variance of the TF-IDF columns
   * (scikit-learn's TruncatedSVD.explained_variance_ratio_).
   */
  explainedVarianceRatio: number[];
}

const WORD = /[\p{L}\p{N}]+/gu;

function words(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(WORD) ?? [];
}

/**
 * The terms of one item's document (see the module comment), in order of appearance, repeated as
 * often as they count.
 * @param item the item
 * @param prefixFields brand and category names as `brand:` / `cat:` terms (default true)
 */
export function itemDocument(item: ItemInfo, prefixFields = true): string[] {
  const terms = words(item.title);
  const brand = item.brand === null ? [] : words(item.brand);
  if (!prefixFields) {
    terms.push(...brand);
    for (const path of item.categories) for (const name of path) terms.push(...words(name));
    return terms;
  }
  if (brand.length > 0) terms.push(`brand:${brand.join('_')}`);
  const seen = new Set<string>();
  for (const path of item.categories) {
    for (const name of path) {
      const w = words(name);
      if (w.length === 0) continue;
      const term = `cat:${w.join('_')}`;
      if (!seen.has(term)) terms.push(term);
      seen.add(term);
    }
  }
  return terms;
}

function tfidfOptions(o: Record<string, unknown>): Required<TfidfOptions> {
  return {
    minDf: optionalInteger(o.minDf, 'options.minDf', 2, 1),
    sublinearTf: optionalBoolean(o.sublinearTf, 'options.sublinearTf', false),
    prefixFields: optionalBoolean(o.prefixFields, 'options.prefixFields', true),
  };
}

function requireCatalog(catalog: unknown): ItemCatalog {
  const c = requireObject(catalog, 'catalog');
  if (!Array.isArray(c.items) || typeof c.numItems !== 'number' || c.items.length !== c.numItems + 1) {
    throw new InvalidArgumentError('catalog', 'an item catalogue from loadItems', catalog);
  }
  return c as unknown as ItemCatalog;
}

/**
 * The TF-IDF matrix of a catalogue (rows = items 1..numItems).
 * @throws InvalidArgumentError on bad arguments
 */
export function buildTfidf(catalog: ItemCatalog, options: TfidfOptions = {}): TfidfMatrix {
  const cat = requireCatalog(catalog);
  const o = tfidfOptions(requireObject(options, 'options'));
  const n = cat.numItems;
  const docs: Map<string, number>[] = [];
  const df = new Map<string, number>();
  for (let id = 1; id <= n; id += 1) {
    const counts = new Map<string, number>();
    const item = cat.items[id];
    if (item) for (const term of itemDocument(item, o.prefixFields)) counts.set(term, (counts.get(term) ?? 0) + 1);
    for (const term of counts.keys()) df.set(term, (df.get(term) ?? 0) + 1);
    docs.push(counts);
  }
  const vocabulary = [...df.keys()].filter((t) => df.get(t)! >= o.minDf).sort();
  const column = new Map(vocabulary.map((t, j) => [t, j]));
  const idf = new Float64Array(vocabulary.length);
  const dfs = new Float64Array(vocabulary.length);
  vocabulary.forEach((t, j) => {
    const count = df.get(t)!;
    dfs[j] = count;
    idf[j] = Math.log((1 + n) / (1 + count)) + 1;
  });

  const indptr = new Int32Array(n + 1);
  const cols: number[] = [];
  const vals: number[] = [];
  for (let r = 0; r < n; r += 1) {
    const entries: [number, number][] = [];
    for (const [term, count] of docs[r]!) {
      const j = column.get(term);
      if (j !== undefined) entries.push([j, (o.sublinearTf ? 1 + Math.log(count) : count) * idf[j]!]);
    }
    entries.sort((a, b) => a[0] - b[0]);
    let norm = 0;
    for (const [, v] of entries) norm += v * v;
    norm = Math.sqrt(norm);
    for (const [j, v] of entries) {
      cols.push(j);
      vals.push(v / norm);
    }
    indptr[r + 1] = cols.length;
  }
  return {
    matrix: { rows: n, cols: vocabulary.length, indptr, indices: Int32Array.from(cols), data: Float64Array.from(vals) },
    vocabulary,
    idf,
    df: dfs,
  };
}

/** mulberry32 uniform in (0, 1] → Box–Muller normals; fixed order, so a seed fixes every draw. */
function gaussianMatrix(length: number, seed: number): Float64Array {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967296;
  };
  const out = new Float64Array(length);
  for (let i = 0; i < length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < length) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/** Y [A.rows, k] = A · X, X [A.cols, k] row-major. */
function multiply(a: CsrMatrix, x: Float64Array, k: number): Float64Array {
  const y = new Float64Array(a.rows * k);
  for (let r = 0; r < a.rows; r += 1) {
    const yr = r * k;
    for (let e = a.indptr[r]!; e < a.indptr[r + 1]!; e += 1) {
      const v = a.data[e]!;
      const xr = a.indices[e]! * k;
      for (let c = 0; c < k; c += 1) y[yr + c]! += v * x[xr + c]!;
    }
  }
  return y;
}

/** Z [A.cols, k] = Aᵀ · X, X [A.rows, k] row-major. */
function multiplyTransposed(a: CsrMatrix, x: Float64Array, k: number): Float64Array {
  const z = new Float64Array(a.cols * k);
  for (let r = 0; r < a.rows; r += 1) {
    const xr = r * k;
    for (let e = a.indptr[r]!; e < a.indptr[r + 1]!; e += 1) {
      const v = a.data[e]!;
      const zr = a.indices[e]! * k;
      for (let c = 0; c < k; c += 1) z[zr + c]! += v * x[xr + c]!;
    }
  }
  return z;
}

/** The thin Q factor [rows, k] of a row-major [rows, k] matrix (Householder QR, ml-matrix). */
function orthonormalize(x: Float64Array, rows: number, k: number): Float64Array {
  const q = new QrDecomposition(Matrix.from1DArray(rows, k, x)).orthogonalMatrix;
  return Float64Array.from(q.to1DArray());
}

function svdOptions(o: Record<string, unknown>): Required<RandomizedSvdOptions> {
  return {
    oversampling: optionalInteger(o.oversampling, 'options.oversampling', 10, 0),
    powerIterations: optionalInteger(o.powerIterations, 'options.powerIterations', 4, 0, 20),
    seed: optionalInteger(o.seed, 'options.seed', 0, 0, 0xffffffff),
  };
}

function requireCsr(a: unknown): CsrMatrix {
  const m = requireObject(a, 'matrix');
  const rows = requireInteger(m.rows, 'matrix.rows', 1);
  const cols = requireInteger(m.cols, 'matrix.cols', 1);
  const ok =
    m.indptr instanceof Int32Array && m.indptr.length === rows + 1 && m.indices instanceof Int32Array && m.data instanceof Float64Array &&
    m.indices.length === m.data.length && m.indptr[0] === 0 && m.indptr[rows] === m.data.length;
  if (!ok) throw new InvalidArgumentError('matrix', 'a CSR matrix (Int32Array indptr [rows + 1] and indices, Float64Array data)', a);
  const indices = m.indices as Int32Array;
  const indptr = m.indptr as Int32Array;
  for (let r = 0; r < rows; r += 1) {
    if (indptr[r + 1]! < indptr[r]!) throw new InvalidArgumentError('matrix.indptr', 'non-decreasing offsets', indptr[r + 1], `${indptr[r + 1]} after ${indptr[r]} at row ${r}`);
  }
  for (let e = 0; e < indices.length; e += 1) {
    if (indices[e]! < 0 || indices[e]! >= cols) throw new InvalidArgumentError(`matrix.indices[${e}]`, `a column in [0, ${cols - 1}]`, indices[e]);
  }
  return m as unknown as CsrMatrix;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function svdPhases(
  a: CsrMatrix,
  rank: number,
  o: Required<RandomizedSvdOptions>,
  between: (message: string) => Promise<void>,
): Promise<TruncatedSvd> {
  const k = Math.min(rank + o.oversampling, a.rows, a.cols);
  await between(`randomized SVD: range of A (${a.rows} x ${a.cols}) with ${k} random directions`);
  let q = orthonormalize(multiply(a, gaussianMatrix(a.cols * k, o.seed), k), a.rows, k);
  for (let i = 0; i < o.powerIterations; i += 1) {
    await between(`randomized SVD: power iteration ${i + 1}/${o.powerIterations}`);
    const z = orthonormalize(multiplyTransposed(a, q, k), a.cols, k);
    q = orthonormalize(multiply(a, z, k), a.rows, k);
  }
  await between(`randomized SVD: SVD of the projected ${k} x ${a.cols} matrix`);
  // Bᵀ = Aᵀ Q [cols, k] is tall: its right singular vectors are B's left ones (B = Ub Σ Vbᵀ).
  const bt = Matrix.from1DArray(a.cols, k, multiplyTransposed(a, q, k));
  const svd = new SingularValueDecomposition(bt, { computeLeftSingularVectors: false, computeRightSingularVectors: true, autoTranspose: true });
  const sigma = svd.diagonal;
  const ub = svd.rightSingularVectors; // [k, k]
  // U·Σ = Q · Ub[:, :rank] · diag(σ)
  const coef = new Float64Array(k * rank);
  for (let i = 0; i < k; i += 1) for (let c = 0; c < rank; c += 1) coef[i * rank + c] = ub.get(i, c) * sigma[c]!;
  const out = new Float64Array(a.rows * rank);
  for (let r = 0; r < a.rows; r += 1) {
    for (let i = 0; i < k; i += 1) {
      const v = q[r * k + i]!;
      for (let c = 0; c < rank; c += 1) out[r * rank + c]! += v * coef[i * rank + c]!;
    }
  }
  for (let c = 0; c < rank; c += 1) {
    let best = 0;
    for (let r = 1; r < a.rows; r += 1) if (Math.abs(out[r * rank + c]!) > Math.abs(out[best * rank + c]!)) best = r;
    if (out[best * rank + c]! < 0) for (let r = 0; r < a.rows; r += 1) out[r * rank + c] = -out[r * rank + c]!;
  }
  return { rank, singularValues: Float64Array.from(sigma.slice(0, rank)), transformed: out };
}

/**
 * Randomized truncated SVD of a sparse matrix (see the module comment, step 4).
 * @param matrix the CSR matrix A [rows, cols]
 * @param rank   components to keep, 1 <= rank <= min(rows, cols)
 * @returns the singular values and U·Σ (float64)
 * @throws InvalidArgumentError on bad arguments
 */
export async function randomizedSvd(matrix: CsrMatrix, rank: number, options: RandomizedSvdOptions = {}): Promise<TruncatedSvd> {
  const a = requireCsr(matrix);
  requireInteger(rank, 'rank', 1, Math.min(a.rows, a.cols));
  const o = svdOptions(requireObject(options, 'options'));
  return await svdPhases(a, rank, o, () => Promise.resolve());
}

/**
 * Item text embeddings: TF-IDF of title, brand and categories, reduced by a randomized truncated SVD
 * (see the module comment).
 * @param catalog the catalogue from {@link loadItems}
 * @param options `dim` (required), TF-IDF and SVD options, `signal`, `onProgress`
 * @returns float32 [numItems + 1, dim], row 0 zeros, with the vocabulary size, nnz, singular values
 *   and explained variance ratios
 * @throws InvalidArgumentError on bad arguments (also when `dim` exceeds the vocabulary size);
 *   CancelledError (rejection) when `signal` aborts.
 */
export async function embedItemText(catalog: ItemCatalog, options: TextEmbeddingOptions): Promise<TextEmbedding> {
  const cat = requireCatalog(catalog);
  const raw = requireObject(options, 'options');
  const dim = requireInteger(raw.dim, 'options.dim', 1, cat.numItems);
  const tfidfOpts = tfidfOptions(raw);
  const svdOpts = svdOptions(raw);
  const signal = optionalSignal(raw.signal, 'options.signal');
  if (raw.onProgress !== undefined && typeof raw.onProgress !== 'function') {
    throw new InvalidArgumentError('options.onProgress', 'a function', raw.onProgress);
  }
  const progress = raw.onProgress as ((message: string) => void) | undefined;
  const between = async (message: string): Promise<void> => {
    await nextTurn();
    if (signal?.aborted) throw new CancelledError('embedItemText was cancelled');
    progress?.(message);
  };

  await between(`TF-IDF of ${cat.numItems} items (minDf ${tfidfOpts.minDf})`);
  const { matrix, vocabulary } = buildTfidf(cat, tfidfOpts);
  if (dim > vocabulary.length) {
    throw new InvalidArgumentError('options.dim', `an integer in [1, ${vocabulary.length}] (the vocabulary size)`, dim);
  }
  const svd = await svdPhases(matrix, dim, svdOpts, between);

  // explained variance ratio, as scikit-learn: var(U·Σ columns) / Σ var(A columns), over the items.
  const n = matrix.rows;
  const sum = new Float64Array(matrix.cols);
  let squares = 0;
  for (let e = 0; e < matrix.data.length; e += 1) {
    sum[matrix.indices[e]!]! += matrix.data[e]!;
    squares += matrix.data[e]! * matrix.data[e]!;
  }
  let totalVariance = squares / n;
  for (let j = 0; j < matrix.cols; j += 1) totalVariance -= (sum[j]! / n) ** 2;
  const explainedVarianceRatio: number[] = [];
  for (let c = 0; c < dim; c += 1) {
    let s = 0;
    let s2 = 0;
    for (let r = 0; r < n; r += 1) {
      const v = svd.transformed[r * dim + c]!;
      s += v;
      s2 += v * v;
    }
    explainedVarianceRatio.push((s2 / n - (s / n) ** 2) / totalVariance);
  }

  const data = new Float32Array((n + 1) * dim);
  data.set(svd.transformed, dim); // row 0 stays padding zeros; float64 → float32 rounding
  return {
    rows: n + 1,
    dim,
    data,
    vocabularySize: vocabulary.length,
    nnz: matrix.data.length,
    singularValues: Array.from(svd.singularValues),
    explainedVarianceRatio,
  };
}
