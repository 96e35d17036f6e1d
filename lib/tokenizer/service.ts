/**
 * The tokenization service: load a trained MM-RQ-VAE tokenizer (a `mmesid tokenizer train` output
 * folder) and turn item embeddings into semantic IDs in Node, without libtorch — mmesid_core.node runs
 * the encoder MLP and the greedy residual assignment (the encoding contract of the tokenizer
 * specification: per layer out = bias + x·Wᵀ through SGEMM with beta = 1, ReLU between layers, then
 * nearest codeword per level with ties to the lower code), so codes equal the libtorch path's.
 *
 * Files read from the folder:
 * - `tokenizer.json` — manifest `{ format: "mmesid.tokenizer", version: 1, weights, numItems, levels,
 *   codes, codeDim, modalities: [{ name, inputDim, hidden }], settings, weightsSha256 }`;
 * - the weights file it names (`tokenizer.safetensors`): `<m>.encoder.<i>.weight [dims[i+1], dims[i]]`,
 *   `<m>.encoder.<i>.bias [dims[i+1]]` with dims = [inputDim, ...hidden, codeDim], the mirrored
 *   `<m>.decoder.<i>.*`, and `<m>.codebooks [levels, codes, codeDim]`. Every one of them must be present
 *   with exactly that shape (other tensors are ignored); its sha256 must equal `weightsSha256`.
 * Only encoders and codebooks are kept (copied into native memory, freed by {@link Tokenizer.dispose}).
 *
 * @example
 *   const tok = await Tokenizer.load('out/tokenizer');
 *   try {
 *     const { collab, text } = await tok.encode({ collab: c, text: t }); // Int32Array [n, L] each
 *   } finally {
 *     tok.dispose();
 *   }
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CancelledError, DataFormatError, InvalidArgumentError, callNative, describe, fromNative } from '../errors';
import { core } from '../native';
import { sha256OfFile } from '../data/atomicFile';
import { loadTensors, type NamedTensor } from '../data/embeddings';
import { isFloat32Array, optionalInteger, optionalSignal, requireObject } from '../validate';
import type { NativeTokenizerHandle, NativeTokenizerModality } from '../../typings/native';

/** `format` of tokenizer.json. */
export const TOKENIZER_FORMAT = 'mmesid.tokenizer';
/** `version` of tokenizer.json this code reads and writes. */
export const TOKENIZER_VERSION = 1;
/** The manifest's file name in a tokenizer folder. */
export const TOKENIZER_MANIFEST = 'tokenizer.json';
/** The modalities a tokenizer may hold, in manifest order. */
export const TOKENIZER_MODALITIES = ['collab', 'text', 'visual'] as const;
export type TokenizerModalityName = (typeof TOKENIZER_MODALITIES)[number];

/** Default rows per native call of {@link Tokenizer.encode}. */
export const DEFAULT_ENCODE_BATCH_ROWS = 4096;

/** One modality as listed in tokenizer.json. */
export interface TokenizerManifestModality {
  name: TokenizerModalityName;
  /** Input embedding dimension. */
  inputDim: number;
  /** Encoder hidden sizes (the decoder mirrors them). */
  hidden: number[];
}

/** tokenizer.json (see the module comment). `settings` is the trainer's, kept as written. */
export interface TokenizerManifest {
  format: typeof TOKENIZER_FORMAT;
  version: typeof TOKENIZER_VERSION;
  /** File name of the weights, in the same folder. */
  weights: string;
  numItems: number;
  levels: number;
  codes: number;
  codeDim: number;
  modalities: TokenizerManifestModality[];
  settings: Record<string, unknown>;
  /** sha256 (hex) of the weights file. */
  weightsSha256: string;
}

/** A loaded modality. */
export interface TokenizerModalityInfo {
  name: TokenizerModalityName;
  inputDim: number;
  hidden: number[];
  codeDim: number;
  /** L: codes per item. */
  levels: number;
  /** K: codewords per level. */
  codes: number;
}

/** Inputs of {@link Tokenizer.encode}: per modality, float32 [n, inputDim] row-major. */
export type TokenizerInput = Partial<Record<TokenizerModalityName, Float32Array>>;
/** Outputs of {@link Tokenizer.encode}: per given modality, int32 [n, levels] row-major. */
export type TokenizerCodes = Partial<Record<TokenizerModalityName, Int32Array>>;

/** Options of {@link Tokenizer.encode}. */
export interface TokenizerEncodeOptions {
  /** Threads per native call (0 = all cores). Default 0. */
  threads?: number;
  /** Rows per native call (each call runs on the libuv pool; the signal is checked between calls). Default 4096. */
  batchRows?: number;
  /** Cancels between batches; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
  /** Row number of the inputs' first row in the caller's table (error messages only). Default 0. */
  firstRow?: number;
  /** Called after each batch with (rows done, rows total) over all modalities. */
  onProgress?: (done: number, total: number) => void;
}

const MAX_THREADS = 1024;
const SHA256 = /^[0-9a-f]{64}$/;

function isPositiveInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}

/** Validates a parsed tokenizer.json. @throws DataFormatError (file, line 1, problem) */
export function validateTokenizerManifest(raw: unknown, file: string): TokenizerManifest {
  const fail = (problem: string): never => {
    throw new DataFormatError(file, 1, problem);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('not a JSON object');
  const m = raw as Record<string, unknown>;
  if (m.format !== TOKENIZER_FORMAT) fail(`"format" is ${JSON.stringify(m.format)}, expected "${TOKENIZER_FORMAT}" (not an mmesid tokenizer manifest)`);
  if (m.version !== TOKENIZER_VERSION) fail(`unsupported "version" ${JSON.stringify(m.version)} (this mmesid reads version ${TOKENIZER_VERSION})`);
  if (typeof m.weights !== 'string' || m.weights.length === 0 || m.weights !== path.basename(m.weights) || m.weights === '..' || m.weights === '.') {
    fail(`"weights" must be a file name in the tokenizer folder, got ${JSON.stringify(m.weights)}`);
  }
  if (typeof m.numItems !== 'number' || !Number.isSafeInteger(m.numItems) || m.numItems < 0) fail(`"numItems" must be an integer >= 0, got ${JSON.stringify(m.numItems)}`);
  for (const key of ['levels', 'codes', 'codeDim'] as const) {
    if (!isPositiveInteger(m[key])) fail(`"${key}" must be an integer >= 1, got ${JSON.stringify(m[key])}`);
  }
  if ((m.codes as number) > 2 ** 31 - 1) fail(`"codes" must be < 2^31, got ${String(m.codes)}`);
  if (!Array.isArray(m.modalities) || m.modalities.length === 0) fail('"modalities" must be a non-empty array');
  const modalities = (m.modalities as unknown[]).map((entry, i): TokenizerManifestModality => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`"modalities"[${i}] is not an object`);
    const e = entry as Record<string, unknown>;
    if (!(TOKENIZER_MODALITIES as readonly unknown[]).includes(e.name)) fail(`"modalities"[${i}].name must be one of ${TOKENIZER_MODALITIES.join(', ')}, got ${JSON.stringify(e.name)}`);
    if (!isPositiveInteger(e.inputDim)) fail(`"modalities"[${i}].inputDim must be an integer >= 1, got ${JSON.stringify(e.inputDim)}`);
    if (!Array.isArray(e.hidden) || !e.hidden.every(isPositiveInteger)) fail(`"modalities"[${i}].hidden must be an array of integers >= 1, got ${JSON.stringify(e.hidden)}`);
    return { name: e.name as TokenizerModalityName, inputDim: e.inputDim as number, hidden: (e.hidden as number[]).slice() };
  });
  const order = modalities.map((x) => TOKENIZER_MODALITIES.indexOf(x.name));
  if (!order.every((v, i) => i === 0 || v > order[i - 1]!)) fail(`"modalities" must be distinct and in the order ${TOKENIZER_MODALITIES.join(', ')}, got ${modalities.map((x) => x.name).join(', ')}`);
  if (m.settings !== undefined && (typeof m.settings !== 'object' || m.settings === null || Array.isArray(m.settings))) fail('"settings" must be an object');
  if (typeof m.weightsSha256 !== 'string' || !SHA256.test(m.weightsSha256)) fail(`"weightsSha256" must be 64 lowercase hex digits, got ${JSON.stringify(m.weightsSha256)}`);
  return {
    format: TOKENIZER_FORMAT,
    version: TOKENIZER_VERSION,
    weights: m.weights as string,
    numItems: m.numItems as number,
    levels: m.levels as number,
    codes: m.codes as number,
    codeDim: m.codeDim as number,
    modalities,
    settings: (m.settings as Record<string, unknown> | undefined) ?? {},
    weightsSha256: m.weightsSha256 as string,
  };
}

/** The tensor names and shapes a manifest implies, per modality, in a fixed order. */
export function expectedTokenizerTensors(manifest: Pick<TokenizerManifest, 'modalities' | 'levels' | 'codes' | 'codeDim'>): Array<{ name: string; shape: number[] }> {
  const out: Array<{ name: string; shape: number[] }> = [];
  for (const m of manifest.modalities) {
    const encoder = [m.inputDim, ...m.hidden, manifest.codeDim];
    const decoder = encoder.slice().reverse();
    for (const [part, dims] of [['encoder', encoder], ['decoder', decoder]] as const) {
      for (let i = 0; i + 1 < dims.length; i += 1) {
        out.push({ name: `${m.name}.${part}.${i}.weight`, shape: [dims[i + 1]!, dims[i]!] });
        out.push({ name: `${m.name}.${part}.${i}.bias`, shape: [dims[i + 1]!] });
      }
    }
    out.push({ name: `${m.name}.codebooks`, shape: [manifest.levels, manifest.codes, manifest.codeDim] });
  }
  return out;
}

function missingFile(dir: string, file: string, error: unknown): never {
  const e = error as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') {
    throw new InvalidArgumentError('dir', `a tokenizer folder holding ${path.basename(file)} (written by \`mmesid tokenizer train\`)`, dir, `${JSON.stringify(dir)}, where ${file} does not exist`);
  }
  throw error;
}

/**
 * A loaded tokenizer. Any number of {@link encode} calls may run at once; {@link dispose} frees the
 * native weights (calls already running finish first; later calls throw).
 */
export class Tokenizer {
  private handle: NativeTokenizerHandle | undefined;

  private constructor(
    /** The folder it was loaded from. */
    readonly dir: string,
    /** The manifest as validated. */
    readonly manifest: TokenizerManifest,
    handle: NativeTokenizerHandle,
  ) {
    this.handle = handle;
    this.modalities = manifest.modalities.map((m) => ({ name: m.name, inputDim: m.inputDim, hidden: m.hidden.slice(), codeDim: manifest.codeDim, levels: manifest.levels, codes: manifest.codes }));
  }

  /** The modalities this tokenizer encodes, in manifest order (collab, text, visual). */
  readonly modalities: readonly TokenizerModalityInfo[];

  /** L: codes per item (every modality). */
  get levels(): number {
    return this.manifest.levels;
  }

  /** K: codewords per level. */
  get codes(): number {
    return this.manifest.codes;
  }

  /** True after {@link dispose}. */
  get disposed(): boolean {
    return this.handle === undefined;
  }

  /**
   * Loads `dir`/tokenizer.json and the weights it names, checking the manifest (format, version,
   * fields), the weights' sha256 against `weightsSha256`, and every tensor's presence and shape.
   * @throws InvalidArgumentError naming the missing file when tokenizer.json or the weights file does
   *   not exist; DataFormatError naming the file and the problem for a malformed manifest, a sha256
   *   mismatch, a missing or mis-shaped tensor, a non-finite weight or a malformed safetensors file;
   *   NativeUnavailableError when mmesid_core.node cannot be loaded.
   */
  static async load(dir: string): Promise<Tokenizer> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('dir', 'a folder path', dir);
    const manifestFile = path.join(dir, TOKENIZER_MANIFEST);
    let text: string;
    try {
      text = await fs.promises.readFile(manifestFile, 'utf8');
    } catch (error) {
      missingFile(dir, manifestFile, error);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new DataFormatError(manifestFile, 1, `not valid JSON (${(error as Error).message})`);
    }
    const manifest = validateTokenizerManifest(parsed, manifestFile);
    const weightsFile = path.join(dir, manifest.weights);
    let sha: string;
    try {
      sha = await sha256OfFile(weightsFile);
    } catch (error) {
      missingFile(dir, weightsFile, error);
    }
    if (sha !== manifest.weightsSha256) {
      throw DataFormatError.atByte(weightsFile, 0, `sha256 ${sha} does not match "weightsSha256" ${manifest.weightsSha256} of ${manifestFile} (the weights were modified or belong to another tokenizer)`);
    }
    const { tensors } = await loadTensors(weightsFile);
    const byName = new Map<string, NamedTensor>(tensors.map((t) => [t.name, t]));
    for (const { name, shape } of expectedTokenizerTensors(manifest)) {
      const t = byName.get(name);
      if (!t) throw DataFormatError.atByte(weightsFile, 8, `missing tensor "${name}" (shape [${shape.join(', ')}]) that ${manifestFile} implies`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw DataFormatError.atByte(weightsFile, 8, `tensor "${name}" has shape [${t.shape.join(', ')}] but ${manifestFile} implies [${shape.join(', ')}]`);
      }
    }
    const native: NativeTokenizerModality[] = manifest.modalities.map((m) => {
      const dims = [m.inputDim, ...m.hidden, manifest.codeDim];
      return {
        name: m.name,
        layers: dims.slice(0, -1).map((inDim, i) => ({
          weight: byName.get(`${m.name}.encoder.${i}.weight`)!.data,
          bias: byName.get(`${m.name}.encoder.${i}.bias`)!.data,
          inDim,
          outDim: dims[i + 1]!,
        })),
        codebooks: byName.get(`${m.name}.codebooks`)!.data,
        levels: manifest.levels,
        codes: manifest.codes,
        codeDim: manifest.codeDim,
      };
    });
    let handle: NativeTokenizerHandle;
    try {
      handle = core().tokenizerCreate({ modalities: native });
    } catch (error) {
      const e = error as Error & { code?: string };
      if (e.code === 'ERR_MMESID_INVALID_ARGUMENT') throw DataFormatError.atByte(weightsFile, 8, e.message);
      throw fromNative(error, new Error().stack);
    }
    return new Tokenizer(dir, manifest, handle);
  }

  /** Bytes of native weights held (encoders and codebooks; 0 after dispose). */
  get nativeBytes(): number {
    return this.handle ? this.handle.bytes() : 0;
  }

  /**
   * Encodes each given modality: float32 [n, inputDim] → int32 [n, levels] semantic-ID codes.
   * Batches of `batchRows` rows run one after another on the libuv pool (each using `threads` cores);
   * the JS thread stays free. Inputs are read in place: do not modify them until the promise settles.
   * @throws InvalidArgumentError (rejection) for a modality this tokenizer lacks, a value that is not a
   *   Float32Array of whole rows, bad options, a disposed tokenizer, or a NaN/±Inf in an input (naming
   *   `input.<modality>`, the row (counted from `firstRow`) and the column); CancelledError when
   *   `signal` aborts; NativeError when finite inputs overflow float32 inside the encoder.
   */
  async encode(input: TokenizerInput, options: TokenizerEncodeOptions = {}): Promise<TokenizerCodes> {
    const callerStack = new Error().stack;
    this.requireLive();
    const given = requireObject(input, 'input');
    const o = requireObject(options, 'options');
    const threads = optionalInteger(o.threads, 'options.threads', 0, 0, MAX_THREADS);
    const batchRows = optionalInteger(o.batchRows, 'options.batchRows', DEFAULT_ENCODE_BATCH_ROWS, 1);
    const firstRow = optionalInteger(o.firstRow, 'options.firstRow', 0, 0);
    const signal = optionalSignal(o.signal, 'options.signal');
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new InvalidArgumentError('options.onProgress', 'a function', o.onProgress);
    const onProgress = o.onProgress as TokenizerEncodeOptions['onProgress'];
    const names = this.modalities.map((m) => m.name).join(', ');
    const work: Array<{ info: TokenizerModalityInfo; x: Float32Array; n: number }> = [];
    for (const [key, value] of Object.entries(given)) {
      if (value === undefined) continue;
      const info = this.modalities.find((m) => m.name === key);
      if (!info) throw new InvalidArgumentError(`input.${key}`, `no value: this tokenizer encodes ${names}`, value);
      if (!isFloat32Array(value)) throw new InvalidArgumentError(`input.${key}`, 'a Float32Array', value);
      if (value.length % info.inputDim !== 0) {
        throw new InvalidArgumentError(`input.${key}`, `a Float32Array of whole rows [n, inputDim=${info.inputDim}] (a length that is a multiple of ${info.inputDim})`, value);
      }
      work.push({ info, x: value, n: value.length / info.inputDim });
    }
    const total = work.reduce((sum, w) => sum + w.n, 0);
    const result: TokenizerCodes = {};
    let done = 0;
    for (const { info, x, n } of work) {
      const codes = new Int32Array(n * info.levels);
      for (let start = 0; start < n; start += batchRows) {
        if (signal?.aborted) throw new CancelledError('Tokenizer.encode was cancelled');
        const handle = this.requireLive();
        const rows = Math.min(batchRows, n - start);
        await callNative(
          () =>
            handle.encode({
              modality: info.name,
              x: x.subarray(start * info.inputDim, (start + rows) * info.inputDim),
              n: rows,
              codes: codes.subarray(start * info.levels, (start + rows) * info.levels),
              threads,
              rowOffset: firstRow + start,
              label: `input.${info.name}`,
            }),
          callerStack,
        );
        done += rows;
        onProgress?.(done, total);
      }
      result[info.name] = codes;
    }
    return result;
  }

  /**
   * Test hook: the same encode on the naive native references (double-accumulated MLP, scalar RQ).
   * @internal
   */
  async _encodeReference(modality: TokenizerModalityName, x: Float32Array): Promise<Int32Array> {
    const handle = this.requireLive();
    const info = this.modalities.find((m) => m.name === modality);
    if (!info) throw new InvalidArgumentError('modality', 'a modality of this tokenizer', modality);
    const n = x.length / info.inputDim;
    const codes = new Int32Array(n * info.levels);
    await callNative(() => handle.encode({ modality, x, n, codes, threads: 1, _reference: true }), new Error().stack);
    return codes;
  }

  /**
   * Frees the native weights. Encodes already running complete normally (they hold the weights until
   * they end); later calls throw InvalidArgumentError. Idempotent.
   */
  dispose(): void {
    const handle = this.handle;
    this.handle = undefined;
    handle?.dispose();
  }

  private requireLive(): NativeTokenizerHandle {
    if (!this.handle) throw new InvalidArgumentError('tokenizer', 'a Tokenizer that has not been disposed', this, `a disposed Tokenizer (${describe(this.dir)})`);
    return this.handle;
  }
}
