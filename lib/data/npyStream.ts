/**
 * Streaming `.npy` I/O for tables larger than memory: {@link NpyRowReader} reads a 2-D float32/float16
 * table a chunk of rows at a time (positional reads; the file is never loaded whole), and
 * {@link NpyWriter} writes a 2-D int32 or float32 table chunk by chunk through an {@link AtomicFile},
 * so an interrupted write never leaves a complete-looking file.
 *
 * Header rules are those of `loadNpy` (lib/data/embeddings.ts): format versions 1.0, 2.0 and 3.0;
 * little-endian `<f4` or `<f2`; `fortran_order: False`; a 2-D shape; the payload must end exactly at
 * the end of the file. Malformed files reject with DataFormatError naming the file, the byte offset and
 * the problem. Little-endian hosts only (payloads are read and written as host-order words).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

import { DataFormatError, InvalidArgumentError } from '../errors';
import { isFloat32Array, isInt32Array, requireInteger } from '../validate';
import { AtomicFile } from './atomicFile';
import { NPY_MAGIC, npyHeader } from './embeddings';

/** Largest payload handed to one `read` call (the platform limit is just under 2 GiB). */
const READ_CHUNK = 1 << 30;

function requireLittleEndianHost(): void {
  if (os.endianness() !== 'LE') throw new Error('mmesid reads and writes .npy tables on little-endian hosts only');
}

function requireFile(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(name, 'a file path', value);
  return value;
}

// ---------------------------------------------------------------------------------------------------
// Header

/** The fields of an npy header this module uses. */
interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
}

/**
 * Parses numpy's header dict (a Python literal of strings, booleans and integer tuples).
 * @throws DataFormatError at the header's byte offset `at`
 */
function parseHeader(text: string, file: string, at: number): NpyHeader {
  const fail = (problem: string): never => {
    throw DataFormatError.atByte(file, at, `npy header ${problem}`);
  };
  const body = text.replace(/\s+$/, '');
  if (!body.startsWith('{') || !body.endsWith('}')) fail('is not a Python dict literal');
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(body);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)\b/.exec(body);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(body);
  if (!descr) fail('has no "descr" string');
  if (!fortran) fail('has no "fortran_order" boolean');
  if (!shape) fail('has no "shape" tuple');
  const dims = shape![1]!
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      if (!/^[0-9]+L?$/.test(part)) fail('shape must be a tuple of non-negative integers');
      return Number(part.replace('L', ''));
    });
  return { descr: descr![1]!, fortranOrder: fortran![1] === 'True', shape: dims };
}

// ---------------------------------------------------------------------------------------------------
// float16 → float32

let halfTable: Uint32Array | undefined;

/** f32 bit patterns of all 65,536 f16 values (exact, subnormals, infinities and NaNs included). */
function halfToFloatBits(): Uint32Array {
  if (halfTable) return halfTable;
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h += 1) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >> 10) & 0x1f;
    let mantissa = h & 0x3ff;
    let bits: number;
    if (exponent === 0x1f) bits = sign | 0x7f800000 | (mantissa << 13);
    else if (exponent !== 0) bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    else if (mantissa === 0) bits = sign;
    else {
      let e = 113;
      while ((mantissa & 0x400) === 0) {
        mantissa <<= 1;
        e -= 1;
      }
      bits = sign | (e << 23) | ((mantissa & 0x3ff) << 13);
    }
    table[h] = bits >>> 0;
  }
  halfTable = table;
  return table;
}

// ---------------------------------------------------------------------------------------------------
// Reader

/** One chunk of rows from {@link NpyRowReader.chunks}. */
export interface NpyRowChunk {
  /** Index of the chunk's first row in the file. */
  start: number;
  /** Rows in this chunk. */
  rows: number;
  /** float32 [rows, dim], row-major (a fresh buffer per chunk). */
  data: Float32Array;
}

/**
 * A 2-D float32/float16 `.npy` table opened for reading by rows. Memory: only the rows asked for (one
 * float32 buffer of `rows · dim` values per {@link read}); float16 payloads are read into the upper
 * half of that buffer and widened in place. Call {@link close} when done (also on errors).
 *
 * @example
 *   const reader = await NpyRowReader.open('x.npy');
 *   try { for await (const { start, rows, data } of reader.chunks(4096)) { ... } } finally { await reader.close(); }
 */
export class NpyRowReader {
  private closed = false;

  private constructor(
    /** The file as given. */
    readonly file: string,
    private readonly handle: fs.promises.FileHandle,
    /** Rows of the table. */
    readonly rows: number,
    /** Columns of the table. */
    readonly dim: number,
    /** The stored dtype (rows are always returned as float32). */
    readonly dtype: 'f32' | 'f16',
    /** Byte offset of the payload. */
    readonly dataStart: number,
  ) {}

  /**
   * Opens `file` and validates its header and length (nothing of the payload is read).
   * @throws DataFormatError (file, byte offset, problem) for a malformed or unsupported file; the file
   *   system's error (e.g. ENOENT) when it cannot be opened; InvalidArgumentError on a bad argument.
   */
  static async open(file: string): Promise<NpyRowReader> {
    requireFile(file, 'file');
    requireLittleEndianHost();
    const handle = await fs.promises.open(file, 'r');
    try {
      const { size } = await handle.stat();
      const preamble = Buffer.alloc(Math.min(size, 12));
      await readFully(handle, preamble, 0, file);
      if (preamble.length < 10 || !preamble.subarray(0, 6).equals(NPY_MAGIC)) {
        throw DataFormatError.atByte(file, 0, 'not an .npy file (bad magic; expected "\\x93NUMPY")');
      }
      const major = preamble[6]!, minor = preamble[7]!;
      if ((major !== 1 && major !== 2 && major !== 3) || minor !== 0) {
        throw DataFormatError.atByte(file, 6, `unsupported npy format version ${major}.${minor} (1.0, 2.0 and 3.0 are read)`);
      }
      if (major > 1 && preamble.length < 12) throw DataFormatError.atByte(file, size, 'file ends inside the npy preamble');
      const headerLength = major === 1 ? preamble.readUInt16LE(8) : preamble.readUInt32LE(8);
      const headerStart = major === 1 ? 10 : 12;
      if (headerStart + headerLength > size) {
        throw DataFormatError.atByte(file, size, `file ends inside the npy header (needs ${headerStart + headerLength} bytes, has ${size})`);
      }
      const headerBytes = Buffer.alloc(headerLength);
      await readFully(handle, headerBytes, headerStart, file);
      const header = parseHeader(headerBytes.toString(major === 3 ? 'utf8' : 'latin1'), file, headerStart);
      const dtype = header.descr === '<f4' ? 'f32' : header.descr === '<f2' ? 'f16' : undefined;
      if (dtype === undefined) {
        throw DataFormatError.atByte(file, headerStart, `unsupported dtype ${JSON.stringify(header.descr)} (little-endian float32 "<f4" or float16 "<f2" are read)`);
      }
      if (header.fortranOrder) throw DataFormatError.atByte(file, headerStart, 'unsupported order: fortran_order is True (C order is read)');
      if (header.shape.length !== 2) {
        throw DataFormatError.atByte(file, headerStart, `unsupported rank ${header.shape.length}: shape (${header.shape.join(', ')}) is not 2-D`);
      }
      const [rows, dim] = header.shape as [number, number];
      const dataStart = headerStart + headerLength;
      const payload = rows * dim * (dtype === 'f32' ? 4 : 2);
      if (!Number.isSafeInteger(payload)) throw DataFormatError.atByte(file, headerStart, `shape [${rows}, ${dim}] is too large`);
      if (dataStart + payload > size) {
        throw DataFormatError.atByte(file, size, `truncated payload: shape [${rows}, ${dim}] ${dtype} needs ${payload} bytes from byte ${dataStart} (to byte ${dataStart + payload}) but the file has ${size} bytes`);
      }
      if (dataStart + payload < size) {
        throw DataFormatError.atByte(file, dataStart + payload, `${size - dataStart - payload} unexpected bytes after the payload (shape [${rows}, ${dim}] ${dtype} ends at byte ${dataStart + payload})`);
      }
      return new NpyRowReader(file, handle, rows, dim, dtype, dataStart);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * Reads rows [start, start + count) as float32 `[count, dim]`.
   * @throws InvalidArgumentError when the range is outside the table or the reader is closed;
   *   DataFormatError when the file shrank under us.
   */
  async read(start: number, count: number): Promise<Float32Array> {
    requireInteger(count, 'count', 0);
    const out = new Float32Array(count * this.dim);
    await this.readInto(start, count, out);
    return out;
  }

  /**
   * Reads rows [start, start + count) into `out` (its first count · dim values): lets a caller stream
   * a file through a fixed set of buffers, allocating nothing per chunk.
   * @throws as {@link read}; InvalidArgumentError when `out` is not a Float32Array of at least count · dim values.
   */
  async readInto(start: number, count: number, out: Float32Array): Promise<void> {
    if (this.closed) throw new InvalidArgumentError('reader', 'an open NpyRowReader', 'a closed reader');
    requireInteger(start, 'start', 0, this.rows);
    requireInteger(count, 'count', 0, this.rows - start);
    const elements = count * this.dim;
    if (!isFloat32Array(out) || out.length < elements) throw new InvalidArgumentError('out', `a Float32Array of at least ${elements} values`, out);
    const bytes = new Uint8Array(out.buffer, out.byteOffset, elements * 4);
    const item = this.dtype === 'f32' ? 4 : 2;
    const position = this.dataStart + start * this.dim * item;
    if (this.dtype === 'f32') {
      await readFully(this.handle, bytes, position, this.file);
    } else {
      // Upper half of the output, widened front to back: output i ([4i, 4i+4)) never reaches input j > i (2n + 2j).
      await readFully(this.handle, bytes.subarray(2 * elements), position, this.file);
      const words = new Uint32Array(out.buffer, out.byteOffset, elements);
      const halves = new Uint16Array(out.buffer, out.byteOffset + 2 * elements, elements);
      const table = halfToFloatBits();
      for (let i = 0; i < elements; i += 1) words[i] = table[halves[i]!]!;
    }
  }

  /**
   * Iterates rows [from, to) in chunks of `rowsPerChunk` (the last one may be shorter). The next chunk
   * is read while the caller works on the current one, so at most two chunks are held at a time.
   * @param rowsPerChunk rows per chunk, >= 1
   * @param range        rows to read, default the whole table
   */
  async *chunks(rowsPerChunk: number, range: { from?: number; to?: number } = {}): AsyncGenerator<NpyRowChunk> {
    requireInteger(rowsPerChunk, 'rowsPerChunk', 1);
    const from = range.from === undefined ? 0 : requireInteger(range.from, 'range.from', 0, this.rows);
    const to = range.to === undefined ? this.rows : requireInteger(range.to, 'range.to', from, this.rows);
    let next: Promise<Float32Array> | undefined;
    const fetch = (start: number) => this.read(start, Math.min(rowsPerChunk, to - start));
    if (from < to) next = fetch(from);
    try {
      for (let start = from; start < to; start += rowsPerChunk) {
        const data = await next!;
        const following = start + rowsPerChunk;
        next = following < to ? fetch(following) : undefined;
        yield { start, rows: data.length / this.dim, data };
      }
    } finally {
      // A consumer that stops early leaves at most one read in flight: settle it before close().
      if (next) await next.catch(() => undefined);
    }
  }

  /** Closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

async function readFully(handle: fs.promises.FileHandle, target: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await handle.read(target, done, Math.min(READ_CHUNK, target.length - done), position + done);
    if (bytesRead === 0) throw DataFormatError.atByte(file, position + done, `file ended ${target.length - done} bytes early`);
    done += bytesRead;
  }
}

// ---------------------------------------------------------------------------------------------------
// Writer

/** Element type of an {@link NpyWriter}: int32 (`<i4`, e.g. semantic IDs) or float32 (`<f4`). */
export type NpyWriterDtype = 'int32' | 'float32';

/** Options of {@link NpyWriter.create}. */
export interface NpyWriterOptions {
  /** `int32` (`<i4`) or `float32` (`<f4`). */
  dtype: NpyWriterDtype;
  /** Rows of the finished table, fixed up front (the header is written first), >= 0. */
  rows: number;
  /** Columns per row, >= 1. */
  dim: number;
}

/**
 * Writes a 2-D `.npy` table (v1.0 header, or v2.0 when needed; C order; `<i4` or `<f4`) row chunk by
 * row chunk, atomically: bytes go to a temporary file next to the target (`.<name>.<pid>.<random>.tmp`)
 * and only {@link finish} renames it over the target, after checking that exactly `rows` rows were
 * written and flushing to disk. {@link discard} (or a crash) leaves the target as it was — absent or the
 * previous version — so an interrupted write never leaves a truncated file looking complete. Memory:
 * nothing beyond the caller's chunk (written in place, not copied).
 *
 * @example
 *   const out = await NpyWriter.create('sids.collab.npy', { dtype: 'int32', rows: n, dim: L });
 *   try {
 *     for (const chunk of chunks) await out.write(chunk); // Int32Array of whole rows, in order
 *     await out.finish();
 *   } catch (error) {
 *     await out.discard();
 *     throw error;
 *   }
 */
export class NpyWriter {
  private written = 0;
  private state: 'open' | 'finished' | 'discarded' = 'open';

  private constructor(
    /** The target file. */
    readonly file: string,
    readonly dtype: NpyWriterDtype,
    /** Rows the finished table will have. */
    readonly rows: number,
    /** Columns per row. */
    readonly dim: number,
    private readonly out: AtomicFile,
  ) {}

  /**
   * Creates the temporary file and writes the header.
   * @throws InvalidArgumentError on bad options; the file system's error (e.g. a missing folder).
   */
  static async create(file: string, options: NpyWriterOptions): Promise<NpyWriter> {
    requireFile(file, 'file');
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options', 'an options object', options);
    const { dtype } = options;
    if (dtype !== 'int32' && dtype !== 'float32') throw new InvalidArgumentError('options.dtype', '"int32" or "float32"', dtype);
    const rows = requireInteger(options.rows, 'options.rows', 0);
    const dim = requireInteger(options.dim, 'options.dim', 1);
    if (!Number.isSafeInteger(rows * dim * 4)) throw new InvalidArgumentError('options.rows', 'a table smaller than 2^53 bytes', rows);
    requireLittleEndianHost();
    const out = new AtomicFile(file);
    await out.open();
    try {
      await out.writeBytes(npyHeader(dtype === 'int32' ? '<i4' : '<f4', rows, dim));
    } catch (error) {
      await out.discard();
      throw error;
    }
    return new NpyWriter(file, dtype, rows, dim, out);
  }

  /** Rows written so far. */
  get rowsWritten(): number {
    return this.written;
  }

  /**
   * Appends whole rows: an Int32Array (dtype int32) or Float32Array (float32) whose length is a
   * multiple of `dim`. The array is written in place; do not modify it until the promise settles.
   * @throws InvalidArgumentError on a wrong type, a partial row, more rows than declared, or a writer
   *   that was finished or discarded; the file system's error when writing fails.
   */
  async write(chunk: Int32Array | Float32Array): Promise<void> {
    if (this.state !== 'open') throw new InvalidArgumentError('writer', 'an open NpyWriter', `a ${this.state} writer`);
    const typed = this.dtype === 'int32' ? isInt32Array(chunk) : isFloat32Array(chunk);
    if (!typed) throw new InvalidArgumentError('chunk', this.dtype === 'int32' ? 'an Int32Array' : 'a Float32Array', chunk);
    if (chunk.length % this.dim !== 0) throw new InvalidArgumentError('chunk', `whole rows (a length that is a multiple of dim ${this.dim})`, chunk);
    const rows = chunk.length / this.dim;
    if (this.written + rows > this.rows) {
      throw new InvalidArgumentError('chunk', `at most ${this.rows - this.written} more rows (the table has ${this.rows})`, chunk, `${rows} rows`);
    }
    await this.out.writeBytes(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.written += rows;
  }

  /**
   * Checks that every declared row was written, flushes, syncs and renames the file into place.
   * @returns the sha256 (hex) of the whole file
   * @throws Error when fewer rows than declared were written (the temporary file is then removed);
   *   the file system's error.
   */
  async finish(): Promise<string> {
    if (this.state !== 'open') throw new InvalidArgumentError('writer', 'an open NpyWriter', `a ${this.state} writer`);
    if (this.written !== this.rows) {
      await this.discard();
      throw new Error(`${this.file}: only ${this.written} of ${this.rows} rows were written; the file was not created`);
    }
    try {
      const sha256 = await this.out.finish();
      await this.out.commit();
      this.state = 'finished';
      return sha256;
    } catch (error) {
      await this.discard();
      throw error;
    }
  }

  /** Removes the temporary file; the target is left as it was. Never throws; idempotent. */
  async discard(): Promise<void> {
    if (this.state === 'finished') return;
    this.state = 'discarded';
    await this.out.discard();
  }
}
