/**
 * `mmesid data synthetic`: writes the library's deterministic synthetic data set (lib/data/synthetic.ts)
 * as files every other command reads: `sequences.txt` (the paper's sequence format), `text_emb.npy` and
 * `visual_emb.npy` (float32 [items + 1, dim], row 0 = padding), and `synthetic.json` (the options, the
 * sha256 of sequences.txt and each item's latent cluster). Each file is written atomically.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { writeJsonAtomic } from '../data/atomicFile';
import { saveNpy } from '../data/embeddings';
import { saveSequences } from '../data/sequences';
import { generateSynthetic } from '../data/synthetic';
import type { SyntheticOptions } from '../data/synthetic';
import { InvalidArgumentError } from '../errors';

export interface DataSyntheticReport {
  outDir: string;
  files: { sequences: string; text: string; visual: string; description: string };
  users: number;
  items: number;
  interactions: number;
  sha256: string;
  options: Required<SyntheticOptions>;
}

/** Generates and writes the data set. @throws InvalidArgumentError on a bad option; the file system's error */
export async function runDataSynthetic(outDir: string, options: SyntheticOptions): Promise<DataSyntheticReport> {
  if (typeof outDir !== 'string' || outDir.length === 0) throw new InvalidArgumentError('--out', 'a folder path', outDir);
  const data = generateSynthetic(options);
  await fs.promises.mkdir(outDir, { recursive: true });
  const files = {
    sequences: path.join(outDir, 'sequences.txt'),
    text: path.join(outDir, 'text_emb.npy'),
    visual: path.join(outDir, 'visual_emb.npy'),
    description: path.join(outDir, 'synthetic.json'),
  };
  const sha256 = await saveSequences(files.sequences, data.sequences);
  await saveNpy(files.text, data.text.rows, data.text.dim, data.text.data);
  await saveNpy(files.visual, data.visual.rows, data.visual.dim, data.visual.data);
  await writeJsonAtomic(files.description, {
    format: 'mmesid.synthetic',
    version: 1,
    options: data.options,
    sequencesSha256: sha256,
    clusters: Array.from(data.clusters),
  });
  const { numUsers, numInteractions } = data.sequences;
  return { outDir, files, users: numUsers, items: data.options.numItems, interactions: numInteractions, sha256, options: data.options };
}
