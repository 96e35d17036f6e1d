/**
 * `mmesid embed-text`: item text embeddings without a pretrained model (TF-IDF of title, brand and
 * categories → randomized truncated SVD), written as float32 `[items + 1, D]` `.npy` with row 0 =
 * padding zeros. Results go to stdout (exactly one JSON document with --json); progress to stderr.
 */
import { loadItems } from '../data/items';
import { saveNpy } from '../data/embeddings';
import { embedItemText } from '../data/textEmbedding';

export interface EmbedTextCommandOptions {
  items: string;
  out: string;
  dim: number;
  seed?: number;
  minDf?: number;
  powerIterations?: number;
  sublinearTf?: boolean;
  /** Progress lines on stderr. */
  progress: boolean;
  signal?: AbortSignal;
}

/** What `mmesid embed-text` reports. */
export interface EmbedTextReport {
  items: number;
  vocabularySize: number;
  nnz: number;
  dim: number;
  seed: number;
  /** [dim], per component. */
  explainedVarianceRatio: number[];
  /** Sum of explainedVarianceRatio. */
  explainedVariance: number;
  /** Wall time of the embedding (load and save excluded). */
  seconds: number;
  out: string;
}

/** Runs one embedding and saves it. @throws DataFormatError, InvalidArgumentError, CancelledError, file-system errors */
export async function runEmbedText(o: EmbedTextCommandOptions): Promise<EmbedTextReport> {
  const catalog = await loadItems(o.items, o.signal ? { signal: o.signal } : {});
  const seed = o.seed ?? 0;
  const started = process.hrtime.bigint();
  const embedding = await embedItemText(catalog, {
    dim: o.dim,
    seed,
    ...(o.minDf !== undefined ? { minDf: o.minDf } : {}),
    ...(o.powerIterations !== undefined ? { powerIterations: o.powerIterations } : {}),
    ...(o.sublinearTf !== undefined ? { sublinearTf: o.sublinearTf } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.progress ? { onProgress: (message: string) => process.stderr.write(`embed-text: ${message}\n`) } : {}),
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await saveNpy(o.out, embedding.rows, embedding.dim, embedding.data);
  return {
    items: catalog.numItems,
    vocabularySize: embedding.vocabularySize,
    nnz: embedding.nnz,
    dim: embedding.dim,
    seed,
    explainedVarianceRatio: embedding.explainedVarianceRatio,
    explainedVariance: embedding.explainedVarianceRatio.reduce((a, b) => a + b, 0),
    seconds,
    out: o.out,
  };
}

/** A human-readable rendering of the report. */
export function formatEmbedTextReport(r: EmbedTextReport): string {
  return [
    `Embedded ${r.items.toLocaleString('en-US')} items into ${r.dim} dimensions in ${r.seconds.toFixed(2)} s (seed ${r.seed})`,
    `  TF-IDF: vocabulary ${r.vocabularySize.toLocaleString('en-US')} terms, ${r.nnz.toLocaleString('en-US')} non-zeros`,
    `  explained variance: ${(100 * r.explainedVariance).toFixed(2)} % (first components ${r.explainedVarianceRatio
      .slice(0, 5)
      .map((v) => (100 * v).toFixed(2))
      .join(', ')} %)`,
    `  wrote float32 [${r.items + 1}, ${r.dim}] (row 0 = padding zeros) to ${r.out}`,
  ].join('\n');
}
