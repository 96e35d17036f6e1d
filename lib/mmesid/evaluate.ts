/**
 * Evaluation of an MME-SID run under the data stage's protocol and evaluator (full ranking, history
 * masked, ties against the target, cold/warm), plus the paper's diagnostics:
 * - the embedding-collapse spectrum: singular values of the item input embeddings and of the target-item
 *   table, normalised by the largest, as log10 — a collapsed table has a few large values and a long tail
 *   of tiny ones;
 * - Kendall τ between the distances of the fine-tuned collaborative code embeddings (Σ_l E_l[sid_l], the
 *   quantised collaborative vector in the LLM space) and the original collaborative (SASRec) distances,
 *   on the same seeded pair sample as the tokenizer report.
 */
import { Matrix, SingularValueDecomposition } from 'ml-matrix';

import { loadEmbeddings, loadInt32Npy } from '../data/embeddings';
import { evaluationSplit, modelHistory } from '../data/splits';
import { InvalidArgumentError } from '../errors';
import { evaluateSplit, readEvaluationOptions, type EvaluatePopularityOptions, type EvaluationReport } from '../evaluate/popularity';
import { distanceKendallTau } from '../tokenizer/metrics';
import { historyBatch, type MmesidRun } from './run';
import * as path from 'node:path';

/** Evaluates a run on one split (default test). @throws InvalidArgumentError; CancelledError on `signal`. */
export async function evaluateRun(run: MmesidRun, options: EvaluatePopularityOptions & { maxUsers?: number; seed?: number } = {}): Promise<EvaluationReport> {
  const { maxUsers, seed, ...rest } = options;
  const settings = readEvaluationOptions(rest);
  const sequences = run.sequences;
  const numItems = sequences.numItems;
  let split = evaluationSplit(sequences, settings.splitName, { maxHistory: run.config.maxHistory });
  if (maxUsers !== undefined && maxUsers > 0 && maxUsers < split.users.length) split = subsample(split, maxUsers, seed ?? 0);
  const rows = Math.min(settings.batchSize, Math.max(1, split.users.length));
  const scores = new Float32Array(rows * (numItems + 1));
  const c = run.config;
  return evaluateSplit(
    sequences,
    split,
    settings,
    async (start: number, end: number) => {
      const histories = [];
      for (let e = start; e < end; e++) histories.push(modelHistory(split, e));
      const out = scores.subarray(0, (end - start) * (numItems + 1));
      await run.scoreInto(historyBatch(histories), out);
      return out;
    },
    `mmesid ${c.variant}${c.fusion ? '' : ' (no fusion)'}: ${run.dir} (LLM ${path.basename(c.model)}, modalities ${c.modalities.join('+')})`,
  );
}

/** A seeded subsample of an evaluation split (validation during training), users kept in order. */
function subsample(split: ReturnType<typeof evaluationSplit>, count: number, seed: number): ReturnType<typeof evaluationSplit> {
  let s = (seed >>> 0) || 1;
  const next = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const indices = Array.from(split.users.keys());
  for (let i = indices.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  const keep = indices.slice(0, count).sort((a, b) => a - b);
  const out = { ...split, users: new Int32Array(count), targets: new Int32Array(count), inputOffsets: new Int32Array(count + 1) };
  const items: number[] = [];
  keep.forEach((e, i) => {
    out.users[i] = split.users[e]!;
    out.targets[i] = split.targets[e]!;
    for (let k = split.inputOffsets[e]!; k < split.inputOffsets[e + 1]!; k++) items.push(split.inputItems[k]!);
    out.inputOffsets[i + 1] = items.length;
  });
  return { ...out, inputItems: Int32Array.from(items), skippedUsers: split.skippedUsers + split.users.length - count };
}

/**
 * Normalised log singular values of a table [rows, dim] (rows 1.. only: row 0 is padding):
 * log10(σ_i / σ_max), i = 1 … min(rows − 1, dim).
 */
export function collapseSpectrum(table: Float32Array, rows: number, dim: number): number[] {
  if (table.length !== rows * dim || rows < 2) throw new InvalidArgumentError('table', `a [rows, ${dim}] table of at least 2 rows`, `length ${table.length}`);
  const data: number[][] = [];
  for (let r = 1; r < rows; r++) data.push(Array.from(table.subarray(r * dim, (r + 1) * dim)));
  const svd = new SingularValueDecomposition(new Matrix(data), { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true });
  const values = svd.diagonal;
  const top = Math.max(...values);
  return values.map((v) => (v > 0 && top > 0 ? Math.log10(v / top) : Number.NEGATIVE_INFINITY));
}

/** The spectra as CSV: index, then one column per named spectrum. */
export function spectraCsv(spectra: Record<string, number[]>): string {
  const names = Object.keys(spectra);
  const length = Math.max(...names.map((n) => spectra[n]!.length));
  const lines = [`index,${names.join(',')}`];
  for (let i = 0; i < length; i++) lines.push([i + 1, ...names.map((n) => (spectra[n]![i] === undefined ? '' : String(spectra[n]![i])))].join(','));
  return `${lines.join('\n')}\n`;
}

/** The spectra as an SVG line plot (x: singular value index, y: log10 σ/σ_max). */
export function spectraSvg(spectra: Record<string, number[]>, title: string): string {
  const width = 640, height = 400, left = 60, right = 160, top = 40, bottom = 50;
  const names = Object.keys(spectra);
  const length = Math.max(...names.map((n) => spectra[n]!.length));
  const finite = names.flatMap((n) => spectra[n]!.filter((v) => Number.isFinite(v)));
  const low = Math.min(-1, Math.floor(Math.min(...finite)));
  const x = (i: number): number => left + ((width - left - right) * i) / Math.max(1, length - 1);
  const y = (v: number): number => top + ((height - top - bottom) * (0 - Math.max(v, low))) / (0 - low);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const lines = names.map((n, k) => {
    const points = spectra[n]!.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    return `<polyline fill="none" stroke="${colours[k % colours.length]}" stroke-width="2" points="${points}"/><text x="${width - right + 10}" y="${top + 20 * k + 10}" fill="${colours[k % colours.length]}" font-size="12">${n}</text>`;
  });
  const ticks = [];
  for (let v = 0; v >= low; v--) ticks.push(`<text x="${left - 8}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v}</text><line x1="${left}" x2="${width - right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`,
    ...ticks,
    ...lines,
    `<text x="${(left + width - right) / 2}" y="${height - 12}" text-anchor="middle" font-size="12">singular value index (1 … ${length})</text>`,
    `<text x="16" y="${height / 2}" transform="rotate(-90 16 ${height / 2})" text-anchor="middle" font-size="12">log10 σ / σmax</text>`,
    '</svg>',
    '',
  ].join('\n');
}

/**
 * Which score term the frequency-aware fusion uses, over items 1 … numItems: per term (the target-item
 * table S, then each modality's projection, in the run's modality order) the mean weight and the share of
 * items whose largest weight it is. At the official temperature (1e-3) the softmax is all but one-hot.
 * @returns undefined for a run without fusion.
 */
export async function fusionSummary(run: MmesidRun): Promise<{ terms: string[]; meanWeight: number[]; argmaxShare: number[] } | undefined> {
  const w = await run.tensor('fusionWeights');
  if (w.length === 0) return undefined;
  const n = run.manifest.numItems, terms = ['target', ...run.config.modalities];
  const k = terms.length;
  const meanWeight = new Array<number>(k).fill(0), argmaxShare = new Array<number>(k).fill(0);
  for (let i = 1; i <= n; i++) {
    let best = 0;
    for (let j = 0; j < k; j++) {
      meanWeight[j]! += w[i * k + j]! / n;
      if (w[i * k + j]! > w[i * k + best]!) best = j;
    }
    argmaxShare[best]! += 1 / n;
  }
  return { terms, meanWeight, argmaxShare };
}

/**
 * Kendall τ between the distances of the fine-tuned collaborative code embeddings (Σ_l E_l[sid_l]) and
 * those of the original collaborative table, on `pairs` seeded pairs (the tokenizer report's sampling).
 * @throws InvalidArgumentError for a run without collaborative semantic IDs (e4srec, concat).
 */
export async function collabCodeTau(run: MmesidRun, pairs = 10000, seed = 0): Promise<number> {
  const c = run.config;
  const m = c.modalities.indexOf('collab');
  if (m < 0 || (c.variant !== 'mme-sid' && c.variant !== 'mme-random')) throw new InvalidArgumentError('run', 'an mme-sid or mme-random run with the collab modality', `${c.variant} (${c.modalities.join(', ')})`);
  const codes = await run.tensor('codes', m);
  const sids = await loadInt32Npy(path.join(c.tokenizer!, 'sids.collab.npy'));
  const table = await loadEmbeddings(c.embeddings.collab!);
  const levels = sids.dim, h = run.manifest.hidden, n = run.manifest.numItems;
  const k = codes.length / (levels * h);
  const quantized = new Float32Array(n * h);
  for (let i = 1; i <= n; i++) {
    for (let l = 0; l < levels; l++) {
      const code = sids.data[i * levels + l]!;
      const base = (l * k + code) * h;
      for (let d = 0; d < h; d++) quantized[(i - 1) * h + d]! += codes[base + d]!;
    }
  }
  const original = table.data.subarray(table.dim, (n + 1) * table.dim);
  return distanceKendallTau(original, table.dim, quantized, h, { pairs, seed }).tau;
}
