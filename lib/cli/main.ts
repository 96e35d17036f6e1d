#!/usr/bin/env node
/**
 * The `mmesid` command line. Progress goes to stderr; results to stdout (`--json` for machines).
 *   mmesid info            what was built (BLAS, CUDA, libtorch)
 *   mmesid demo            the whole pipeline on synthetic data (data → SASRec → tokenizer → LoRA Llama → evaluation)
 *   mmesid demo-tokenize   tokenize random items into semantic IDs with the RQ kernels
 *   mmesid evaluate        full-ranking evaluation of a model on a sequence file (leave-one-out)
 *   mmesid data stats FILE users, items and interactions of a sequence file
 *   mmesid embed-text      item text embeddings from items.jsonl (TF-IDF → randomized SVD), no pretrained model
 *   mmesid sasrec train    train the SASRec collaborative encoder (libtorch); writes item_emb.npy + metrics.json
 *   mmesid tokenizer train train the MM-RQ-VAE tokenizer (libtorch); writes a tokenizer folder + semantic IDs
 *   mmesid tokenize        semantic IDs for an embedding table of any size, streamed (no libtorch)
 *   mmesid llm generate    continue a prompt with a Hugging Face Llama checkpoint (libtorch)
 *   mmesid finetune        fine-tune MME-SID from a JSON config; `mmesid evaluate --run DIR`; `mmesid recommend`
 */
import { Command, InvalidArgumentError as CommanderArgumentError } from 'commander';

import { finiteNumber, intList, nonNegativeInt, oneOf, positiveInt, withInterrupt } from './args';

import { buildInfo } from '../info';
import { runTokenizeDemo } from './demo';
import { formatPipelineTable, runPipelineDemo } from './pipelineDemo';
import { formatEmbedTextReport, runEmbedText } from './embedText';
import { runDataSynthetic } from './synthetic';
import { registerFinetuneCommands, runEvaluateRun } from './finetune';
import { registerLlmCommand } from './llm';
import { registerTokenizeCommand } from './tokenize';
import { registerTokenizerCommand } from './tokenizer';
import { EVALUATE_MODELS, formatReport, parseEvaluateModel, runDataStats, runEvaluate } from './evaluate';
import { formatSasrecReport, runSasrecTrain, type RunSasrecTrainOptions } from './sasrec';
import { SASREC_DEFAULTS, SASREC_LOSSES } from '../sasrec';
import type { EvaluateModel } from './evaluate';





const program = new Command()
  .name('mmesid')
  .description('MME-SID: LLM-based sequential recommendation with multimodal embeddings and semantic IDs')
  .showHelpAfterError();

program
  .command('info')
  .description('print what the native addons were built with')
  .option('--json', 'one JSON document on stdout')
  .action((opts: { json?: boolean }) => {
    const info = buildInfo();
    if (opts.json) console.log(JSON.stringify(info));
    else console.log(JSON.stringify(info, null, 2));
  });

program
  .command('demo')
  .description('the whole pipeline on synthetic data, on CPU: data → SASRec → tokenizer → LoRA fine-tuning of a small Llama (MME-SID and E4SRec) → evaluation')
  .option('--out <dir>', 'where everything goes', 'mmesid-demo')
  .option('--users <n>', 'synthetic users', positiveInt, 1000)
  .option('--items <n>', 'synthetic items', positiveInt, 500)
  .option('--model <dir>', 'a Hugging Face Llama directory (default: a small random Llama written to OUT/llm)')
  .option('--epochs <n>', 'fine-tuning epochs', positiveInt, 2)
  .option('--seed <s>', 'random seed', positiveInt, 42)
  .option('--threads <T>', 'native threads (0 = all cores)', nonNegativeInt, 0)
  .option('--json', 'one JSON document on stdout')
  .action(async (opts: { out: string; users: number; items: number; model?: string; epochs: number; seed: number; threads: number; json?: boolean }) => {
    await withInterrupt(async (signal) => {
      const { json, ...rest } = opts;
      const report = await runPipelineDemo({ ...rest, progress: process.stderr.isTTY || !json, signal });
      if (json) console.log(JSON.stringify(report));
      else console.log(`\n${formatPipelineTable(report)}\n\ntest split, full ranking (${report.seconds.toFixed(0)} s in all)\nrun directory: ${report.run}`);
    });
  });

program
  .command('demo-tokenize')
  .description('tokenize random clustered items into 4-level semantic IDs (k-means-initialised residual codebooks)')
  .option('--items <n>', 'items to tokenize', positiveInt, 200_000)
  .option('--dim <d>', 'embedding dimension', positiveInt, 64)
  .option('--levels <L>', 'residual levels', positiveInt, 4)
  .option('--codes <K>', 'codewords per level', positiveInt, 256)
  .option('--beam <B>', 'beam width', positiveInt, 1)
  .option('--seed <s>', 'random seed', positiveInt, 42)
  .option('--json', 'one JSON document on stdout')
  .action(async (opts: { items: number; dim: number; levels: number; codes: number; beam: number; seed: number; json?: boolean }) => {
    await withInterrupt(async (signal) => {
      const report = await runTokenizeDemo({ ...opts, signal, progress: process.stderr.isTTY || !opts.json });
      if (opts.json) console.log(JSON.stringify(report));
      else {
        console.log(`\nTokenized ${report.items.toLocaleString('en-US')} items (d=${report.dim}) into ${report.levels}-level semantic IDs (K=${report.codes}, beam ${report.beam})`);
        console.log(`  codebook fit (k-means per level, ${report.fitItems} items): ${report.fitSeconds.toFixed(2)} s`);
        console.log(`  encode: ${report.encodeSeconds.toFixed(2)} s = ${Math.round(report.itemsPerSecond).toLocaleString('en-US')} items/s`);
        console.log(`  relative reconstruction error ‖x − x̂‖²/‖x‖²: ${report.relativeError.toFixed(4)}`);
        console.log(`  codes used per level: ${report.codesUsed.join(', ')}; distinct semantic IDs: ${report.distinctIds.toLocaleString('en-US')} (${(100 * report.collisionRate).toFixed(2)} % of items share one)`);
        console.log(`  first items: ${report.sample.map((ids) => `<${ids.join('-')}>`).join(' ')}`);
      }
    });
  });

program
  .command('evaluate')
  .description('full-ranking leave-one-out evaluation (history masked, ties to the lower item id) of a baseline, a SASRec folder or an MME-SID run')
  .option('--sequences <file>', 'sequence file: one user per line, "user item item ..." (with --model)')
  .option('--model <name>', `model: ${EVALUATE_MODELS.join(', ')} (DIR: a "mmesid sasrec train" output folder)`, (value: string) => {
    try {
      return parseEvaluateModel(value);
    } catch {
      throw new CommanderArgumentError(`expected one of ${EVALUATE_MODELS.join(', ')}, got "${value}"`);
    }
  })
  .option('--run <dir>', 'an MME-SID run directory (from `mmesid finetune`); its sequences are used; writes DIR/eval/spectrum.{csv,svg}')
  .option('--split <split>', 'test (target items[-1]) or valid (target items[-2])', oneOf(['test', 'valid'] as const), 'test')
  .option('--ks <list>', 'cut-offs K, comma-separated', intList, [5, 10, 20])
  .option('--cold-threshold <n>', 'cold targets: training frequency <= n', nonNegativeInt, 5)
  .option('--batch-size <n>', 'users per native evaluator call', positiveInt, 256)
  .option('--json', 'one JSON document on stdout')
  .action(
    async (opts: { sequences?: string; model?: EvaluateModel; run?: string; split: 'test' | 'valid'; ks: number[]; coldThreshold: number; batchSize: number; json?: boolean }) => {
      await withInterrupt(async (signal) => {
        if (opts.run !== undefined) {
          if (opts.model !== undefined || opts.sequences !== undefined) throw new CommanderArgumentError('--run takes the sequences and the model from the run directory: leave out --sequences and --model');
          const report = await runEvaluateRun(opts.run, { ...opts, signal });
          console.log(opts.json ? JSON.stringify(report) : `${formatReport(report)}\n${JSON.stringify(report.diagnostics, null, 2)}`);
          return;
        }
        if (opts.model === undefined || opts.sequences === undefined) throw new CommanderArgumentError('give --sequences and --model, or --run');
        const report = await runEvaluate({ ...opts, sequences: opts.sequences, model: opts.model, progress: process.stderr.isTTY, signal });
        console.log(opts.json ? JSON.stringify(report) : formatReport(report));
      });
    },
  );

const data = program.command('data').description('inspect and generate data files');

data
  .command('stats')
  .description('users, items (largest id) and interactions of a sequence file')
  .argument('<file>', 'sequence file: one user per line, "user item item ..."')
  .option('--json', 'one JSON document on stdout')
  .action(async (file: string, opts: { json?: boolean }) => {
    const stats = await runDataStats(file);
    if (opts.json) console.log(JSON.stringify(stats));
    else {
      console.log(`${file}: ${stats.users.toLocaleString('en-US')} users, ${stats.items.toLocaleString('en-US')} items, ${stats.interactions.toLocaleString('en-US')} interactions`);
      console.log(`  distinct items ${stats.distinctItems.toLocaleString('en-US')}; sequence length min ${stats.minLength}, mean ${stats.meanLength.toFixed(2)}, max ${stats.maxLength}; sha256 ${stats.sha256}`);
    }
  });

data
  .command('synthetic')
  .description('write the deterministic synthetic data set: sequences.txt, text_emb.npy, visual_emb.npy, synthetic.json')
  .requiredOption('--out <dir>', 'output folder (created when missing; every file written atomically)')
  .option('--users <n>', 'users', positiveInt, 1000)
  .option('--items <n>', 'items in the catalogue', positiveInt, 500)
  .option('--clusters <n>', 'latent item clusters', positiveInt, 10)
  .option('--text-dim <d>', 'text feature dim', positiveInt, 32)
  .option('--visual-dim <d>', 'visual feature dim', positiveInt, 16)
  .option('--seed <s>', 'random seed', nonNegativeInt, 1)
  .option('--json', 'one JSON document on stdout')
  .action(async (opts: { out: string; users: number; items: number; clusters: number; textDim: number; visualDim: number; seed: number; json?: boolean }) => {
    const report = await runDataSynthetic(opts.out, {
      seed: opts.seed,
      numUsers: opts.users,
      numItems: opts.items,
      numClusters: opts.clusters,
      textDim: opts.textDim,
      visualDim: opts.visualDim,
    });
    if (opts.json) console.log(JSON.stringify(report));
    else console.log(`${report.outDir}: ${report.users.toLocaleString('en-US')} users, ${report.items.toLocaleString('en-US')} items, ${report.interactions.toLocaleString('en-US')} interactions (seed ${report.options.seed}; sequences.txt sha256 ${report.sha256})`);
  });

program
  .command('embed-text')
  .description('item text embeddings without a pretrained model: TF-IDF of title, brand and categories, randomized truncated SVD; writes float32 [items + 1, D] .npy, row 0 = padding zeros')
  .requiredOption('--items <file>', 'item catalogue: items.jsonl')
  .requiredOption('--out <file>', 'output .npy (written atomically)')
  .requiredOption('--dim <D>', 'embedding dimension', positiveInt)
  .option('--seed <s>', 'seed of the random test matrix (uint32)', nonNegativeInt, 0)
  .option('--min-df <n>', 'keep terms found in at least n items', positiveInt, 2)
  .option('--power-iterations <q>', 'power iterations of the randomized SVD', nonNegativeInt, 4)
  .option('--sublinear-tf', 'tf = 1 + ln(count) instead of the raw count')
  .option('--json', 'one JSON document on stdout')
  .action(
    async (opts: { items: string; out: string; dim: number; seed: number; minDf: number; powerIterations: number; sublinearTf?: boolean; json?: boolean }) => {
      await withInterrupt(async (signal) => {
        const { json, sublinearTf, ...rest } = opts;
        const report = await runEmbedText({ ...rest, sublinearTf: sublinearTf === true, progress: process.stderr.isTTY || !json, signal });
        console.log(json ? JSON.stringify(report) : formatEmbedTextReport(report));
      });
    },
  );


program
  .command('sasrec')
  .description('the SASRec collaborative encoder (needs mmesid_torch.node)')
  .command('train')
  .description('train SASRec (leave-one-out, best validation nDCG@10, early stopping); writes item_emb.npy [items + 1, dim] and metrics.json')
  .requiredOption('--sequences <file>', 'sequence file: one user per line, "user item item ..."')
  .requiredOption('--out <dir>', 'output folder (item_emb.npy, metrics.json; written atomically)')
  .option('--dim <d>', 'hidden size', positiveInt, SASREC_DEFAULTS.dim)
  .option('--blocks <n>', 'transformer blocks', positiveInt, SASREC_DEFAULTS.blocks)
  .option('--heads <n>', 'attention heads', positiveInt, SASREC_DEFAULTS.heads)
  .option('--max-len <n>', 'positions (last items read)', positiveInt, SASREC_DEFAULTS.maxLen)
  .option('--dropout <p>', 'dropout rate in [0, 1)', finiteNumber, SASREC_DEFAULTS.dropout)
  .option('--loss <loss>', `objective: ${SASREC_LOSSES.join(', ')}`, oneOf(SASREC_LOSSES), SASREC_DEFAULTS.loss)
  .option('--lr <lr>', 'Adam learning rate', finiteNumber, SASREC_DEFAULTS.lr)
  .option('--batch-size <n>', 'users per step', positiveInt, SASREC_DEFAULTS.batchSize)
  .option('--epochs <n>', 'maximum epochs', positiveInt, SASREC_DEFAULTS.epochs)
  .option('--patience <n>', 'early stop after n epochs without a better validation nDCG@10', positiveInt, SASREC_DEFAULTS.patience)
  .option('--seed <s>', 'random seed', nonNegativeInt, SASREC_DEFAULTS.seed)
  .option('--threads <n>', 'libtorch threads (0 = all cores)', nonNegativeInt, SASREC_DEFAULTS.threads)
  .option('--checkpoint <file>', 'checkpoint written atomically after every epoch')
  .option('--resume', 'continue from --checkpoint when it exists')
  .option('--json', 'one JSON document on stdout')
  .action(
    async (opts: Omit<RunSasrecTrainOptions, 'progress' | 'signal'> & { json?: boolean }) => {
      await withInterrupt(async (signal) => {
        const { json, ...rest } = opts;
        const report = await runSasrecTrain({ ...rest, progress: process.stderr.isTTY || !json, signal });
        console.log(json ? JSON.stringify(report) : formatSasrecReport(report));
      });
    },
  );

registerTokenizerCommand(program);
registerTokenizeCommand(program);
registerLlmCommand(program);
registerFinetuneCommands(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error as Error & { code?: string };
  console.error(`mmesid: ${e.message}${e.code ? ` [${e.code}]` : ''}`);
  process.exitCode = e.code === 'ERR_MMESID_CANCELLED' ? 130 : 1;
});
