/**
 * `mmesid tokenize`: semantic IDs for an embedding table of any size with a trained tokenizer, in Node
 * and without libtorch (lib/tokenizer/service.ts on mmesid_core.node).
 *
 *   mmesid tokenize --tokenizer DIR --input X.npy --modality collab --out sids.npy
 *                   [--shard i/n] [--batch-rows R] [--threads T] [--item-table] [--json]
 *
 * Streaming: the input `.npy` (float32 or float16, [rows, inputDim]) is read R rows at a time into two
 * fixed buffers (the next chunk is read while the current one is encoded) and each chunk's codes are
 * appended to the output before the buffer is reused, so memory does not grow with the file. Resident
 * memory beyond Node itself is bounded by
 *     tokenizer weights (encoders + codebooks, native; the whole file's tensors while loading)
 *   + 2 · R · inputDim · 4 bytes        (input double buffer)
 *   + 2 · R · L · 4 bytes               (codes of one chunk: the encoder's result and the output buffer)
 *   + min(R, 1024) · (2 · widest hidden + codeDim) · 4 bytes   (native encoder scratch)
 *   + the RQ kernel's per-call scratch (a packed codebook copy at codeDim <= 128; per-thread residual tiles
 *     of 256 items, 2 · 256 · codeDim · 4 bytes each, above: 8 MiB per thread at codeDim 4,096)
 * The default R keeps one input chunk near 16 MiB (R = clamp(⌊16 MiB / (4 · inputDim)⌋, 256, 65536)):
 * about 32 MiB of buffers plus the weights whatever the input's size.
 *
 * Shards: `--shard i/n` (0 <= i < n) encodes the contiguous row range
 * [⌊i · rows / n⌋, ⌊(i + 1) · rows / n⌋) of the input — the same range on every machine, the n ranges
 * tile the table in order, so concatenating the n outputs row-wise (shard 0 first) equals the
 * unsharded output exactly (codes do not depend on batching).
 *
 * Output: int32 `.npy` [shard rows, L], written atomically (temporary file, renamed when complete):
 * an interrupted or failed run (Ctrl-C, bad row, full disk) leaves no output file. With
 * `--item-table`, the input is an item table [numItems + 1, d] whose row 0 is padding: row 0 is not
 * encoded and gets codes −1, as in the trainer's sids.<modality>.npy.
 */
import * as os from 'node:os';

import { Presets, SingleBar } from 'cli-progress';
import { Command, InvalidArgumentError as CommanderArgumentError } from 'commander';

import { CancelledError, InvalidArgumentError } from '../errors';
import { nonNegativeInt, positiveInt, withInterrupt } from './args';
import { NpyRowReader, NpyWriter } from '../data/npyStream';
import { TOKENIZER_MODALITIES, Tokenizer, type TokenizerModalityName } from '../tokenizer/service';

/** Target size of one input chunk when --batch-rows is not given. */
export const TOKENIZE_CHUNK_BYTES = 16 * 1024 * 1024;
/** Native encoder tile (kEncodeTileRows in native/tokenizer/mlp_encoder.h). */
const NATIVE_TILE_ROWS = 1024;

/** Rows per chunk by default: one float32 chunk ≈ 16 MiB, within [256, 65536]. */
export function defaultBatchRows(inputDim: number): number {
  return Math.min(65536, Math.max(256, Math.floor(TOKENIZE_CHUNK_BYTES / (4 * inputDim))));
}

/** A shard `i/n`: the i-th of n contiguous row ranges. */
export interface Shard {
  index: number;
  count: number;
}

/** Parses `i/n` with 0 <= i < n. @throws InvalidArgumentError */
export function parseShard(text: string): Shard {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = match ? Number(match[1]) : NaN, count = match ? Number(match[2]) : NaN;
  if (!match || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new InvalidArgumentError('--shard', '"i/n" with integers 0 <= i < n', text);
  }
  return { index, count };
}

/** Rows [start, end) of shard `index` of `count` over `rows` rows: [⌊i·rows/n⌋, ⌊(i+1)·rows/n⌋). */
export function shardRange(rows: number, shard: Shard): { start: number; end: number } {
  // BigInt: i · rows may exceed 2^53 for huge tables sharded many ways.
  const at = (i: number) => Number((BigInt(i) * BigInt(rows)) / BigInt(shard.count));
  return { start: at(shard.index), end: at(shard.index + 1) };
}

export interface RunTokenizeOptions {
  /** Tokenizer folder. */
  tokenizer: string;
  /** Input `.npy`, float32/float16 [rows, inputDim]. */
  input: string;
  modality: TokenizerModalityName;
  /** Output `.npy` (int32 [shard rows, L]). */
  out: string;
  /** Default the whole table (0/1). */
  shard?: Shard;
  /** Rows per chunk; default {@link defaultBatchRows}. */
  batchRows?: number;
  /** Native threads (0 = all cores). Default 0. */
  threads?: number;
  /** Input row 0 is padding: not encoded, codes −1. */
  itemTable?: boolean;
  /** Progress bar on stderr. */
  progress: boolean;
  signal?: AbortSignal;
  /** Called after each chunk is written: (rows done, rows of the shard). */
  onProgress?: (done: number, total: number) => void;
}

/** What `mmesid tokenize` reports (stdout; one JSON document with --json). */
export interface TokenizeReport {
  tokenizer: string;
  input: string;
  modality: TokenizerModalityName;
  out: string;
  /** Rows of the input table. */
  inputRows: number;
  inputDim: number;
  shard: Shard & { start: number; end: number };
  /** Rows written (end − start). */
  rows: number;
  levels: number;
  batchRows: number;
  threads: number;
  /** The resident-memory bound of the module comment for this run, in bytes (Node itself excluded). */
  memoryBoundBytes: number;
  /** Wall time from opening the input to committing the output. */
  seconds: number;
  itemsPerSecond: number;
  /** sha256 of the output file. */
  sha256: string;
}

/**
 * Runs one tokenization (see the module comment).
 * @throws InvalidArgumentError (bad options, a modality the tokenizer lacks, an input of the wrong
 *   width, a NaN/Inf row — named by its row in the input file), DataFormatError (malformed files),
 *   CancelledError (signal), file-system errors. No output file exists after any of them.
 */
export async function runTokenize(o: RunTokenizeOptions): Promise<TokenizeReport> {
  if (!(TOKENIZER_MODALITIES as readonly string[]).includes(o.modality)) {
    throw new InvalidArgumentError('--modality', `one of ${TOKENIZER_MODALITIES.join(', ')}`, o.modality);
  }
  const shard = o.shard ?? { index: 0, count: 1 };
  const threads = o.threads ?? 0;
  const tokenizer = await Tokenizer.load(o.tokenizer);
  let reader: NpyRowReader | undefined;
  let writer: NpyWriter | undefined;
  let bar: SingleBar | undefined;
  try {
    const info = tokenizer.modalities.find((m) => m.name === o.modality);
    if (!info) {
      throw new InvalidArgumentError('--modality', `a modality of the tokenizer in ${o.tokenizer} (${tokenizer.modalities.map((m) => m.name).join(', ')})`, o.modality);
    }
    const started = process.hrtime.bigint();
    reader = await NpyRowReader.open(o.input);
    if (reader.dim !== info.inputDim) {
      throw new InvalidArgumentError('--input', `a table [rows, ${info.inputDim}] (the ${info.name} input dimension of the tokenizer)`, o.input, `${o.input} of shape [${reader.rows}, ${reader.dim}]`);
    }
    const batchRows = o.batchRows ?? defaultBatchRows(info.inputDim);
    const { start, end } = shardRange(reader.rows, shard);
    const levels = info.levels;
    const widest = Math.max(0, ...info.hidden);
    const cores = threads === 0 ? os.availableParallelism() : threads;
    const rqScratch = info.codeDim <= 128 ? info.levels * info.codes * info.codeDim * 4 + cores * (1 << 18) : cores * (2 * 256 * info.codeDim * 4 + (1 << 20));
    const memoryBoundBytes =
      tokenizer.nativeBytes + 2 * batchRows * info.inputDim * 4 + 2 * batchRows * levels * 4 + Math.min(batchRows, NATIVE_TILE_ROWS) * (2 * widest + info.codeDim) * 4 + rqScratch;
    writer = await NpyWriter.create(o.out, { dtype: 'int32', rows: end - start, dim: levels });
    if (o.progress) {
      bar = new SingleBar({ format: `tokenize ${info.name} [{bar}] {value}/{total} rows | {rate} rows/s | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true }, Presets.shades_classic);
      bar.start(end - start, 0, { rate: '-' });
    }
    // Two input buffers (read ahead into one while the other is encoded) and one codes buffer, reused.
    const buffers = [new Float32Array(batchRows * info.inputDim), new Float32Array(batchRows * info.inputDim)];
    const codes = new Int32Array(batchRows * levels);
    const read = (at: number, slot: number) => reader!.readInto(at, Math.min(batchRows, end - at), buffers[slot]!);
    let pending: Promise<void> | undefined = start < end ? read(start, 0) : undefined;
    let slot = 0;
    try {
      for (let at = start; at < end; at += batchRows) {
        const rows = Math.min(batchRows, end - at);
        await pending;
        pending = at + batchRows < end ? read(at + batchRows, 1 - slot) : undefined;
        if (o.signal?.aborted) throw new CancelledError('mmesid tokenize was cancelled; no output was written');
        const x = buffers[slot]!;
        const out = codes.subarray(0, rows * levels);
        const skip = o.itemTable && at === 0 ? 1 : 0; // the padding row: no SID
        if (skip) out.fill(-1, 0, levels);
        if (rows > skip) {
          const result = await tokenizer
            .encode({ [info.name]: x.subarray(skip * info.inputDim, rows * info.inputDim) }, { threads, batchRows: rows, firstRow: at + skip })
            .catch((error: unknown) => {
              // Name the file rather than the in-memory argument: "row r" is the row of the input file.
              if (error instanceof InvalidArgumentError && error.argument === `input.${info.name}`) {
                throw new InvalidArgumentError('--input', error.expected, error.received, `${String(error.received)} of ${o.input}`);
              }
              throw error;
            });
          out.set(result[info.name]!, skip * levels);
        }
        await writer.write(out);
        slot = 1 - slot;
        const done = at + rows - start;
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        bar?.update(done, { rate: Math.round(done / Math.max(seconds, 1e-9)).toLocaleString('en-US') });
        o.onProgress?.(done, end - start);
      }
    } finally {
      if (pending) await pending.catch(() => undefined);
    }
    if (o.signal?.aborted) throw new CancelledError('mmesid tokenize was cancelled; no output was written');
    const sha256 = await writer.finish();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return {
      tokenizer: o.tokenizer,
      input: o.input,
      modality: info.name,
      out: o.out,
      inputRows: reader.rows,
      inputDim: reader.dim,
      shard: { ...shard, start, end },
      rows: end - start,
      levels,
      batchRows,
      threads,
      memoryBoundBytes,
      seconds,
      itemsPerSecond: (end - start) / Math.max(seconds, 1e-9),
      sha256,
    };
  } catch (error) {
    await writer?.discard();
    throw error;
  } finally {
    bar?.stop();
    await reader?.close();
    tokenizer.dispose();
  }
}

/** A human-readable rendering of the report. */
export function formatTokenizeReport(r: TokenizeReport): string {
  const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
  return [
    `Tokenized ${r.rows.toLocaleString('en-US')} ${r.modality} rows (${r.input} rows ${r.shard.start}..${r.shard.end - 1}, shard ${r.shard.index}/${r.shard.count}) in ${r.seconds.toFixed(2)} s = ${Math.round(r.itemsPerSecond).toLocaleString('en-US')} items/s`,
    `  wrote int32 [${r.rows}, ${r.levels}] to ${r.out} (sha256 ${r.sha256})`,
    `  chunks of ${r.batchRows} rows; memory bound ${mib(r.memoryBoundBytes)} beyond Node itself`,
  ].join('\n');
}



/**
 * Adds `mmesid tokenize` to `program`.
 * @returns the new sub-command
 */
export function registerTokenizeCommand(program: Command): Command {
  return program
    .command('tokenize')
    .description(
      'semantic IDs for an embedding table of any size with a trained tokenizer (no libtorch): streams the input in chunks ' +
        '(memory ≈ tokenizer weights + 2 input chunks of ~16 MiB, whatever the file size) and writes int32 [rows, L] .npy atomically',
    )
    .requiredOption('--tokenizer <dir>', 'tokenizer folder (tokenizer.json + tokenizer.safetensors from `mmesid tokenizer train`)')
    .requiredOption('--input <file>', 'embeddings .npy, float32 or float16 [rows, inputDim]')
    .requiredOption('--modality <name>', `which encoder to use: ${TOKENIZER_MODALITIES.join(', ')}`, (value: string) => {
      if (!(TOKENIZER_MODALITIES as readonly string[]).includes(value)) throw new CommanderArgumentError(`expected one of ${TOKENIZER_MODALITIES.join(', ')}, got "${value}"`);
      return value as TokenizerModalityName;
    })
    .requiredOption('--out <file>', 'output .npy, int32 [rows, L] (written atomically: absent unless the run completes)')
    .option('--shard <i/n>', 'encode only the i-th of n contiguous row ranges [⌊i·rows/n⌋, ⌊(i+1)·rows/n⌋); concatenated in order the n outputs equal the unsharded one', (value: string) => {
      try {
        return parseShard(value);
      } catch {
        throw new CommanderArgumentError(`expected "i/n" with 0 <= i < n, got "${value}"`);
      }
    })
    .option('--batch-rows <R>', 'rows per chunk (default: ~16 MiB of input per chunk)', positiveInt)
    .option('--threads <T>', 'native threads (0 = all cores)', nonNegativeInt, 0)
    .option('--item-table', 'the input is an item table [numItems + 1, d]: row 0 is padding, gets codes -1 and is not encoded')
    .option('--json', 'one JSON document on stdout')
    .action(
      async (opts: { tokenizer: string; input: string; modality: TokenizerModalityName; out: string; shard?: Shard; batchRows?: number; threads: number; itemTable?: boolean; json?: boolean }) => {
        await withInterrupt(async (signal) => {
          const { json, itemTable, ...rest } = opts;
          const report = await runTokenize({ ...rest, itemTable: itemTable === true, progress: process.stderr.isTTY || !json, signal });
          console.log(json ? JSON.stringify(report) : formatTokenizeReport(report));
        });
      },
    );
}
