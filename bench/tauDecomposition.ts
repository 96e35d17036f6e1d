/**
 * Where a trained tokenizer loses distance order (README "Evidence on Beauty"):
 * `node -r ts-node/register/transpile-only bench/tauDecomposition.ts --table X.npy [--modality collab] [--tau-pairs N] DIR...`.
 *
 * For each tokenizer folder (as `mmesid tokenizer train` writes it) and the item table it was trained on
 * (float32 [items + 1, d], row 0 = padding): the encoder output z = encoder(x) of every item, computed
 * here in float64 from `tokenizer.safetensors` (Linear + ReLU between layers, as MmRqvae::infer_z), and
 * the quantized vectors z_q = Σ_l C_l[sid_l] from `sids.<modality>.npy`. Prints one JSON line per folder:
 * - `encoder`   τ(d(x), d(z)): the encoder alone;
 * - `quantizer` τ(d(z), d(z_q)): the residual quantization alone;
 * - `total`     τ(d(x), d(z_q)): the report's `kendallTau` (the same pairs, so equal to it);
 * - `prefix`    τ(d(x), d(Σ_{l<=j} C_l[sid_l])) for j = 0..L−1: what each level adds;
 * - `codesReproduced` the share of items whose greedy residual assignment of this z (the RQ kernel,
 *   kernels.rqEncode) gives their sids row: a check that z here is the trainer's (float32 near-ties may
 *   flip a few).
 * d = Euclidean distance on the report's pair sample (distanceKendallTau; default seed 1, 10,000 pairs,
 * `--tau-pairs N` to match a report trained with another `tauPairs`).
 */
import * as path from 'node:path';

import { loadInt32Npy, loadNpy, loadTensors } from '../lib/data/embeddings';
import { kernels } from '../lib/kernels';
import { distanceKendallTau, type DistanceTauOptions } from '../lib/tokenizer/metrics';

interface Layer {
  weight: Float32Array;
  bias: Float32Array;
  rows: number;
  cols: number;
}

/** float32 [n, out] of the MLP (ReLU between layers, none after the last), accumulated in float64. */
function encoder(x: Float32Array, n: number, layers: readonly Layer[]): Float32Array {
  let h = x;
  layers.forEach((layer, index) => {
    const out = new Float32Array(n * layer.rows);
    const relu = index + 1 < layers.length;
    for (let i = 0; i < n; i++) {
      const row = h.subarray(i * layer.cols, (i + 1) * layer.cols);
      for (let j = 0; j < layer.rows; j++) {
        const w = layer.weight.subarray(j * layer.cols, (j + 1) * layer.cols);
        let sum = layer.bias[j]!;
        for (let k = 0; k < layer.cols; k++) sum += row[k]! * w[k]!;
        out[i * layer.rows + j] = relu && sum < 0 ? 0 : sum;
      }
    }
    h = out;
  });
  return h;
}

/** τ parts of one tokenizer folder (see the module comment); values rounded to 1e-4. */
export interface TauDecomposition {
  dir: string;
  encoder: number;
  quantizer: number;
  total: number;
  prefix: number[];
  /** Share of items whose greedy residual assignment of this z reproduces their row of sids (≈ 1: z is the trainer's). */
  codesReproduced: number;
}

/**
 * @param table the item table the tokenizer was trained on, float32 [items + 1, d] (row 0 = padding)
 * @param pairs the pair sample, as the report's `tauPairs` / `tauSeed` (defaults 10,000 and 1)
 * @throws Error naming the folder when the encoder, codebooks or sids do not fit the table
 */
export async function decomposeTau(dir: string, table: { rows: number; dim: number; data: Float32Array }, modality: string, pairs: DistanceTauOptions = {}): Promise<TauDecomposition> {
  const { tensors } = await loadTensors(path.join(dir, 'tokenizer.safetensors'));
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const layers: Layer[] = [];
  for (let i = 0; byName.has(`${modality}.encoder.${i}.weight`); i++) {
    const w = byName.get(`${modality}.encoder.${i}.weight`)!;
    layers.push({ weight: w.data, bias: byName.get(`${modality}.encoder.${i}.bias`)!.data, rows: w.shape[0]!, cols: w.shape[1]! });
  }
  const books = byName.get(`${modality}.codebooks`);
  if (layers.length === 0 || books === undefined) throw new Error(`${dir}: no ${modality} encoder or codebooks in tokenizer.safetensors`);
  if (layers[0]!.cols !== table.dim) throw new Error(`${dir}: the ${modality} encoder takes ${layers[0]!.cols} columns, the table has ${table.dim}`);
  const [levels, codes, e] = books.shape as [number, number, number];
  const n = table.rows - 1;
  const x = table.data.subarray(table.dim);
  const z = encoder(x, n, layers);
  const sids = await loadInt32Npy(path.join(dir, `sids.${modality}.npy`));
  if (sids.rows !== n + 1 || sids.dim !== levels) throw new Error(`${dir}: sids.${modality}.npy is [${sids.rows}, ${sids.dim}], expected [${n + 1}, ${levels}]`);
  const zq = new Float32Array(n * e);
  const prefix: number[] = [];
  for (let l = 0; l < levels; l++) {
    for (let i = 0; i < n; i++) {
      const code = sids.data[(i + 1) * levels + l]!;
      const c = books.data.subarray((l * codes + code) * e, (l * codes + code + 1) * e);
      for (let k = 0; k < e; k++) zq[i * e + k]! += c[k]!;
    }
    prefix.push(distanceKendallTau(x, table.dim, zq, e, pairs).tau);
  }
  const { codes: greedy } = await kernels.rqEncode({ x: z, dim: e, codebooks: books.data, levels, codes });
  let reproduced = 0;
  for (let i = 0; i < n; i++) {
    let same = true;
    for (let l = 0; l < levels; l++) same &&= greedy[i * levels + l] === sids.data[(i + 1) * levels + l];
    if (same) reproduced += 1;
  }
  const round = (v: number): number => Math.round(v * 1e4) / 1e4;
  return {
    dir,
    encoder: round(distanceKendallTau(x, table.dim, z, e, pairs).tau),
    quantizer: round(distanceKendallTau(z, e, zq, e, pairs).tau),
    total: round(prefix[levels - 1]!),
    prefix: prefix.map(round),
    codesReproduced: round(reproduced / n),
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const take = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i < 0 ? undefined : args.splice(i, 2)[1];
  };
  const tableFile = take('--table');
  const modality = take('--modality') ?? 'collab';
  const tauPairs = take('--tau-pairs');
  if (tableFile === undefined || args.length === 0) throw new Error('usage: tauDecomposition.ts --table X.npy [--modality collab] [--tau-pairs N] DIR [DIR ...]');
  const table = await loadNpy(tableFile);
  for (const dir of args) console.log(JSON.stringify(await decomposeTau(dir, table, modality, tauPairs === undefined ? {} : { pairs: Number(tauPairs) })));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
