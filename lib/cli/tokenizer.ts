/**
 * `mmesid tokenizer train`: trains the MM-RQ-VAE tokenizer (lib/tokenizer/train.ts) on one to three
 * item tables (.npy or .safetensors, [numItems + 1, d], row 0 = padding) and writes the tokenizer folder:
 * tokenizer.json, tokenizer.safetensors, sids.<modality>.npy, report.json.
 *
 *   mmesid tokenizer train --collab C.npy [--text T.npy] [--visual V.npy] --out DIR
 *       [--recon mmd|mse] [--align infonce|mmd|none] [--levels 4] [--codes 256] [--code-dim E | --llm DIR]
 *       [--hidden 256,128] [--epochs 1000] [--patience 200] [--batch-size 1024] [--lr 2e-4] [--seed 42] [--json] ...
 *
 * A checkpoint is written atomically after every epoch (default DIR/checkpoint.pt; `--no-checkpoint`
 * disables it); `--resume` continues an interrupted run from it. Progress (a bar per epoch, then a line
 * per epoch) goes to stderr; the report (`--json`: one JSON document) to stdout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, InvalidArgumentError as CommanderArgumentError } from 'commander';

import { loadEmbeddings } from '../data/embeddings';
import { TOKENIZER_MODALITIES, type TokenizerModalityName } from '../tokenizer/service';
import {
  TOKENIZER_ALIGNS,
  TOKENIZER_DEFAULTS,
  TOKENIZER_KMEANS_INITS,
  TOKENIZER_RESIDUAL_GRADIENTS,
  TOKENIZER_RECONS,
  trainTokenizer,
  type TokenizerSettings,
  type TokenizerTrainReport,
} from '../tokenizer/train';
import { EpochBar } from './epochBar';
import { finiteNumber, intList, nonNegativeInt, oneOf, positiveInt, withInterrupt } from './args';

/** The default checkpoint's name in the output folder. */
export const TOKENIZER_CHECKPOINT = 'checkpoint.pt';

export interface RunTokenizerTrainOptions extends TokenizerSettings {
  /** Table files per modality (.npy or .safetensors). */
  collab?: string;
  text?: string;
  visual?: string;
  out: string;
  /** Show the progress bar and per-epoch lines on stderr. */
  progress: boolean;
  signal?: AbortSignal;
}

/** Loads the tables, trains, writes the folder. */
export async function runTokenizerTrain(o: RunTokenizerTrainOptions): Promise<TokenizerTrainReport> {
  const { progress, out, signal, ...rest } = o;
  const settings: TokenizerSettings = { ...rest };
  for (const name of TOKENIZER_MODALITIES) delete (settings as Record<string, unknown>)[name];
  const tables: Partial<Record<TokenizerModalityName, Awaited<ReturnType<typeof loadEmbeddings>>>> = {};
  for (const name of TOKENIZER_MODALITIES) {
    const file = o[name];
    if (file !== undefined) tables[name] = await loadEmbeddings(file);
  }
  if (settings.checkpoint !== undefined) await fs.promises.mkdir(path.dirname(settings.checkpoint), { recursive: true });
  const bar = new EpochBar('tokenizer epoch {epoch} [{bar}] {value}/{total} steps | loss {loss}');
  if (progress) process.stderr.write(`tokenizer: ${Object.keys(tables).join(' + ')}, k-means initialisation (${settings.kmeansInit ?? TOKENIZER_DEFAULTS.kmeansInit}) then training\n`);
  try {
    return await trainTokenizer({
      ...settings,
      ...tables,
      outDir: out,
      ...(signal ? { signal } : {}),
      onProgress: (event) => {
        if (!progress) return;
        if (event.kind === 'step') bar.step(event.epoch, event.step, event.steps, { loss: event.loss.toFixed(4) });
        else {
          bar.line(
            `epoch ${event.epoch}: loss ${event.loss.toFixed(4)} (recon ${event.recon.toFixed(4)}, align ${event.align.toFixed(4)}, rq ${event.rq.toFixed(4)}) ${event.seconds.toFixed(2)} s${event.improved ? ' *' : ''}`,
          );
        }
      },
    });
  } finally {
    bar.stop();
  }
}

/** A human-readable rendering of the report. */
export function formatTokenizerReport(r: TokenizerTrainReport): string {
  const lines = [
    `MM-RQ-VAE (${r.modalities.join(' + ')}; L ${r.levels} × K ${r.codes}, e ${r.codeDim}; recon ${r.settings.recon}, align ${r.settings.align}) on ${r.numItems.toLocaleString('en-US')} items`,
    `  ${r.epochs.length} epochs in ${r.wallSeconds.toFixed(1)} s (${r.secondsPerEpoch.toFixed(2)} s/epoch)${r.stoppedEarly ? ', early stop' : ''}; best epoch ${r.bestEpoch}`,
  ];
  for (const m of r.modalities) {
    const q = r.perModality[m]!;
    lines.push(
      `  ${m}: Kendall τ ${q.kendallTau.toFixed(4)}, collision rate ${(100 * q.collisionRate).toFixed(2)} % (${q.distinctSids.toLocaleString('en-US')} distinct SIDs), recon MSE ${q.reconMse.toExponential(3)}`,
      `    usage per level: ${q.usage.map((u, l) => `L${l} ${u.used}/${r.codes} (ppl ${u.perplexity.toFixed(1)})`).join(', ')}`,
    );
  }
  lines.push(`  wrote ${r.outDir}/{${r.files.manifest}, ${r.files.weights}, ${Object.values(r.files.sids).join(', ')}, ${r.files.report}}`);
  return lines.join('\n');
}

function sinkhornLevels(value: string): number[] {
  if (value.trim() === 'none') return [];
  return value.split(',').map((part) => nonNegativeInt(part.trim()));
}

function hiddenList(value: string): number[] {
  if (value.trim() === 'none' || value.trim() === '') return [];
  return intList(value);
}

function positiveNumber(value: string): number {
  const n = finiteNumber(value);
  if (n <= 0) throw new CommanderArgumentError(`expected a number > 0, got "${value}"`);
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = finiteNumber(value);
  if (n < 0) throw new CommanderArgumentError(`expected a number >= 0, got "${value}"`);
  return n;
}

interface TokenizerTrainFlags extends Omit<TokenizerSettings, 'llmConfig' | 'checkpoint'> {
  collab?: string;
  text?: string;
  visual?: string;
  out: string;
  llm?: string;
  kmeans?: TokenizerSettings['kmeansInit'];
  /** A path, or false after --no-checkpoint. */
  checkpoint: string | boolean;
  json?: boolean;
}

/**
 * Adds `mmesid tokenizer train` to `program`.
 * @returns the `tokenizer` command
 */
export function registerTokenizerCommand(program: Command): Command {
  const tokenizer = program.command('tokenizer').description('the MM-RQ-VAE semantic-ID tokenizer (training needs mmesid_torch.node)');
  const d = TOKENIZER_DEFAULTS;
  tokenizer
    .command('train')
    .description('train the MM-RQ-VAE on item tables [items + 1, d] (row 0 = padding); writes tokenizer.json, tokenizer.safetensors, sids.<modality>.npy, report.json')
    .option('--collab <file>', 'collaborative item table (.npy / .safetensors), e.g. SASRec item_emb.npy')
    .option('--text <file>', 'text item table (e.g. from mmesid embed-text)')
    .option('--visual <file>', 'visual item table')
    .requiredOption('--out <dir>', 'output folder (files written atomically once training succeeded)')
    .option('--recon <loss>', `reconstruction loss: ${TOKENIZER_RECONS.join(', ')}`, oneOf(TOKENIZER_RECONS), d.recon)
    .option('--align <loss>', `alignment of quantized collab with text/visual: ${TOKENIZER_ALIGNS.join(', ')} (the paper: infonce; the authors' code: mmd)`, oneOf(TOKENIZER_ALIGNS), d.align)
    .option('--levels <L>', 'residual levels', positiveInt, d.levels)
    .option('--codes <K>', 'codewords per level', positiveInt, d.codes)
    .option('--code-dim <e>', 'code dimension (default: --llm hidden_size, else 4096 = Llama 3 8B)', positiveInt)
    .option('--llm <dir>', 'Hugging Face model folder or config.json: code dim = its hidden_size')
    .option('--hidden <list>', 'encoder hidden sizes, comma-separated ("none" for a single linear layer)', hiddenList, d.hidden.slice())
    .option('--epochs <n>', 'maximum epochs', positiveInt, d.epochs)
    .option('--patience <n>', 'early stop after n epochs without a lower mean total loss', positiveInt, d.patience)
    .option('--batch-size <n>', 'items per step (>= 2)', positiveInt, d.batchSize)
    .option('--lr <lr>', 'AdamW learning rate', positiveNumber, d.lr)
    .option('--weight-decay <wd>', 'AdamW weight decay', nonNegativeNumber, d.weightDecay)
    .option('--recon-weight <w>', 'weight of the reconstruction loss', nonNegativeNumber, d.reconWeight)
    .option('--align-weight <w>', 'weight of the alignment loss', nonNegativeNumber, d.alignWeight)
    .option('--beta <b>', 'commitment weight (the official script ties it to --align-weight)', nonNegativeNumber, d.beta)
    .option('--temperature <t>', 'InfoNCE temperature', positiveNumber, d.temperature)
    .option('--infonce-symmetric', 'InfoNCE in both directions (default: quantized collab → text/visual, as the authors\' code)')
    .option('--mmd-alpha <a>', 'α of the Gaussian MMD kernel', positiveNumber, d.mmdAlpha)
    .option('--residual-gradient <g>', `gradient through the residuals: ${TOKENIZER_RESIDUAL_GRADIENTS.join(', ')} (lc-rec: the authors' code, deeper residuals detached)`, oneOf(TOKENIZER_RESIDUAL_GRADIENTS), d.residualGradient)
    .option('--sinkhorn-levels <list>', 'levels (0-based) assigned by Sinkhorn while training, or "none" (default: the last)', sinkhornLevels)
    .option('--sinkhorn-epsilon <e>', 'Sinkhorn ε', positiveNumber, d.sinkhornEpsilon)
    .option('--sinkhorn-iterations <n>', 'Sinkhorn iterations', positiveInt, d.sinkhornIterations)
    .option('--kmeans <init>', `codebook initialisation: ${TOKENIZER_KMEANS_INITS.join(', ')}`, oneOf(TOKENIZER_KMEANS_INITS), d.kmeansInit)
    .option('--kmeans-iterations <n>', 'Lloyd iterations per level', positiveInt, d.kmeansIterations)
    .option('--seed <s>', 'random seed', nonNegativeInt, d.seed)
    .option('--threads <n>', 'libtorch threads (0 = all cores; 1 for bit-identical runs)', nonNegativeInt, d.threads)
    .option('--tau-pairs <n>', 'item pairs sampled for Kendall τ', positiveInt, d.tauPairs)
    .option('--checkpoint <file>', `checkpoint written atomically after every epoch (default: DIR/${TOKENIZER_CHECKPOINT})`)
    .option('--no-checkpoint', 'write no checkpoint')
    .option('--resume', 'continue from the checkpoint when it exists')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: TokenizerTrainFlags) => {
      const { json, llm, kmeans, checkpoint, out, ...rest } = opts;
      if (rest.collab === undefined && rest.text === undefined && rest.visual === undefined) {
        throw new CommanderArgumentError('expected at least one of --collab, --text, --visual');
      }
      const checkpointFile = checkpoint === false ? undefined : typeof checkpoint === 'string' ? checkpoint : path.join(out, TOKENIZER_CHECKPOINT);
      if (rest.resume && checkpointFile === undefined) throw new CommanderArgumentError('--resume needs a checkpoint (drop --no-checkpoint)');
      await withInterrupt(async (signal) => {
        const report = await runTokenizerTrain({
          ...rest,
          out,
          ...(llm === undefined ? {} : { llmConfig: llm }),
          ...(kmeans === undefined ? {} : { kmeansInit: kmeans }),
          ...(checkpointFile === undefined ? {} : { checkpoint: checkpointFile }),
          progress: process.stderr.isTTY || !json,
          signal,
        });
        console.log(json ? JSON.stringify(report) : formatTokenizerReport(report));
      });
    });
  return tokenizer;
}
