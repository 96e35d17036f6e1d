#!/usr/bin/env node
/**
 * The `mmesid` command line. Progress goes to stderr; results to stdout (`--json` for machines).
 *   mmesid info            what was built (BLAS, CUDA, libtorch)
 *   mmesid demo            tokenize random items into semantic IDs with the RQ kernels
 */
import { Command, InvalidArgumentError as CommanderArgumentError } from 'commander';

import { buildInfo } from '../info';
import { runTokenizeDemo } from './demo';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new CommanderArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

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
  .description('tokenize random clustered items into 4-level semantic IDs (k-means-initialised residual codebooks)')
  .option('--items <n>', 'items to tokenize', positiveInt, 200_000)
  .option('--dim <d>', 'embedding dimension', positiveInt, 64)
  .option('--levels <L>', 'residual levels', positiveInt, 4)
  .option('--codes <K>', 'codewords per level', positiveInt, 256)
  .option('--beam <B>', 'beam width', positiveInt, 1)
  .option('--seed <s>', 'random seed', positiveInt, 42)
  .option('--json', 'one JSON document on stdout')
  .action(async (opts: { items: number; dim: number; levels: number; codes: number; beam: number; seed: number; json?: boolean }) => {
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.once('SIGINT', onSigint);
    try {
      const report = await runTokenizeDemo({ ...opts, signal: ac.signal, progress: process.stderr.isTTY || !opts.json });
      if (opts.json) console.log(JSON.stringify(report));
      else {
        console.log(`\nTokenized ${report.items.toLocaleString('en-US')} items (d=${report.dim}) into ${report.levels}-level semantic IDs (K=${report.codes}, beam ${report.beam})`);
        console.log(`  codebook fit (k-means per level, ${report.fitItems} items): ${report.fitSeconds.toFixed(2)} s`);
        console.log(`  encode: ${report.encodeSeconds.toFixed(2)} s = ${Math.round(report.itemsPerSecond).toLocaleString('en-US')} items/s`);
        console.log(`  relative reconstruction error ‖x − x̂‖²/‖x‖²: ${report.relativeError.toFixed(4)}`);
        console.log(`  codes used per level: ${report.codesUsed.join(', ')}; distinct semantic IDs: ${report.distinctIds.toLocaleString('en-US')} (${(100 * report.collisionRate).toFixed(2)} % of items share one)`);
        console.log(`  first items: ${report.sample.map((ids) => `<${ids.join('-')}>`).join(' ')}`);
      }
    } finally {
      process.off('SIGINT', onSigint);
    }
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error as Error & { code?: string };
  console.error(`mmesid: ${e.message}${e.code ? ` [${e.code}]` : ''}`);
  process.exitCode = e.code === 'ERR_MMESID_CANCELLED' ? 130 : 1;
});
