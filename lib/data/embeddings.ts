/**
 * External embedding tables and weight files: `.npy` and `.safetensors` readers, the item-table rule,
 * and atomic `.npy` / `.safetensors` writers (model weights, e.g. SASRec's `model.safetensors`, are
 * stored as safetensors so that Python's `safetensors.torch.load_file` reads them too).
 *
 * Every table becomes an {@link EmbeddingTable}: row-major float32 `[rows, dim]`. float16 and bfloat16
 * payloads are widened to float32 exactly (every f16/bf16 value is representable in f32).
 *
 * How a file is read (the same for both formats):
 * 1. the header alone is read and validated, and the payload size it implies is checked against the
 *    file's length (a truncated or over-long file is rejected before any payload is read);
 * 2. the payload is read in one pass straight into the result's buffer (fs.promises `read` into the
 *    Float32Array's bytes). A 16-bit payload is read into the upper half of that buffer and widened in
 *    place, front to back (output i, bytes [4i, 4i + 4), never reaches input j > i, which sits at
 *    2·n + 2j), so no file is ever buffered twice.
 *
 * Formats accepted:
 * - `.npy` v1.0, v2.0 and v3.0 headers; dtype `<f4` or `<f2` (`|`/`=` byte orders are not written by
 *   numpy for these dtypes and are rejected, as is big-endian `>`); `fortran_order: False`; a 2-D shape;
 *   the payload must end exactly at the end of the file.
 * - `.safetensors`: the 8-byte little-endian header length, a JSON header (≤ 100 MiB, as the reference
 *   implementation allows), and one named 2-D tensor of dtype `F32`, `F16` or `BF16` whose
 *   `data_offsets` lie inside the data section.
 * Malformed files reject with DataFormatError naming the file, the byte offset and what was wrong.
 *
 * Why hand-written: the npm packages for these formats do not fit. `npyjs` (1.2) parses an ArrayBuffer
 * that already holds the whole file (the file would be held twice) and pulls in a fetch polyfill;
 * the `safetensors` package (0.0.1) is an empty placeholder. Both formats are small, fully specified,
 * and their readers here are ~200 lines with a test for every rejection.
 *
 * Byte order: the payload is read as host-order words, so a big-endian host is refused up front.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

import { DataFormatError, InvalidArgumentError } from '../errors';
import { isFloat32Array, requireInteger, requireLength, requireObject } from '../validate';
import { writeFileAtomic } from './atomicFile';

/** A row-major float32 table `[rows, dim]`. */
export interface EmbeddingTable {
  /** Number of rows (for an item table: numItems + 1, row 0 = padding). */
  rows: number;
  /** Columns per row. */
  dim: number;
  /** float32 [rows · dim], row-major. */
  data: Float32Array;
}

/** An {@link EmbeddingTable} read from a file, with where it came from. */
export interface LoadedEmbeddingTable extends EmbeddingTable {
  /** The file as given. */
  source: string;
  /** The file's format. */
  format: 'npy' | 'safetensors';
  /** The dtype stored in the file (the table itself is always float32). */
  storedDtype: 'f32' | 'f16' | 'bf16';
  /** The tensor's name (safetensors only). */
  tensor?: string;
}

/** Options of {@link loadEmbeddings} and {@link loadSafetensors}. */
export interface LoadEmbeddingsOptions {
  /**
   * Name of the tensor in a `.safetensors` file. May be left out when the file holds exactly one
   * tensor. Ignored for `.npy`.
   */
  tensor?: string;
}

type StoredDtype = LoadedEmbeddingTable['storedDtype'];

export const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
const SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024;
/** Largest payload read in one `read` call (the platform limit is just under 2 GiB). */
const READ_CHUNK = 1 << 30;
/** Largest table read: 2^31 − 1 elements (8 GiB of float32), inside every supported Node's typed-array limit. */
const MAX_ELEMENTS = 2 ** 31 - 1;

function requireLittleEndianHost(): void {
  if (os.endianness() !== 'LE') throw new Error('mmesid reads and writes embedding tables on little-endian hosts only');
}

function requireFile(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(name, 'a file path', value);
  return value;
}

// ---------------------------------------------------------------------------------------------------
// 16-bit → 32-bit widening

let f16Table: Uint32Array | undefined;

/** f32 bit patterns of all 65,536 f16 values (exact: subnormals, infinities and NaN payloads kept). */
function halfToFloatBits(): Uint32Array {
  if (f16Table) return f16Table;
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h += 1) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >> 10) & 0x1f;
    let mantissa = h & 0x3ff;
    let bits: number;
    if (exponent === 0x1f) {
      bits = sign | 0x7f800000 | (mantissa << 13);
    } else if (exponent !== 0) {
      bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa === 0) {
      bits = sign;
    } else {
      // Subnormal half: normalize the mantissa into an f32 normal.
      let e = 113;
      while ((mantissa & 0x400) === 0) {
        mantissa <<= 1;
        e -= 1;
      }
      bits = sign | (e << 23) | ((mantissa & 0x3ff) << 13);
    }
    table[h] = bits >>> 0;
  }
  f16Table = table;
  return table;
}

/**
 * Widens `count` 16-bit values stored in the upper half of `out`'s buffer (at byte 2·count) into
 * float32, in place (see the module comment for why front-to-back is safe).
 */
function widenInPlace(out: Float32Array, count: number, dtype: 'f16' | 'bf16'): void {
  const words = new Uint32Array(out.buffer, out.byteOffset, count);
  const halves = new Uint16Array(out.buffer, out.byteOffset + 2 * count, count);
  if (dtype === 'bf16') {
    for (let i = 0; i < count; i += 1) words[i] = halves[i]! << 16;
  } else {
    const table = halfToFloatBits();
    for (let i = 0; i < count; i += 1) words[i] = table[halves[i]!]!;
  }
}

// ---------------------------------------------------------------------------------------------------
// Reading

async function readExactly(handle: fs.promises.FileHandle, target: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const length = Math.min(READ_CHUNK, target.length - done);
    const { bytesRead } = await handle.read(target, done, length, position + done);
    if (bytesRead === 0) throw DataFormatError.atByte(file, position + done, `file ended ${target.length - done} bytes early`);
    done += bytesRead;
  }
}

/** Reads the payload described by a validated header into a new float32 table. */
async function readPayload(handle: fs.promises.FileHandle, file: string, position: number, elements: number, dtype: StoredDtype): Promise<Float32Array> {
  const out = new Float32Array(elements);
  const bytes = new Uint8Array(out.buffer);
  if (dtype === 'f32') {
    await readExactly(handle, bytes, position, file);
  } else {
    await readExactly(handle, bytes.subarray(2 * elements), position, file);
    widenInPlace(out, elements, dtype);
  }
  return out;
}

const ITEM_SIZE: Record<StoredDtype, number> = { f32: 4, f16: 2, bf16: 2 };

/** Checks the shape's size and the payload's extent against the file's length. */
function checkExtent(file: string, shapeAt: number, rows: number, dim: number, dtype: StoredDtype, dataStart: number, fileSize: number, exactEnd: boolean): number {
  const elements = rows * dim;
  if (!Number.isSafeInteger(elements) || elements > MAX_ELEMENTS) {
    throw DataFormatError.atByte(file, shapeAt, `shape [${rows}, ${dim}] has more than ${MAX_ELEMENTS} elements`);
  }
  const payload = elements * ITEM_SIZE[dtype];
  const end = dataStart + payload;
  if (end > fileSize) {
    throw DataFormatError.atByte(file, fileSize, `truncated payload: shape [${rows}, ${dim}] ${dtype} needs ${payload} bytes from byte ${dataStart} (to byte ${end}) but the file has ${fileSize} bytes`);
  }
  if (exactEnd && end < fileSize) {
    throw DataFormatError.atByte(file, end, `${fileSize - end} unexpected bytes after the payload (shape [${rows}, ${dim}] ${dtype} ends at byte ${end})`);
  }
  return elements;
}

// --- .npy -----------------------------------------------------------------------------------------

type PyValue = string | boolean | number[] | null;

/** Parses numpy's header: a Python dict literal of strings, booleans and tuples of integers. */
function parseNpyHeader(text: string, encoding: 'utf8' | 'latin1', file: string, at: number): Map<string, PyValue> {
  let i = 0;
  function fail(problem: string): never {
    throw DataFormatError.atByte(file, at + Buffer.byteLength(text.slice(0, i), encoding), `npy header ${problem}`);
  }
  function space(): void {
    while (i < text.length && /\s/.test(text[i]!)) i += 1;
  }
  function expect(char: string): void {
    space();
    if (text[i] !== char) fail(`expected "${char}" but found ${text[i] === undefined ? 'the end' : JSON.stringify(text[i])}`);
    i += 1;
  }
  function string(): string {
    space();
    const quote = text[i];
    if (quote !== "'" && quote !== '"') fail('expected a quoted string');
    const end = text.indexOf(quote, i + 1);
    if (end < 0) fail('has an unterminated string');
    const value = text.slice(i + 1, end);
    i = end + 1;
    return value;
  }
  function tuple(): number[] {
    i += 1;
    const items: number[] = [];
    for (;;) {
      space();
      if (text[i] === ')') break;
      const match = /^[0-9]+L?/.exec(text.slice(i, i + 32));
      if (!match) fail('shape must be a tuple of non-negative integers');
      items.push(Number(match[0].replace('L', '')));
      i += match[0].length;
      space();
      if (text[i] === ',') i += 1;
      else if (text[i] !== ')') fail('shape tuple is malformed');
    }
    i += 1;
    return items;
  }
  function value(): PyValue {
    space();
    const c = text[i];
    if (c === "'" || c === '"') return string();
    if (c === '(') return tuple();
    for (const [word, result] of [['True', true], ['False', false], ['None', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return result;
      }
    }
    return fail('has a value that is not a string, boolean, None or tuple');
  }
  const entries = new Map<string, PyValue>();
  expect('{');
  for (;;) {
    space();
    if (text[i] === '}') break;
    const key = string();
    expect(':');
    entries.set(key, value());
    space();
    if (text[i] === ',') i += 1;
    else if (text[i] !== '}') fail('dict is malformed');
  }
  i += 1;
  space();
  if (i !== text.length) fail('has text after the dict');
  return entries;
}

interface Opened {
  handle: fs.promises.FileHandle;
  size: number;
}

/** Opens `file` (on a little-endian host), runs `read` on it and always closes it. */
async function withOpenFile<T>(file: string, read: (opened: Opened) => Promise<T>): Promise<T> {
  requireLittleEndianHost();
  const opened = await open(file);
  try {
    return await read(opened);
  } finally {
    await opened.handle.close();
  }
}

async function open(file: string): Promise<Opened> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const { size } = await handle.stat();
    return { handle, size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

async function readHead(opened: Opened, file: string, length: number, position: number, what: string): Promise<Buffer> {
  if (position + length > opened.size) {
    throw DataFormatError.atByte(file, opened.size, `file ends inside the ${what} (needs ${position + length} bytes, has ${opened.size})`);
  }
  const buffer = Buffer.alloc(length);
  await readExactly(opened.handle, buffer, position, file);
  return buffer;
}

/** The validated header of a 2-D C-order `.npy` whose dtype is one of `dtypes` (numpy descr → ours). */
async function readNpyHeader<D extends string>(opened: Opened, file: string, dtypes: Record<string, D>): Promise<{ dtype: D; rows: number; dim: number; headerStart: number; dataStart: number }> {
  const preamble = await readHead(opened, file, Math.min(opened.size, 12), 0, 'npy preamble');
  if (preamble.length < 10 || !preamble.subarray(0, 6).equals(NPY_MAGIC)) {
    throw DataFormatError.atByte(file, 0, 'not an .npy file (bad magic; expected "\\x93NUMPY")');
  }
  const major = preamble[6]!;
  const minor = preamble[7]!;
  if ((major !== 1 && major !== 2 && major !== 3) || minor !== 0) {
    throw DataFormatError.atByte(file, 6, `unsupported npy format version ${major}.${minor} (1.0, 2.0 and 3.0 are read)`);
  }
  if (major > 1 && preamble.length < 12) throw DataFormatError.atByte(file, opened.size, 'file ends inside the npy preamble');
  const headerLength = major === 1 ? preamble.readUInt16LE(8) : preamble.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = await readHead(opened, file, headerLength, headerStart, 'npy header');
  const encoding = major === 3 ? 'utf8' : 'latin1';
  const entries = parseNpyHeader(header.toString(encoding), encoding, file, headerStart);
  const descr = entries.get('descr');
  const fortran = entries.get('fortran_order');
  const shape = entries.get('shape');
  if (typeof descr !== 'string') throw DataFormatError.atByte(file, headerStart, 'npy header has no "descr" string');
  const dtype: D | undefined = Object.prototype.hasOwnProperty.call(dtypes, descr) ? dtypes[descr] : undefined;
  if (dtype === undefined) {
    throw DataFormatError.atByte(file, headerStart, `unsupported dtype ${JSON.stringify(descr)} (${Object.keys(dtypes).map((d) => JSON.stringify(d)).join(' or ')} are read)`);
  }
  if (typeof fortran !== 'boolean') throw DataFormatError.atByte(file, headerStart, 'npy header has no "fortran_order" boolean');
  if (fortran) throw DataFormatError.atByte(file, headerStart, 'unsupported order: fortran_order is True (C order is read)');
  if (!Array.isArray(shape)) throw DataFormatError.atByte(file, headerStart, 'npy header has no "shape" tuple');
  if (shape.length !== 2) throw DataFormatError.atByte(file, headerStart, `unsupported rank ${shape.length}: shape (${shape.join(', ')}) is not 2-D`);
  const [rows, dim] = shape as [number, number];
  return { dtype, rows, dim, headerStart, dataStart: headerStart + headerLength };
}

async function readNpy(opened: Opened, file: string): Promise<LoadedEmbeddingTable> {
  const { dtype, rows, dim, headerStart, dataStart } = await readNpyHeader<StoredDtype>(opened, file, { '<f4': 'f32', '<f2': 'f16' });
  const elements = checkExtent(file, headerStart, rows, dim, dtype, dataStart, opened.size, true);
  const data = await readPayload(opened.handle, file, dataStart, elements, dtype);
  return { rows, dim, data, source: file, format: 'npy', storedDtype: dtype };
}

// --- .safetensors -----------------------------------------------------------------------------------

const SAFETENSORS_DTYPES: Record<string, StoredDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

interface SafetensorsEntry {
  name: string;
  dtype: StoredDtype;
  shape: number[];
  /** Absolute byte offset of the payload. */
  position: number;
}

interface SafetensorsHeader {
  names: string[];
  entry: (name: string) => SafetensorsEntry;
  metadata: Record<string, string>;
}

/** Reads and validates the header; each tensor's entry is validated when asked for. */
async function readSafetensorsHeader(opened: Opened, file: string): Promise<SafetensorsHeader> {
  const prefix = await readHead(opened, file, 8, 0, 'safetensors header length');
  const declared = prefix.readBigUInt64LE(0);
  if (declared > BigInt(SAFETENSORS_MAX_HEADER)) {
    throw DataFormatError.atByte(file, 0, `safetensors header length ${declared} exceeds the ${SAFETENSORS_MAX_HEADER}-byte limit`);
  }
  const headerLength = Number(declared);
  if (8 + headerLength > opened.size) {
    throw DataFormatError.atByte(file, 0, `safetensors header length ${headerLength} runs past the end of the file (${opened.size} bytes)`);
  }
  const header = await readHead(opened, file, headerLength, 8, 'safetensors header');
  if (header[0] !== 0x7b) throw DataFormatError.atByte(file, 8, 'safetensors header does not start with "{"');
  let parsed: unknown;
  try {
    parsed = JSON.parse(header.toString('utf8'));
  } catch (error) {
    throw DataFormatError.atByte(file, 8, `safetensors header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw DataFormatError.atByte(file, 8, 'safetensors header is not a JSON object');
  }
  const entries = parsed as Record<string, unknown>;
  const rawMetadata = entries.__metadata__;
  const metadata: Record<string, string> = {};
  if (rawMetadata !== undefined) {
    if (typeof rawMetadata !== 'object' || rawMetadata === null || Array.isArray(rawMetadata) || !Object.values(rawMetadata).every((v) => typeof v === 'string')) {
      throw DataFormatError.atByte(file, 8, 'safetensors "__metadata__" is not an object of strings');
    }
    Object.assign(metadata, rawMetadata);
  }
  const dataSection = 8 + headerLength;
  const entry = (name: string): SafetensorsEntry => {
    const info = entries[name];
    const where = `tensor ${JSON.stringify(name)}`;
    if (typeof info !== 'object' || info === null) throw DataFormatError.atByte(file, 8, `${where}: header entry is not an object`);
    const { dtype: rawDtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    const dtype = typeof rawDtype === 'string' ? SAFETENSORS_DTYPES[rawDtype] : undefined;
    if (dtype === undefined) throw DataFormatError.atByte(file, 8, `${where}: unsupported dtype ${JSON.stringify(rawDtype)} (F32, F16 and BF16 are read)`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw DataFormatError.atByte(file, 8, `${where}: shape is not a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && (d as number) >= 0) || (offsets[0] as number) > (offsets[1] as number)) {
      throw DataFormatError.atByte(file, 8, `${where}: data_offsets is not a pair [begin, end] of integers with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = elements * ITEM_SIZE[dtype];
    if (end - begin !== expected) {
      throw DataFormatError.atByte(file, dataSection + begin, `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape.join(', ')}] ${rawDtype as string} needs ${expected}`);
    }
    if (dataSection + end > opened.size) {
      throw DataFormatError.atByte(file, opened.size, `${where}: data_offsets [${begin}, ${end}] are out of range: the data section (from byte ${dataSection}) ends at byte ${opened.size}`);
    }
    return { name, dtype, shape: shape as number[], position: dataSection + begin };
  };
  return { names: Object.keys(entries).filter((key) => key !== '__metadata__'), entry, metadata };
}

async function readSafetensors(opened: Opened, file: string, tensor: string | undefined): Promise<LoadedEmbeddingTable> {
  const header = await readSafetensorsHeader(opened, file);
  const { names } = header;
  const listed = names.length === 0 ? 'none' : names.map((n) => JSON.stringify(n)).join(', ');
  let name = tensor;
  if (name === undefined) {
    if (names.length !== 1) throw new InvalidArgumentError('options.tensor', `the name of one of the tensors in ${file} (${listed})`, undefined);
    name = names[0]!;
  } else if (!names.includes(name)) {
    throw new InvalidArgumentError('options.tensor', `the name of one of the tensors in ${file} (${listed})`, name);
  }
  const { dtype, shape, position } = header.entry(name);
  if (shape.length !== 2) throw DataFormatError.atByte(file, 8, `tensor ${JSON.stringify(name)}: unsupported rank ${shape.length}: shape [${shape.join(', ')}] is not 2-D`);
  const [rows, dim] = shape as [number, number];
  const elements = checkExtent(file, 8, rows, dim, dtype, position, opened.size, false);
  const data = await readPayload(opened.handle, file, position, elements, dtype);
  return { rows, dim, data, source: file, format: 'safetensors', storedDtype: dtype, tensor: name };
}

/** A named float32 tensor of any rank (row-major). */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Every tensor of a `.safetensors` file (widened to float32), in header order, plus its metadata. */
export interface TensorFile {
  tensors: NamedTensor[];
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------------
// Public API

function optionsOf(options: LoadEmbeddingsOptions | undefined): string | undefined {
  const o = options === undefined ? {} : requireObject(options, 'options');
  if (o.tensor !== undefined && (typeof o.tensor !== 'string' || o.tensor.length === 0)) {
    throw new InvalidArgumentError('options.tensor', 'a tensor name', o.tensor);
  }
  return o.tensor;
}

/**
 * Reads a 2-D `.npy` table (float32 or float16, little-endian, C order; header v1.0/2.0/3.0).
 * @param file path of the file
 * @returns the table as float32 `[rows, dim]`
 * @throws DataFormatError (rejection) naming the file, byte offset and problem for a malformed or
 *   unsupported file; the file system's error (e.g. ENOENT) when it cannot be read;
 *   InvalidArgumentError on bad arguments.
 */
export async function loadNpy(file: string): Promise<LoadedEmbeddingTable> {
  requireFile(file, 'file');
  return withOpenFile(file, (opened) => readNpy(opened, file));
}

/**
 * Reads a 2-D little-endian int32 (`<i4`) `.npy`, e.g. the semantic IDs `sids.<modality>.npy`.
 * @returns `{ rows, dim, data }` with data int32 [rows, dim] row-major
 * @throws DataFormatError naming the file and byte offset for a malformed file or another dtype.
 */
export async function loadInt32Npy(file: string): Promise<{ rows: number; dim: number; data: Int32Array; source: string }> {
  requireFile(file, 'file');
  return withOpenFile(file, async (opened) => {
    const { rows, dim, dataStart } = await readNpyHeader(opened, file, { '<i4': 'i32' });
    const bytes = rows * dim * 4;
    if (dataStart + bytes !== opened.size) {
      throw DataFormatError.atByte(file, Math.min(opened.size, dataStart + bytes), `the data holds ${opened.size - dataStart} bytes; shape (${rows}, ${dim}) of int32 needs ${bytes}`);
    }
    const data = new Int32Array(rows * dim);
    await readExactly(opened.handle, new Uint8Array(data.buffer), dataStart, file);
    return { rows, dim, data, source: file };
  });
}

/**
 * Reads one 2-D tensor (F32, F16 or BF16) of a `.safetensors` file.
 * @param file path of the file
 * @param options `tensor`: its name (may be left out when the file holds exactly one tensor)
 * @returns the table as float32 `[rows, dim]`
 * @throws InvalidArgumentError listing the file's tensor names when `options.tensor` is missing (and
 *   the file holds several) or names no tensor; DataFormatError (file, byte offset, problem) for a
 *   malformed or unsupported file; the file system's error when it cannot be read.
 */
export async function loadSafetensors(file: string, options?: LoadEmbeddingsOptions): Promise<LoadedEmbeddingTable> {
  requireFile(file, 'file');
  const tensor = optionsOf(options);
  return withOpenFile(file, (opened) => readSafetensors(opened, file, tensor));
}

/**
 * Reads every tensor of a `.safetensors` file (F32, F16 or BF16, any rank; widened to float32) and its
 * `__metadata__` strings.
 * @throws DataFormatError (file, byte offset, problem) for a malformed or unsupported file; the file
 *   system's error when it cannot be read; InvalidArgumentError on a bad argument.
 */
export async function loadTensors(file: string): Promise<TensorFile> {
  requireFile(file, 'file');
  return withOpenFile(file, async (opened) => {
    const header = await readSafetensorsHeader(opened, file);
    const tensors: NamedTensor[] = [];
    for (const name of header.names) {
      const { dtype, shape, position } = header.entry(name);
      const elements = shape.reduce((a, b) => a * b, 1);
      checkExtent(file, 8, 1, elements, dtype, position, opened.size, false);
      tensors.push({ name, shape, data: await readPayload(opened.handle, file, position, elements, dtype) });
    }
    return { tensors, metadata: header.metadata };
  });
}

/**
 * Reads an embedding table from `.npy` or `.safetensors`, told apart by the file's first bytes (the
 * npy magic; anything else is read as safetensors), not by its name.
 * @throws as {@link loadNpy} and {@link loadSafetensors}
 */
export async function loadEmbeddings(file: string, options?: LoadEmbeddingsOptions): Promise<LoadedEmbeddingTable> {
  requireFile(file, 'file');
  const tensor = optionsOf(options);
  return withOpenFile(file, async (opened) => {
    const magic = Buffer.alloc(Math.min(6, opened.size));
    await readExactly(opened.handle, magic, 0, file);
    return magic.equals(NPY_MAGIC) ? readNpy(opened, file) : readSafetensors(opened, file, tensor);
  });
}

/**
 * The library's rule for any external item embedding table, of any modality: `numItems + 1` rows
 * (row 0 is the padding item) and every value finite.
 * @param table    the table to check
 * @param numItems number of items (ids 1..numItems)
 * @param name     what the table is, for the message (e.g. `"text embeddings"`)
 * @throws InvalidArgumentError naming the table: on a wrong row count, a `data` length that is not
 *   rows · dim, or the first non-finite value (its row and column).
 */
export function validateItemTable(table: EmbeddingTable, numItems: number, name: string): void {
  const label = typeof name === 'string' && name.length > 0 ? name : 'table';
  const t = requireObject(table, label);
  requireInteger(numItems, 'numItems', 1);
  const rows = requireInteger(t.rows, `${label}.rows`, 0);
  const dim = requireInteger(t.dim, `${label}.dim`, 1);
  if (!isFloat32Array(t.data)) throw new InvalidArgumentError(`${label}.data`, 'a Float32Array', t.data);
  requireLength(t.data, rows * dim, `${label}.data`, `[${rows}, ${dim}]`);
  if (rows !== numItems + 1) {
    throw new InvalidArgumentError(label, `${numItems + 1} rows (numItems + 1; row 0 is padding)`, rows, `${rows} rows`);
  }
  const data: Float32Array = t.data;
  for (let i = 0; i < data.length; i += 1) {
    if (!Number.isFinite(data[i]!)) {
      const row = Math.floor(i / dim);
      throw new InvalidArgumentError(label, 'finite values', data[i], `${String(data[i])} at row ${row}, column ${i - row * dim}`);
    }
  }
}

/**
 * The npy header (v1.0, or v2.0 when the dict is too long) for a C-order 2-D table, 64-byte aligned.
 * @param descr numpy dtype string, e.g. `<f4`, `<i4`
 */
export function npyHeader(descr: string, rows: number, dim: number): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${rows}, ${dim}), }`;
  for (const [major, prefix] of [[1, 10], [2, 12]] as const) {
    const total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
    const length = total - prefix;
    if (major === 1 && length > 0xffff) continue;
    const header = Buffer.alloc(total, 0x20);
    NPY_MAGIC.copy(header, 0);
    header[6] = major;
    header[7] = 0;
    if (major === 1) header.writeUInt16LE(length, 8);
    else header.writeUInt32LE(length, 8);
    header.write(dict, prefix, 'latin1');
    header[total - 1] = 0x0a;
    return header;
  }
  throw new Error('unreachable');
}

/**
 * Writes a float32 `[rows, dim]` table as `.npy` (v1.0, `<f4`, C order), atomically: the bytes go to
 * a temporary file in the same folder, are flushed, and the file is renamed over `file`. A failure
 * (disk full, a crash, a bad target) never leaves a partly written `file`; the temporary is removed.
 * @param file path to write
 * @param rows rows (>= 0)
 * @param dim  columns (>= 1)
 * @param data float32 [rows · dim], row-major (read in place; do not modify it while the call runs)
 * @throws InvalidArgumentError on bad arguments; the file system's error (rejection) when writing fails.
 */
export async function saveNpy(file: string, rows: number, dim: number, data: Float32Array): Promise<void> {
  requireFile(file, 'file');
  requireInteger(rows, 'rows', 0);
  requireInteger(dim, 'dim', 1);
  if (!isFloat32Array(data)) throw new InvalidArgumentError('data', 'a Float32Array', data);
  requireLength(data, rows * dim, 'data', `[${rows}, ${dim}]`);
  requireLittleEndianHost();
  await writeFileAtomic(file, [npyHeader('<f4', rows, dim), new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]);
}

/**
 * Writes float32 tensors as one `.safetensors` file (dtype F32, in the order given, header padded with
 * spaces to a multiple of 8 bytes), atomically as {@link saveNpy} does.
 * @param tensors  distinct non-empty names (not `__metadata__`), shapes of non-negative integers and
 *   data of exactly the shape's size
 * @param metadata optional `__metadata__` strings
 * @throws InvalidArgumentError naming the bad tensor or field; the file system's error (rejection).
 */
export async function saveTensors(file: string, tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Promise<void> {
  requireFile(file, 'file');
  if (!Array.isArray(tensors)) throw new InvalidArgumentError('tensors', 'an array of { name, shape, data }', tensors);
  const meta = requireObject(metadata, 'metadata');
  for (const [key, value] of Object.entries(meta)) {
    if (typeof value !== 'string') throw new InvalidArgumentError(`metadata.${key}`, 'a string', value);
  }
  requireLittleEndianHost();
  const header: Record<string, unknown> = Object.keys(meta).length > 0 ? { __metadata__: meta } : {};
  const parts: Uint8Array[] = [];
  let offset = 0;
  tensors.forEach((raw, i) => {
    const t = requireObject(raw, `tensors[${i}]`);
    if (typeof t.name !== 'string' || t.name.length === 0 || t.name === '__metadata__' || t.name in header) {
      throw new InvalidArgumentError(`tensors[${i}].name`, 'a distinct non-empty name other than "__metadata__"', t.name);
    }
    const shape: unknown = t.shape;
    if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new InvalidArgumentError(`tensors[${i}].shape`, 'an array of non-negative integers', shape);
    }
    if (!isFloat32Array(t.data)) throw new InvalidArgumentError(`tensors[${i}].data`, 'a Float32Array', t.data);
    requireLength(t.data, shape.reduce((a, b) => a * b, 1), `tensors[${i}].data`, `[${shape.join(', ')}]`);
    header[t.name] = { dtype: 'F32', shape, data_offsets: [offset, offset + t.data.byteLength] };
    parts.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    offset += t.data.byteLength;
  });
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(padded.length));
  await writeFileAtomic(file, [prefix, padded, ...parts]);
}
