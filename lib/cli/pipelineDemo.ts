/**
 * `mmesid demo`: the whole MME-SID pipeline on the built-in synthetic data set, on CPU, in minutes:
 *   data (lib/data/synthetic.ts: users, items, text and visual features) → SASRec (collaborative item
 *   embeddings) → MM-RQ-VAE tokenizer (collab + text, code dim = the LLM's hidden size) → LoRA fine-tuning of
 *   a small Llama with the MME-SID head (and E4SRec, the baseline, in the same harness) → full-ranking
 *   evaluation on the test split, next to popularity and SASRec.
 * The LLM is a small random-weight Llama written by writeRandomLlama (no download; pass --model DIR for a
 * real Hugging Face checkpoint whose hidden size the tokenizer then follows). Prints the metrics table and
 * the run directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadEmbeddings } from '../data/embeddings';
import { loadSequences } from '../data/sequences';
import { evaluatePopularity, type EvaluationReport } from '../evaluate/popularity';
import { evaluateSasrec } from '../evaluate/sasrec';
import { readLlamaConfig, writeRandomLlama } from '../llm/checkpoint';
import { resolveFinetuneConfig } from '../mmesid/config';
import { evaluateRun } from '../mmesid/evaluate';
import { MmesidRun } from '../mmesid/run';
import { trainSasrec } from '../sasrec';
import { trainTokenizer } from '../tokenizer/train';
import { runDataSynthetic } from './synthetic';

export interface PipelineDemoOptions {
  out: string;
  users: number;
  items: number;
  /** A Hugging Face Llama directory; default: a random 4-layer, hidden-64 Llama written to OUT/llm. */
  model?: string;
  epochs: number;
  seed: number;
  threads: number;
  progress: boolean;
  signal?: AbortSignal;
}

export interface PipelineDemoReport {
  out: string;
  run: string;
  seconds: number;
  stages: Record<string, number>;
  /** Test metrics per model. */
  table: Record<string, EvaluationReport['metrics']>;
}

function log(o: PipelineDemoOptions, line: string): void {
  if (o.progress) process.stderr.write(`demo: ${line}\n`);
}

export async function runPipelineDemo(options: PipelineDemoOptions): Promise<PipelineDemoReport> {
  // Absolute: the fine-tuning config below resolves relative paths against its own folder (o.out).
  const o = { ...options, out: path.resolve(options.out), ...(options.model === undefined ? {} : { model: path.resolve(options.model) }) };
  const started = Date.now();
  const stages: Record<string, number> = {};
  const time = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    log(o, `${name} …`);
    const result = await work();
    stages[name] = (Date.now() - t) / 1000;
    log(o, `${name} done in ${stages[name].toFixed(1)} s`);
    return result;
  };
  fs.mkdirSync(o.out, { recursive: true });
  const dataDir = path.join(o.out, 'data');
  await time('data', () => runDataSynthetic(dataDir, { numUsers: o.users, numItems: o.items, seed: o.seed }));
  const sequences = await loadSequences(path.join(dataDir, 'sequences.txt'));
  const modelDir = o.model ?? path.join(o.out, 'llm');
  if (!o.model) {
    await time('llm', () => writeRandomLlama(modelDir, { hiddenSize: 64, intermediateSize: 172, numHiddenLayers: 4, numAttentionHeads: 8, numKeyValueHeads: 4, vocabSize: 512, seed: o.seed }));
  }
  const hidden = readLlamaConfig(modelDir).hiddenSize;
  const sasrecDir = path.join(o.out, 'sasrec');
  await time('sasrec', () => trainSasrec({ sequences, outDir: sasrecDir, dim: 64, epochs: 40, patience: 5, threads: o.threads, seed: o.seed, ...(o.signal ? { signal: o.signal } : {}) }));
  const collab = await loadEmbeddings(path.join(sasrecDir, 'item_emb.npy'));
  const text = await loadEmbeddings(path.join(dataDir, 'text_emb.npy'));
  const tokenizerDir = path.join(o.out, 'tokenizer');
  await time('tokenizer', () => trainTokenizer({ collab, text, outDir: tokenizerDir, codeDim: hidden, levels: 3, codes: 32, epochs: 60, patience: 60, batchSize: 256, lr: 1e-3, threads: o.threads, seed: o.seed, ...(o.signal ? { signal: o.signal } : {}) }));
  const table: PipelineDemoReport['table'] = {};
  table.popularity = (await evaluatePopularity(sequences)).metrics;
  table.sasrec = (await evaluateSasrec(sequences, sasrecDir)).metrics;
  let runDir = '';
  for (const variant of ['mme-sid', 'e4srec'] as const) {
    const config = resolveFinetuneConfig(
      {
        model: modelDir,
        sequences: path.join(dataDir, 'sequences.txt'),
        tokenizer: tokenizerDir,
        embeddings: variant === 'e4srec' ? { collab: path.join(sasrecDir, 'item_emb.npy') } : { collab: path.join(sasrecDir, 'item_emb.npy'), text: path.join(dataDir, 'text_emb.npy') },
        variant,
        prompt: { prefixIds: [1], suffixIds: [2] },
        lora: { rank: 8, alpha: 16, dropout: 0.05 },
        train: { epochs: o.epochs, lr: 2e-3, microBatch: 16, accumulationSteps: 1, warmupSteps: 20, seed: o.seed },
        threads: o.threads,
        out: path.join(o.out, `run-${variant}`),
      },
      path.join(o.out, 'demo.json'),
    );
    const run = await time(`finetune ${variant}`, () => MmesidRun.create(config));
    try {
      const training = await time(`train ${variant}`, () => run.train({ ...(o.signal ? { signal: o.signal } : {}) }));
      await run.save(training);
      table[variant] = (await time(`evaluate ${variant}`, () => evaluateRun(run, { split: 'test' }))).metrics;
      if (variant === 'mme-sid') runDir = run.dir;
    } finally {
      await run.dispose();
    }
  }
  return { out: o.out, run: runDir, seconds: (Date.now() - started) / 1000, stages, table };
}

/** The metrics table as Markdown. */
export function formatPipelineTable(report: PipelineDemoReport): string {
  const keys = ['HR@5', 'HR@10', 'HR@20', 'nDCG@5', 'nDCG@10', 'nDCG@20'];
  const lines = [`| model | ${keys.join(' | ')} |`, `|---|${keys.map(() => '---:').join('|')}|`];
  for (const [model, m] of Object.entries(report.table)) lines.push(`| ${model} | ${keys.map((k) => (m[k] ?? Number.NaN).toFixed(4)).join(' | ')} |`);
  return lines.join('\n');
}
