/**
 * The native safetensors reader (native/torch/io/safetensors.cpp, parse_safetensors_header) through its
 * test export `torch()._safetensorsParse(bytes)`:
 * - conformance: valid files of every known dtype, scalars, zero-size tensors, metadata, headers padded
 *   with JSON whitespace, the test-support writer's files and a real Hugging Face checkpoint parse to
 *   the names / dtypes / shapes / offsets an independent model of the rules computes;
 * - targeted rejections: each malformed case is refused with ERR_MMESID_DATA_FORMAT, `file` "<bytes>",
 *   the byte offset and a message naming the problem;
 * - fuzz: ≥ 20,000 seeded mutants of small valid files. Every mutant is either accepted with a header
 *   that tiles the data section (each span = numel × dtype size) or refused with ERR_MMESID_DATA_FORMAT,
 *   never another error and never a crash (this process surviving is that check). The accept/refuse
 *   decision and the parsed header must equal an independent model of the documented rules (`model`
 *   below: its own strict JSON parser, BigInt arithmetic), and every accepted mutant must also load
 *   with the TypeScript reader `loadTensors` or be refused by it for a listed reason it has and the
 *   native one does not;
 * - a truncated model.safetensors makes LlamaModel.load reject with DataFormatError naming it, and the
 *   process loads a valid checkpoint afterwards.
 *
 * Divergences found:
 * - FIXED (was a native bug): nlohmann's lexer treats a NUL byte as the end of input, so a header
 *   `{...}\0<anything>` used to be accepted with everything after the NUL ignored. The native reader now
 *   refuses any raw NUL byte in the header before parsing (at byte 8 + the NUL's index in the header,
 *   "the header holds a NUL byte (not valid JSON)"), as the reference (serde_json::from_str) and
 *   loadTensors (JSON.parse) refuse it; the model does the same, and the fuzz checks the offset and message.
 * - loadTensors reads only F32/F16/BF16 (the native reader knows 15 dtypes) and only shape entries that
 *   are safe integers (< 2^53; the native one takes any u64 ≤ 2^63 − 1, e.g. [0, 2^60] or [2^62, 0] of a
 *   zero-size tensor), and it refuses `"__metadata__": null`, which the native reader (as the reference,
 *   Option<HashMap>) takes as no metadata; these refusals are the allowed divergences.
 * - The shape rule is the reference's: the element count is folded left to right with checked u64
 *   multiplication, then × dtype size must not overflow u64 (so F32 [2^62, 0] is a zero-size tensor, and
 *   [2^40, 2^40, 0] overflows before the 0). The native reader adds two limits the reference (usize) does
 *   not have, for its int64 shapes: each dim ≤ 2^63 − 1 and the count ≤ 2^63 − 1. Only the first is
 *   observable: a dim above 2^63 − 1 in a zero-size tensor (U8 [2^63, 0]) is refused here, accepted by the
 *   reference; a count above 2^63 − 1 that does not overflow would need a data section of ≥ 2^63 bytes.
 * - Against the reference (not bugs of the documented rules, noted for the record): the native depth-3
 *   limit refuses a deeper extra field (`"x":[[1]]`), which the reference ignores; loadTensors' header
 *   limit is 100 MiB (104,857,600), the reference's and the native one's 100,000,000 bytes.
 * - The offset of a hole is where it starts, which lies past the end of a file whose previous tensor
 *   already runs past it (checkRefusal allows exactly that case).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadTensors } from '../../lib/data/embeddings';
import { DataFormatError } from '../../lib/errors';
import { LlamaModel } from '../../lib/llm/model';
import { hasTorch, torch } from '../../lib/native';
import type { NativeSafetensorsHeader } from '../../typings/native';
import { Rng } from '../support/random';
import { writeSafetensors, writeTinyLlama } from '../support/tinyLlama';

const stories = path.resolve(__dirname, '..', '..', '..', 'shared', 'models', 'stories260K', 'model.safetensors');

// ---------------------------------------------------------------------------------------------------
// Building files

/** Bytes of every dtype the reader knows (the reference implementation's list). */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, U32: 4, U64: 8,
};
const DTYPES = Object.keys(DTYPE_BYTES);
/** The dtypes the TypeScript reader (lib/data/embeddings.ts) reads. */
const TS_DTYPES = new Set(['F32', 'F16', 'BF16']);

/** A safetensors file from a header text (UTF-8), padded with `pad` (raw bytes), and a data section. */
function fileOf(headerText: string | Uint8Array, data: Uint8Array | number = 0, pad = ''): Uint8Array {
  const text = typeof headerText === 'string' ? Buffer.from(headerText, 'utf8') : Buffer.from(headerText);
  const header = Buffer.concat([text, Buffer.from(pad, 'latin1')]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  const payload = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(Buffer.concat([prefix, header, payload]));
}

/** A tensor of a header built as text: shape items and offsets are raw JSON literals, so they can be anything. */
interface SpecTensor {
  name: string;
  dtype: string;
  shape: string[];
  offsets: string[];
  /** Raw text appended inside the entry, e.g. `,"x":1`. */
  extra: string;
  /** Fields left out. */
  omit: ('dtype' | 'shape' | 'data_offsets')[];
}

interface Spec {
  tensors: SpecTensor[];
  /** Raw JSON text of `__metadata__`, or undefined for none. */
  metadata: string | undefined;
  dataLength: number;
  /** Raw bytes after the JSON text, inside the declared header. */
  pad: string;
}

function headerText(spec: Spec): string {
  const parts: string[] = [];
  if (spec.metadata !== undefined) parts.push(`"__metadata__":${spec.metadata}`);
  for (const t of spec.tensors) {
    const fields: string[] = [];
    if (!t.omit.includes('dtype')) fields.push(`"dtype":${JSON.stringify(t.dtype)}`);
    if (!t.omit.includes('shape')) fields.push(`"shape":[${t.shape.join(',')}]`);
    if (!t.omit.includes('data_offsets')) fields.push(`"data_offsets":[${t.offsets.join(',')}]`);
    parts.push(`${JSON.stringify(t.name)}:{${fields.join(',')}${fields.length === 0 ? t.extra.replace(/^,/, '') : t.extra}}`);
  }
  return `{${parts.join(',')}}`;
}

function specFile(spec: Spec, rng?: Rng): Uint8Array {
  const data = new Uint8Array(spec.dataLength);
  if (rng) for (let i = 0; i < data.length; i += 1) data[i] = rng.int(256);
  return fileOf(headerText(spec), data, spec.pad);
}

/** A valid spec: tensors laid out back to back in the order given (header order shuffled by `order`). */
function validSpec(tensors: { name: string; dtype: string; shape: number[] }[], metadata: Record<string, string> | undefined, order?: number[]): Spec {
  let offset = 0;
  const laid = tensors.map((t) => {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]!;
    const entry: SpecTensor = { name: t.name, dtype: t.dtype, shape: t.shape.map(String), offsets: [String(offset), String(offset + bytes)], extra: '', omit: [] };
    offset += bytes;
    return entry;
  });
  const headerOrder = order ? order.map((i) => laid[i]!) : laid;
  const text = headerText({ tensors: headerOrder, metadata: metadata && JSON.stringify(metadata), dataLength: offset, pad: '' });
  const pad = ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8); // the reference writer's alignment
  return { tensors: headerOrder, metadata: metadata && JSON.stringify(metadata), dataLength: offset, pad };
}

const cloneSpec = (s: Spec): Spec => ({ ...s, tensors: s.tensors.map((t) => ({ ...t, shape: [...t.shape], offsets: [...t.offsets], omit: [...t.omit] })) });

// ---------------------------------------------------------------------------------------------------
// An independent model of the documented rules (native/torch/io/safetensors.h), used as the oracle

type Json = null | boolean | string | JsonNumber | Json[] | Map<string, Json>;

/** A number as written (its literal decides whether it is an integer, as for nlohmann). */
class JsonNumber {
  constructor(readonly text: string) {}
}

/** A refusal of the model; `at` is the offset and problem the reader must report, where the model pins them down. */
class Refusal extends Error {
  constructor(
    message: string,
    readonly at?: { offset: number; problem: string },
  ) {
    super(message);
  }
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MAX = (1n << 63n) - 1n;
const MAX_HEADER = 100_000_000n;

/**
 * Strict RFC 8259 parser of `text` (already valid UTF-8), objects as Maps (a repeated key keeps its
 * last value, as nlohmann and JSON.parse do), nesting limited to `maxDepth` (the reader's depth-3 rule);
 * numbers that overflow a double are refused (nlohmann: "number overflow").
 */
function parseJson(text: string, maxDepth: number): Json {
  let i = 0;
  const fail = (why: string): never => {
    throw new Refusal(`${why} at character ${i}`);
  };
  const space = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i += 1;
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const hex4 = (): number => {
    const h = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail('bad \\u escape');
    i += 4;
    return parseInt(h, 16);
  };
  const string = (): string => {
    i += 1; // the opening quote
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i += 1;
        return out;
      }
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) {
        out += text[i];
        i += 1;
        continue;
      }
      const e = text[i + 1];
      i += 2;
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) {
        out += simple[e];
      } else if (e === 'u') {
        const code = hex4();
        if (code >= 0xdc00 && code <= 0xdfff) fail('lone low surrogate');
        if (code >= 0xd800 && code <= 0xdbff) {
          if (text[i] !== '\\' || text[i + 1] !== 'u') fail('lone high surrogate');
          i += 2;
          const low = hex4();
          if (low < 0xdc00 || low > 0xdfff) fail('high surrogate without a low one');
          out += String.fromCharCode(code, low);
        } else {
          out += String.fromCharCode(code);
        }
      } else {
        fail('bad escape');
      }
    }
  };
  const value = (depth: number): Json => {
    space();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth + 1 > maxDepth) fail('too deep');
      i += 1;
      space();
      if (c === '{') {
        const out = new Map<string, Json>();
        if (text[i] === '}') {
          i += 1;
          return out;
        }
        for (;;) {
          space();
          if (text[i] !== '"') fail('expected a key');
          const key = string();
          space();
          if (text[i] !== ':') fail('expected ":"');
          i += 1;
          const v = value(depth + 1);
          out.delete(key);
          out.set(key, v);
          space();
          if (text[i] === ',') i += 1;
          else if (text[i] === '}') return (i += 1), out;
          else fail('expected "," or "}"');
        }
      }
      const out: Json[] = [];
      if (text[i] === ']') {
        i += 1;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        space();
        if (text[i] === ',') i += 1;
        else if (text[i] === ']') return (i += 1), out;
        else fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('unexpected character');
    i += m[0].length;
    if (!Number.isFinite(Number(m[0]))) fail('number overflow');
    return new JsonNumber(m[0]);
  };
  const out = value(0);
  space();
  if (i !== text.length) fail('trailing characters');
  return out;
}

/** The value of a non-negative integer literal that fits u64 (nlohmann's is_number_unsigned), else undefined. */
function unsigned(v: Json | undefined): bigint | undefined {
  if (!(v instanceof JsonNumber) || !/^(0|[1-9][0-9]*)$/.test(v.text)) return undefined;
  const n = BigInt(v.text);
  return n <= U64_MAX ? n : undefined;
}

type ModelResult = { ok: true; header: NativeSafetensorsHeader } | { ok: false; reason: string; at?: { offset: number; problem: string } };

/** What the reader must answer for `bytes`, computed independently of it. */
function model(bytes: Uint8Array): ModelResult {
  try {
    return { ok: true, header: modelParse(bytes) };
  } catch (e) {
    if (e instanceof Refusal) return { ok: false, reason: e.message, at: e.at };
    throw e;
  }
}

function modelParse(bytes: Uint8Array): NativeSafetensorsHeader {
  const refuse = (why: string): never => {
    throw new Refusal(why);
  };
  if (bytes.length < 8) refuse('shorter than 8 bytes');
  const n = Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0);
  if (n > MAX_HEADER) refuse('header length over the limit');
  if (n > BigInt(bytes.length - 8)) refuse('header length past the end');
  const headerBytes = bytes.subarray(8, 8 + Number(n));
  if (headerBytes.length < 2 || headerBytes[0] !== 0x7b) refuse('header does not start with "{"');
  // A raw NUL byte is never valid JSON: refused before parsing, at its own offset.
  const nul = headerBytes.indexOf(0);
  if (nul >= 0) throw new Refusal('NUL byte in the header', { offset: 8 + nul, problem: 'the header holds a NUL byte (not valid JSON)' });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    return refuse('invalid UTF-8');
  }
  const root = parseJson(text, 3);
  if (!(root instanceof Map)) return refuse('not an object');
  const metadata: Record<string, string> = {};
  const tensors: NativeSafetensorsHeader['tensors'] = [];
  const spans: { begin: bigint; end: bigint; name: string }[] = [];
  for (const [key, entry] of root) {
    if (key === '__metadata__') {
      if (entry === null) continue; // no metadata (the reference's Option<HashMap>)
      if (!(entry instanceof Map)) refuse('__metadata__ is not an object');
      for (const [k, v] of entry as Map<string, Json>) {
        if (typeof v !== 'string') refuse(`__metadata__ value ${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!(entry instanceof Map)) return refuse(`${key}: not an object`);
    const dtype = entry.get('dtype');
    const shape = entry.get('shape');
    const offsets = entry.get('data_offsets');
    if (typeof dtype !== 'string') return refuse(`${key}: no string dtype`);
    if (!Array.isArray(shape)) return refuse(`${key}: no array shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2) return refuse(`${key}: no data_offsets pair`);
    const size = DTYPE_BYTES[dtype];
    if (size === undefined) return refuse(`${key}: unknown dtype`);
    // The reference's overflow rule: the element count folded left to right with checked u64
    // multiplication, then × dtype size in u64; plus each dim and the count ≤ 2^63 − 1 (int64 shapes).
    let count = 1n;
    const dims: bigint[] = [];
    for (const d of shape) {
      const dim = unsigned(d);
      if (dim === undefined) return refuse(`${key}: shape entry not a non-negative integer`);
      if (dim > I64_MAX) refuse(`${key}: dim over 2^63 - 1`);
      count *= dim;
      if (count > U64_MAX) refuse(`${key}: element count overflows`);
      dims.push(dim);
    }
    if (count > I64_MAX || count * BigInt(size) > U64_MAX) refuse(`${key}: byte size overflows`);
    const bytesNeeded = count * BigInt(size);
    const begin = unsigned(offsets[0]);
    const end = unsigned(offsets[1]);
    if (begin === undefined || end === undefined) return refuse(`${key}: data_offsets not non-negative integers`);
    if (begin > end) refuse(`${key}: begin > end`);
    if (end - begin !== bytesNeeded) refuse(`${key}: span is not dtype × shape`);
    spans.push({ begin, end, name: key });
    tensors.push({ name: key, dtype, shape: dims.map(Number), begin: Number(begin), end: Number(end) });
  }
  spans.sort((a, b) => (a.begin !== b.begin ? (a.begin < b.begin ? -1 : 1) : a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
  let cursor = 0n;
  for (const s of spans) {
    if (s.begin !== cursor) refuse(`hole or overlap at ${s.name}`);
    cursor = s.end;
  }
  if (cursor !== BigInt(bytes.length) - 8n - n) refuse('tensors do not cover the data section');
  return { tensors: canonical(tensors), metadata, dataStart: 8 + Number(n) };
}

/** Tensors in offset order; ties (zero-size tensors at one offset) by name, as std::sort leaves them unspecified. */
function canonical(tensors: NativeSafetensorsHeader['tensors']): NativeSafetensorsHeader['tensors'] {
  return [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function sameHeader(actual: NativeSafetensorsHeader, expected: NativeSafetensorsHeader, what: string): void {
  assert.deepEqual(
    { tensors: canonical(actual.tensors.map((t) => ({ ...t, shape: [...t.shape] }))), metadata: { ...actual.metadata }, dataStart: actual.dataStart },
    expected,
    what,
  );
}

/** The invariants every accepted header satisfies, checked on the reader's answer alone. */
function checkInvariants(h: NativeSafetensorsHeader, bytes: Uint8Array, what: string): void {
  const n = Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
  assert.equal(h.dataStart, 8 + n, `${what}: dataStart`);
  const dataSize = bytes.length - h.dataStart;
  let cursor = 0;
  const names = new Set<string>();
  for (const t of h.tensors) {
    assert.ok(!names.has(t.name), `${what}: tensor ${t.name} listed twice`);
    names.add(t.name);
    assert.equal(t.begin, cursor, `${what}: ${t.name} starts at ${t.begin}, previous ended at ${cursor}`);
    const numel = t.shape.reduce((a, b) => a * BigInt(b), 1n);
    assert.ok(DTYPE_BYTES[t.dtype] !== undefined, `${what}: dtype ${t.dtype}`);
    assert.equal(BigInt(t.end - t.begin), numel * BigInt(DTYPE_BYTES[t.dtype]!), `${what}: ${t.name} span`);
    cursor = t.end;
  }
  assert.equal(cursor, dataSize, `${what}: the tensors cover ${cursor} of ${dataSize} data bytes`);
}

type NativeOutcome = { ok: true; header: NativeSafetensorsHeader } | { ok: false; error: Error & { code?: unknown; file?: unknown; offset?: unknown } };

function parseNative(bytes: Uint8Array): NativeOutcome {
  try {
    return { ok: true, header: torch()._safetensorsParse(bytes) };
  } catch (error) {
    assert.ok(error instanceof Error, `threw a non-Error: ${String(error)}`);
    return { ok: false, error };
  }
}

/** A refusal is a DataFormatError-shaped Error: the code, file "<bytes>", an offset inside the file. */
function checkRefusal(error: Error & { code?: unknown; file?: unknown; offset?: unknown }, length: number, what: string): void {
  assert.equal(error.code, 'ERR_MMESID_DATA_FORMAT', `${what}: ${error.message}`);
  assert.equal(error.file, '<bytes>', what);
  // Inside the file, except a hole's start, which lies past the end when the tensor before it already
  // runs past it (a truncated file with a hole: see "a hole between tensors").
  assert.ok(
    typeof error.offset === 'number' && Number.isInteger(error.offset) && error.offset >= 0 && (error.offset <= length || /holes and overlaps are not allowed/.test(error.message)),
    `${what}: offset ${String(error.offset)} (file of ${length} bytes): ${error.message}`,
  );
  assert.ok(error.message.startsWith(`<bytes>: byte ${error.offset}: `), `${what}: ${error.message}`);
}

/** assert.throws matcher for a refusal of `_safetensorsParse` at `offset` whose message matches `problem`. */
function refused(problem: RegExp, offset: number): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof Error, String(e));
    const located = e as Error & { code?: unknown; file?: unknown; offset?: unknown };
    assert.equal(located.code, 'ERR_MMESID_DATA_FORMAT', e.message);
    assert.equal(located.file, '<bytes>');
    assert.equal(located.offset, offset, e.message);
    assert.match(e.message, problem);
    assert.ok(e.message.startsWith(`<bytes>: byte ${offset}: `), e.message);
    return true;
  };
}


// ---------------------------------------------------------------------------------------------------
// Mutations

/** Bytes that matter to a JSON lexer, plus NUL and non-UTF-8 bytes. */
const SPECIAL = [...'{}[]":,-.019e \\unt'].map((c) => c.charCodeAt(0)).concat([0x00, 0x09, 0x0a, 0xff, 0xc3, 0x80, 0xe2]);
/** JSON fragments spliced into headers. */
const FRAGMENTS = [
  '-1', '1.5', '2.0', '1e0', '1e400', '-0', '0', '7', '18446744073709551615', '18446744073709551616', '9223372036854775808', '4611686018427387904',
  '9007199254740993', '[', ']', '{', '}', '[]', '{}', '[[[[', ']]', '"F64"', '"U8"', '"BF16"', '"XX"', '"__metadata__"', '"dtype"', '"shape"',
  '"data_offsets"', 'null', 'true', '"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\"', '[0,0]', '[0,4]', ',', ':', '""', ' ', '\n', 'é', '"é"', '\\', '"a":1,',
];
/** Shape entries and offsets for structured mutations (raw literals). */
const NUMBERS = ['0', '1', '2', '3', '4', '7', '8', '-1', '1.5', '2.0', '1e0', '"2"', 'null', '9007199254740993', '1152921504606846976', '2305843009213693952', '4611686018427387904', '9223372036854775807', '9223372036854775808', '18446744073709551615', '18446744073709551616'];
const BAD_DTYPES = ['F31', 'f32', '', 'F8_E8M0', 'C64', 'F32 '];
const EXTRAS = [',"x":1', ',"x":[1]', ',"x":[[1]]', ',"x":{}', ',"x":{"y":1}', ',"x":"s"', ',"dtype":"U8"', ',"shape":[]'];
const META_VALUES = ['"x"', '1', 'null', '[]', '{}', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\ude00"', '"\\ud83dx"'];
const PADS = ['', ' ', '  ', '    ', '       ', '\n', '\t\r\n', '\0', '\0xyz', '  \0 ]]]]'];

const pick = <T>(rng: Rng, items: readonly T[]): T => items[rng.int(items.length)]!;

function declaredLength(b: Uint8Array): bigint {
  return b.length < 8 ? 0n : Buffer.from(b.buffer, b.byteOffset, 8).readBigUInt64LE(0);
}

function withLength(b: Uint8Array, n: bigint): Uint8Array {
  if (b.length < 8) return b;
  const out = b.slice();
  Buffer.from(out.buffer, out.byteOffset, 8).writeBigUInt64LE(((n % (1n << 64n)) + (1n << 64n)) % (1n << 64n), 0);
  return out;
}

/** [start, end) of the declared header, clamped into the file. */
function headerSpan(b: Uint8Array): [number, number] {
  const n = declaredLength(b);
  return [Math.min(8, b.length), Math.min(b.length, 8 + Number(n > BigInt(b.length) ? BigInt(b.length) : n))];
}

/** One byte-level mutation; returns the mutant and the operator's name. */
function mutateBytes(b: Uint8Array, rng: Rng): [Uint8Array, string] {
  const [hs, he] = headerSpan(b);
  const inHeader = (): number => hs + rng.int(Math.max(1, he - hs));
  const byte = (): number => (rng.next() < 0.6 ? pick(rng, SPECIAL) : rng.int(256));
  const resize = (out: Uint8Array, delta: number): Uint8Array => (rng.next() < 0.7 ? withLength(out, declaredLength(b) + BigInt(delta)) : out);
  const op = rng.int(8);
  switch (op) {
    case 0: {
      if (b.length < 8) return [b, 'noop'];
      const out = b.slice();
      const at = rng.int(8);
      out[at] = rng.next() < 0.5 ? out[at]! ^ (1 << rng.int(8)) : rng.int(256);
      return [out, 'flip-length'];
    }
    case 1: {
      if (he <= hs) return [b, 'noop'];
      const out = b.slice();
      const at = inHeader();
      out[at] = rng.next() < 0.3 ? out[at]! ^ (1 << rng.int(8)) : byte();
      return [out, 'flip-header'];
    }
    case 2: {
      if (b.length <= he) return [b, 'noop'];
      const out = b.slice();
      out[he + rng.int(b.length - he)] = rng.int(256);
      return [out, 'flip-data'];
    }
    case 3:
      return [b.slice(0, rng.int(b.length)), 'truncate'];
    case 4: {
      const at = inHeader();
      const k = 1 + rng.int(8);
      const ins = Uint8Array.from({ length: k }, byte);
      return [resize(new Uint8Array(Buffer.concat([b.subarray(0, at), ins, b.subarray(at)])), k), 'insert'];
    }
    case 5: {
      const at = inHeader();
      const k = Math.min(1 + rng.int(8), Math.max(0, he - at));
      return [resize(new Uint8Array(Buffer.concat([b.subarray(0, at), b.subarray(at + k)])), -k), 'delete'];
    }
    case 6: {
      const at = inHeader();
      const k = Math.min(rng.int(7), Math.max(0, he - at));
      const frag = Buffer.from(pick(rng, FRAGMENTS), 'utf8');
      return [resize(new Uint8Array(Buffer.concat([b.subarray(0, at), frag, b.subarray(at + k)])), frag.length - k), 'splice'];
    }
    default: {
      const n = declaredLength(b);
      const specials = [0n, 1n, 2n, 99_999_999n, 100_000_000n, 100_000_001n, 1n << 32n, 1n << 63n, U64_MAX, BigInt(b.length - 8), BigInt(b.length - 7)];
      const next = rng.next() < 0.7 ? n + BigInt(rng.next() < 0.5 ? -(1 + rng.int(16)) : 1 + rng.int(16)) : pick(rng, specials);
      return [withLength(b, next), 'length'];
    }
  }
}

/** One structured mutation of a header spec (the file is re-encoded with a consistent length field). */
function mutateSpec(base: Spec, rng: Rng): [Spec, string] {
  const s = cloneSpec(base);
  const t = s.tensors.length > 0 ? s.tensors[rng.int(s.tensors.length)]! : undefined;
  const op = rng.int(15);
  if (!t && op < 12) return [s, 'noop'];
  switch (op) {
    case 0:
      // Replace a dim, or insert one (a huge dim before a 0 tests the overflow rule's order).
      if (t!.shape.length > 0 && rng.next() < 0.5) t!.shape[rng.int(t!.shape.length)] = pick(rng, NUMBERS);
      else t!.shape.splice(rng.int(t!.shape.length + 1), 0, pick(rng, NUMBERS));
      return [s, 'spec-dim'];
    case 1:
      t!.dtype = rng.next() < 0.8 ? pick(rng, DTYPES) : pick(rng, BAD_DTYPES);
      return [s, 'spec-dtype'];
    case 2: {
      const i = rng.int(2);
      const v = Number(t!.offsets[i]);
      t!.offsets[i] = rng.next() < 0.7 && Number.isInteger(v) ? String(v + (rng.next() < 0.5 ? -1 : 1) * (1 + rng.int(8))) : pick(rng, NUMBERS);
      return [s, 'spec-offset'];
    }
    case 3: {
      const u = s.tensors[rng.int(s.tensors.length)]!;
      [t!.offsets, u.offsets] = [u.offsets, t!.offsets];
      return [s, 'spec-swap-offsets'];
    }
    case 4:
      t!.shape.reverse();
      if (rng.next() < 0.5) t!.shape.splice(rng.int(t!.shape.length + 1), 0, '1');
      return [s, 'spec-reshape'];
    case 5: {
      const same = DTYPES.filter((d) => DTYPE_BYTES[d] === DTYPE_BYTES[t!.dtype]);
      if (same.length > 0) t!.dtype = pick(rng, same);
      return [s, 'spec-same-size-dtype'];
    }
    case 6:
      s.tensors.splice(s.tensors.indexOf(t!), 1);
      return [s, 'spec-drop-entry'];
    case 7: {
      // Drop a tensor and its bytes, shifting the later ones: still a valid file.
      const begin = Number(t!.offsets[0]);
      const size = Number(t!.offsets[1]) - begin;
      s.tensors.splice(s.tensors.indexOf(t!), 1);
      if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(size) || size < 0 || begin + size > s.dataLength) return [s, 'spec-drop-entry'];
      for (const u of s.tensors) {
        if (Number(u.offsets[0]) >= begin + size && size > 0) u.offsets = u.offsets.map((o) => String(Number(o) - size));
      }
      s.dataLength -= size;
      return [s, 'spec-drop-tensor'];
    }
    case 8:
      t!.name = pick(rng, s.tensors).name;
      return [s, 'spec-duplicate-name'];
    case 9:
      t!.extra += pick(rng, EXTRAS);
      return [s, 'spec-extra-field'];
    case 10:
      t!.omit.push(pick(rng, ['dtype', 'shape', 'data_offsets'] as const));
      return [s, 'spec-omit-field'];
    case 11:
      t!.offsets = rng.next() < 0.5 ? t!.offsets.slice(0, 1) : [...t!.offsets, t!.offsets[1]!];
      return [s, 'spec-offsets-arity'];
    case 12:
      s.metadata =
        rng.next() < 0.3
          ? pick(rng, ['null', '[]', '"s"', '{}', '{"a":"b","a":"c"}'])
          : `{${s.metadata && s.metadata !== '{}' ? `${s.metadata.slice(1, -1)},` : ''}"k${rng.int(3)}":${pick(rng, META_VALUES)}}`;
      return [s, 'spec-metadata'];
    case 13:
      s.dataLength = Math.max(0, s.dataLength + (rng.next() < 0.5 ? -1 : 1) * (1 + rng.int(8)));
      return [s, 'spec-data-length'];
    default:
      s.tensors.reverse();
      s.pad = pick(rng, PADS);
      return [s, 'spec-reorder-pad'];
  }
}

// ---------------------------------------------------------------------------------------------------

(hasTorch() ? describe : describe.skip)('safetensors header reader (native)', function () {
  this.timeout(300_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-safetensors-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const parse = (bytes: Uint8Array): NativeSafetensorsHeader => torch()._safetensorsParse(bytes);
  /** A one-tensor file: entry "t" (default F32 [2] at [0, 8)), `data` bytes, `before` raw header text ahead of it. */
  const one = (entry = '"dtype":"F32","shape":[2],"data_offsets":[0,8]', data: Uint8Array | number = 8, before = ''): Uint8Array => fileOf(`{${before}"t":{${entry}}}`, data);
  /** The model answers `bytes` as the native reader does: accepted with the same header, or refused (at the same offset and problem where the model pins them down). */
  const agrees = (bytes: Uint8Array, what: string): void => {
    const native = parseNative(bytes);
    const expected = model(bytes);
    if (native.ok) {
      assert.ok(expected.ok, `${what}: native accepted, the model refuses: ${expected.ok ? '' : expected.reason}`);
      sameHeader(native.header, expected.header, what);
    } else {
      assert.ok(!expected.ok, `${what}: native refused (${native.error.message}), the model accepts`);
      if (expected.at) assert.equal(native.error.message, `<bytes>: byte ${expected.at.offset}: ${expected.at.problem}`, what);
    }
  };

  describe('conformance', () => {
    it('every known dtype, a scalar, a zero-size tensor and metadata parse to the right entries, in offset order', () => {
      const tensors = [
        { name: 'f32', dtype: 'F32', shape: [2, 3] },
        { name: 'f16', dtype: 'F16', shape: [5] },
        { name: 'bf16', dtype: 'BF16', shape: [3, 1] },
        { name: 'i64', dtype: 'I64', shape: [2] },
        { name: 'scalar', dtype: 'I32', shape: [] },
        { name: 'u8', dtype: 'U8', shape: [7] },
        { name: 'bool', dtype: 'BOOL', shape: [3] },
        { name: 'empty', dtype: 'F32', shape: [0, 3] },
        { name: 'f64', dtype: 'F64', shape: [1, 1, 2] },
        { name: 'i16', dtype: 'I16', shape: [3] },
        { name: 'i8', dtype: 'I8', shape: [1] },
        { name: 'e4m3', dtype: 'F8_E4M3', shape: [4] },
        { name: 'e5m2', dtype: 'F8_E5M2', shape: [2] },
        { name: 'u16', dtype: 'U16', shape: [1] },
        { name: 'u32', dtype: 'U32', shape: [2] },
        { name: 'u64', dtype: 'U64', shape: [1] },
      ];
      // Header order differs from data order (the reader sorts by offset).
      const order = tensors.map((_, i) => (i * 7) % tensors.length);
      const spec = validSpec(tensors, { format: 'pt', note: 'héllo "quoted" ✓' }, order);
      const bytes = specFile(spec, new Rng(3));
      const h = parse(bytes);
      // Hand-computed expectations, independent of the model.
      const sizes = [24, 10, 6, 16, 4, 7, 3, 0, 16, 6, 1, 4, 2, 2, 8, 8];
      let offset = 0;
      const expected = tensors.map((t, i) => {
        const e = { name: t.name, dtype: t.dtype, shape: t.shape, begin: offset, end: offset + sizes[i]! };
        offset += sizes[i]!;
        return e;
      });
      const n = bytes.length - 8 - offset;
      assert.equal(n % 8, 0, 'the fixture is padded to 8 bytes');
      sameHeader(h, { tensors: canonical(expected), metadata: { format: 'pt', note: 'héllo "quoted" ✓' }, dataStart: 8 + n }, 'native');
      assert.deepEqual(h.tensors.find((t) => t.name === 'scalar')?.shape, []);
      assert.deepEqual(h.tensors.find((t) => t.name === 'empty'), { name: 'empty', dtype: 'F32', shape: [0, 3], begin: 70, end: 70 });
      // The independent model agrees, and so does a plain JSON.parse of the header.
      const m = model(bytes);
      assert.ok(m.ok, m.ok ? '' : m.reason);
      sameHeader(h, m.header, 'model');
      const parsed = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
      const viaJson = Object.entries(parsed)
        .filter(([k]) => k !== '__metadata__')
        .map(([name, v]) => ({ name, dtype: v.dtype, shape: v.shape, begin: v.data_offsets[0], end: v.data_offsets[1] }));
      assert.deepEqual(canonical(h.tensors), canonical(viaJson));
      checkInvariants(h, bytes, 'all dtypes');
    });

    it('every dtype has its element size: one byte more or less in the span is refused', () => {
      for (const [dtype, size] of Object.entries(DTYPE_BYTES)) {
        const ok = parse(one(`"dtype":"${dtype}","shape":[3],"data_offsets":[0,${3 * size}]`, 3 * size));
        assert.equal(ok.tensors[0]!.end, 3 * size, dtype);
        for (const span of [3 * size - 1, 3 * size + 1]) {
          assert.throws(() => parse(one(`"dtype":"${dtype}","shape":[3],"data_offsets":[0,${span}]`, span)), refused(new RegExp(`span ${span} bytes but dtype ${dtype} and shape \\[3\\] need ${3 * size}`), 8), `${dtype} span ${span}`);
        }
      }
    });

    it('headers padded with trailing JSON whitespace (the reference writer pads with spaces to 8 bytes) parse', () => {
      const json = '{"t":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}';
      for (const pad of ['', ' ', '       ', ' '.repeat(64), '\n', '\t \r\n ']) {
        const h = parse(fileOf(json, 8, pad));
        assert.equal(h.dataStart, 8 + json.length + pad.length, JSON.stringify(pad));
        assert.deepEqual(h.tensors, [{ name: 't', dtype: 'F16', shape: [2, 2], begin: 0, end: 8 }]);
      }
      // Whitespace inside the JSON too, and an empty header.
      assert.equal(parse(fileOf('{ "t" : { "dtype" : "U8" , "shape" : [ 3 ] , "data_offsets" : [ 0 , 3 ] } }', 3)).tensors.length, 1);
      assert.deepEqual(parse(fileOf('{}', 0, '      ')), { tensors: [], metadata: {}, dataStart: 16 });
      assert.throws(() => parse(fileOf('{}', 1)), refused(/cover 0 bytes of a 1-byte data section/, 10));
    });

    it('names with brackets and escapes parse (brackets inside strings do not count as nesting)', () => {
      const h = parse(fileOf('{"[[[{{{\\"\\\\":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"\\u00e9\\ud83d\\ude00":{"dtype":"U8","shape":[],"data_offsets":[1,2]}}', 2));
      assert.deepEqual(h.tensors.map((t) => t.name), ['[[[{{{"\\', 'é😀']);
    });

    it('the test-support writer (writeSafetensors) and the TypeScript reader agree with it', async () => {
      const file = path.join(dir, 'writer.safetensors');
      const tensors = [
        { name: 'a', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
        { name: 'b', shape: [], data: Float32Array.from([7]) },
        { name: 'c', shape: [0, 3], data: new Float32Array(0) },
        { name: 'd', shape: [4], data: Float32Array.from([-1, 0.5, 2, 8]) },
      ];
      for (const dtype of ['F32', 'F16', 'BF16'] as const) {
        const dataBytes = writeSafetensors(file, tensors, dtype, { format: 'pt', stage: 'test' });
        const bytes = new Uint8Array(fs.readFileSync(file));
        const h = parse(bytes);
        const size = DTYPE_BYTES[dtype]!;
        assert.deepEqual(h.tensors, [
          { name: 'a', dtype, shape: [2, 3], begin: 0, end: 6 * size },
          { name: 'b', dtype, shape: [], begin: 6 * size, end: 7 * size },
          { name: 'c', dtype, shape: [0, 3], begin: 7 * size, end: 7 * size },
          { name: 'd', dtype, shape: [4], begin: 7 * size, end: 11 * size },
        ], dtype);
        assert.equal(dataBytes, 11 * size);
        assert.equal((h.dataStart - 8) % 8, 0);
        assert.deepEqual(h.metadata, { format: 'pt', stage: 'test' });
        const ts = await loadTensors(file);
        assert.deepEqual(ts.tensors.map((t) => [t.name, t.shape]).sort(), h.tensors.map((t) => [t.name, t.shape]).sort());
        assert.deepEqual(ts.metadata, h.metadata);
      }
    });

    it('a real Hugging Face checkpoint (stories260K) parses to what the model computes', function () {
      if (!fs.existsSync(stories)) this.skip();
      const bytes = new Uint8Array(fs.readFileSync(stories));
      const h = parse(bytes);
      const m = model(bytes);
      assert.ok(m.ok, m.ok ? '' : m.reason);
      sameHeader(h, m.header, 'stories260K');
      checkInvariants(h, bytes, 'stories260K');
      assert.ok(h.tensors.some((t) => t.name === 'model.embed_tokens.weight' && t.dtype === 'F32' && t.shape.join() === '512,64'));
    });
  });

  describe('targeted rejections', () => {
    it('a file shorter than 8 bytes', () => {
      for (let length = 0; length < 8; length += 1) {
        assert.throws(() => parse(new Uint8Array(length)), refused(new RegExp(`8-byte header length, but the file has ${length} bytes`), 0), `${length} bytes`);
      }
    });

    it('a header length past the end of the file, or over 100,000,000', () => {
      const good = one();
      const n = good.length - 8 - 8;
      for (const declared of [n + 9, n + 1000, 99_999_999, 100_000_000]) {
        const bytes = good.slice();
        Buffer.from(bytes.buffer).writeBigUInt64LE(BigInt(declared), 0);
        assert.throws(() => parse(bytes), refused(new RegExp(`header length ${declared} runs past the end of the file \\(${bytes.length} bytes\\)`), 0), String(declared));
      }
      for (const declared of [100_000_001n, 1n << 40n, 1n << 63n, U64_MAX]) {
        const bytes = good.slice();
        Buffer.from(bytes.buffer).writeBigUInt64LE(declared, 0);
        assert.throws(() => parse(bytes), refused(new RegExp(`header length ${declared} exceeds the 100,000,000-byte limit`), 0), String(declared));
      }
      // A length that includes the data section leaves the header with trailing garbage; zero data bytes
      // are NUL bytes in the header, refused at the first one (see "a NUL byte anywhere in the header").
      const bytes = one(undefined, new Uint8Array(8).fill(0x41));
      Buffer.from(bytes.buffer).writeBigUInt64LE(BigInt(n + 8), 0);
      assert.throws(() => parse(bytes), refused(/the header is not valid JSON/, 8));
      const zeros = one(undefined, 8);
      Buffer.from(zeros.buffer).writeBigUInt64LE(BigInt(n + 8), 0);
      assert.throws(() => parse(zeros), refused(/the header holds a NUL byte \(not valid JSON\)/, 8 + n));
    });

    it('a header that is not JSON, not an object, or not UTF-8', () => {
      for (const text of ['{"t":', '{"t":{"dtype":"F32"', '{,}', '{"a":1,}', "{'a':1}", '{"a":01}', '{"a":tru}', '{"a":1} x', '{"a":"\\x"}', '{"a":"\\ud800"}', '{"a":"tab\there"}', '{"a":1e400}']) {
        assert.throws(() => parse(fileOf(text)), refused(/the header is not valid JSON/, 8), text);
      }
      for (const text of ['[]', '"x"', '1', 'null', ' {}', '\n{}', '{']) {
        assert.throws(() => parse(fileOf(text)), refused(/the header is not a JSON object/, 8), JSON.stringify(text));
      }
      for (const raw of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc0, 0xaf]]) {
        // In a name, in a metadata value, and outside any string.
        for (const [head, tail] of [['{"', '":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'], ['{"__metadata__":{"k":"', '"}}'], ['{', '}']]) {
          const header = Buffer.concat([Buffer.from(head!), Buffer.from(raw), Buffer.from(tail!)]);
          assert.throws(() => parse(fileOf(header, head === '{"' ? 1 : 0)), refused(/the header is not valid JSON \(UTF-8 object\)/, 8), `${raw.join(',')} in ${head}`);
        }
      }
    });

    it('deep nesting is refused before parsing, quickly and without exhausting the stack', () => {
      const started = process.hrtime.bigint();
      assert.throws(() => parse(fileOf(`{${'['.repeat(100_000)}`)), refused(/nests deeper than a safetensors header can \(depth > 3\)/, 8));
      assert.throws(() => parse(fileOf(`{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)), refused(/depth > 3/, 8));
      assert.throws(() => parse(fileOf(`{"a":${'{"b":'.repeat(50_000)}1${'}'.repeat(50_000)}}`)), refused(/depth > 3/, 8));
      // 10 MB of brackets: the scan stops at depth 4.
      assert.throws(() => parse(fileOf(`{${'['.repeat(10_000_000)}`)), refused(/depth > 3/, 8));
      // Unbalanced closers cannot pay for extra openers: the parser stops at the first stray "}".
      assert.throws(() => parse(fileOf(`{}${'}'.repeat(100_000)}${'['.repeat(100_000)}`)), refused(/not valid JSON/, 8));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      assert.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
      // Depth 3 is allowed (an extra field holding an array), depth 4 is not.
      assert.equal(parse(one('"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":[1]')).tensors.length, 1);
      assert.throws(() => parse(one('"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":[[1]]')), refused(/depth > 3/, 8));
      assert.throws(() => parse(one('"dtype":"F32","shape":[[2]],"data_offsets":[0,8]')), refused(/depth > 3/, 8));
    });

    it('an unknown dtype', () => {
      for (const dtype of ['F31', 'f32', 'float32', '', 'F32 ', 'F32\\u0000', 'C64']) {
        assert.throws(() => parse(one(`"dtype":"${dtype}","shape":[2],"data_offsets":[0,8]`)), refused(/tensor "t": unknown dtype "/, 8), dtype);
      }
      assert.throws(() => parse(one('"dtype":32,"shape":[2],"data_offsets":[0,8]')), refused(/tensor "t": missing string "dtype"/, 8));
    });

    it('negative, fractional and non-integer shape entries', () => {
      for (const dim of ['-1', '1.5', '2.0', '2e0', '"2"', 'null', 'true', '[2]', '-0', '18446744073709551616']) {
        const problem = dim === '[2]' ? /depth > 3/ : /tensor "t": shape entries must be non-negative integers/;
        assert.throws(() => parse(one(`"dtype":"F32","shape":[${dim}],"data_offsets":[0,8]`)), refused(problem, 8), dim);
      }
      assert.throws(() => parse(one('"dtype":"F32","shape":2,"data_offsets":[0,8]')), refused(/tensor "t": missing array "shape"/, 8));
    });

    it('a shape whose byte size overflows 2^64 (or a dimension over 2^63 − 1)', () => {
      // Literal integers in the JSON text: these are above 2^53, where JS numbers lose precision.
      const P62 = '4611686018427387904'; // 2^62
      const P40 = '1099511627776'; // 2^40
      const made: Uint8Array[] = [];
      const shaped = (dtype: string, shape: string): Uint8Array => {
        const bytes = one(`"dtype":"${dtype}","shape":[${shape}],"data_offsets":[0,0]`, 0);
        made.push(bytes);
        return bytes;
      };
      // A dimension over 2^63 − 1, even where the count would be 0 (the native reader's int64 limit).
      for (const shape of ['9223372036854775808', '18446744073709551615', '0,9223372036854775808', '9223372036854775808,0']) {
        assert.throws(() => parse(shaped('U8', shape)), refused(/tensor "t": a dimension exceeds 2\^63 − 1/, 8), shape);
      }
      // The element count overflows u64, folded left to right: an overflow before a 0 is refused.
      for (const shape of ['4294967296,4294967296', `${P40},${P40}`, `${P40},${P40},0`, '65536,65536,65536,65536', `2,${P62},2`, '9223372036854775807,3']) {
        assert.throws(() => parse(shaped('U8', shape)), refused(/tensor "t": the shape's element count overflows/, 8), shape);
      }
      // The count fits u64, but it is over 2^63 − 1 or × the dtype size overflows u64.
      for (const [dtype, shape] of [['F32', P62], ['F32', '2,2305843009213693952'], ['U64', '2305843009213693952'], ['F32', '9223372036854775807'], ['U8', '3037000500,3037000500'], ['U8', `${P62},2`]]) {
        assert.throws(() => parse(shaped(dtype!, shape!)), refused(/tensor "t": the shape's byte size overflows/, 8), `${dtype} [${shape}]`);
      }
      // Just inside the limits, the span check is next: a count of 2^63 − 1, a byte size of 2^64 − 2.
      assert.throws(() => parse(shaped('U8', '9223372036854775807')), refused(/span 0 bytes but dtype U8 and shape \[9223372036854775807\] need 9223372036854775807/, 8));
      assert.throws(() => parse(shaped('F16', '9223372036854775807')), refused(/span 0 bytes but dtype F16 and shape \[9223372036854775807\] need 18446744073709551614/, 8));
      assert.throws(() => parse(shaped('F16', P62)), refused(/span 0 bytes but dtype F16 and shape \[4611686018427387904\] need 9223372036854775808/, 8));
      // A huge dimension next to a 0, on either side, is a zero-size tensor (count 0 never overflows).
      assert.deepEqual(parse(shaped('F32', '0,1152921504606846976')).tensors[0]!.shape, [0, 2 ** 60]);
      assert.deepEqual(parse(shaped('F32', `${P62},0`)).tensors[0]!.shape, [2 ** 62, 0]);
      assert.deepEqual(parse(shaped('U64', `0,${P40},${P40}`)).tensors[0]!.shape, [0, 2 ** 40, 2 ** 40]);
      assert.deepEqual(parse(shaped('F64', '9223372036854775807,0')).tensors[0]!.shape, [2 ** 63, 0]);
      for (const bytes of made) agrees(bytes, Buffer.from(bytes.subarray(8)).toString('latin1'));
    });

    it('data_offsets: begin > end, not a pair of non-negative integers, or a span that is not dtype × shape', () => {
      assert.throws(() => parse(one('"dtype":"F32","shape":[0],"data_offsets":[8,0]')), refused(/tensor "t": data_offsets begin > end/, 8));
      for (const offsets of ['[0]', '[0,8,8]', '"0,8"', '[]']) {
        assert.throws(() => parse(one(`"dtype":"F32","shape":[2],"data_offsets":${offsets}`)), refused(/tensor "t": missing "data_offsets": \[begin, end\]/, 8), offsets);
      }
      for (const offsets of ['[-1,7]', '[0,8.0]', '[0,"8"]', '[null,8]', '[0,18446744073709551616]']) {
        assert.throws(() => parse(one(`"dtype":"F32","shape":[2],"data_offsets":${offsets}`)), refused(/tensor "t": data_offsets must be non-negative integers/, 8), offsets);
      }
      assert.throws(() => parse(one('"dtype":"F32","shape":[3],"data_offsets":[0,8]')), refused(/tensor "t": data_offsets span 8 bytes but dtype F32 and shape \[3\] need 12/, 8));
      assert.throws(() => parse(one('"dtype":"BF16","shape":[2,2],"data_offsets":[0,4]', 4)), refused(/span 4 bytes but dtype BF16 and shape \[2, 2\] need 8/, 8));
      assert.throws(() => parse(one('"dtype":"F32","shape":[],"data_offsets":[0,0]', 0)), refused(/span 0 bytes but dtype F32 and shape \[\] need 4/, 8));
    });

    it('a hole between tensors, overlapping tensors', () => {
      const a = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
      const hole = fileOf(`{${a},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}`, 20);
      const start = hole.length - 20;
      assert.throws(() => parse(hole), refused(/tensor "b" starts at data offset 12 but the previous one ends at 8 \(holes and overlaps are not allowed\)/, start + 8));
      const overlap = fileOf(`{${a},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12);
      assert.throws(() => parse(overlap), refused(/tensor "b" starts at data offset 4 but the previous one ends at 8/, overlap.length - 12 + 4));
      const same = fileOf(`{${a},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8);
      assert.throws(() => parse(same), refused(/starts at data offset 0 but the previous one ends at 8/, same.length - 8));
      const leading = fileOf('{"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12);
      assert.throws(() => parse(leading), refused(/tensor "b" starts at data offset 4 but the previous one ends at 0/, leading.length - 12));
      // The offset is where the hole starts: past the end of a file that is also truncated.
      const past = fileOf('{"a":{"dtype":"U8","shape":[1000],"data_offsets":[0,1000]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2000,2001]}}', 10);
      assert.throws(() => parse(past), refused(/tensor "b" starts at data offset 2000 but the previous one ends at 1000/, past.length - 10 + 1000));
      // A zero-size tensor may sit between two others (or at their shared offset).
      assert.equal(parse(fileOf(`{${a},"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, 16)).tensors.length, 3);
    });

    it('a data section longer than the tensors (trailing bytes) or shorter (truncated)', () => {
      const long = one(undefined, 12);
      assert.throws(() => parse(long), refused(/the tensors cover 8 bytes of a 12-byte data section \(a truncated or padded file\)/, long.length - 4));
      for (const data of [7, 4, 0]) {
        const short = one(undefined, data);
        assert.throws(() => parse(short), refused(new RegExp(`the tensors cover 8 bytes of a ${data}-byte data section`), short.length), `${data} bytes`);
      }
    });

    it('__metadata__ with a non-string value, or not an object', () => {
      for (const value of ['1', 'null', 'true', '["x"]', '{"y":"z"}']) {
        assert.throws(() => parse(one(undefined, 8, `"__metadata__":{"ok":"yes","k":${value}},`)), refused(/__metadata__\["k"\] is not a string/, 8), value);
      }
      for (const meta of ['[]', '"format"', '1', 'true']) {
        assert.throws(() => parse(one(undefined, 8, `"__metadata__":${meta},`)), refused(/__metadata__ is not an object of strings/, 8), meta);
      }
      assert.deepEqual(parse(one(undefined, 8, '"__metadata__":{},')).metadata, {});
      // null is no metadata (as the reference's Option<HashMap>), also when it replaces an earlier one.
      for (const before of ['"__metadata__":null,', '"__metadata__":{"a":"b"},"__metadata__":null,']) {
        const bytes = one(undefined, 8, before);
        const h = parse(bytes);
        assert.deepEqual(h, { tensors: [{ name: 't', dtype: 'F32', shape: [2], begin: 0, end: 8 }], metadata: {}, dataStart: h.dataStart }, before);
        agrees(bytes, before);
      }
      assert.deepEqual(parse(one(undefined, 8, '"__metadata__":null,"__metadata__":{"a":"b"},')).metadata, { a: 'b' });
      agrees(one(undefined, 8, '"__metadata__":[],'), '__metadata__ []');
    });

    it('an entry that is not an object or misses dtype, shape or data_offsets', () => {
      assert.throws(() => parse(one('"shape":[2],"data_offsets":[0,8]')), refused(/tensor "t": missing string "dtype"/, 8));
      assert.throws(() => parse(one('"dtype":"F32","data_offsets":[0,8]')), refused(/tensor "t": missing array "shape"/, 8));
      assert.throws(() => parse(one('"dtype":"F32","shape":[2]')), refused(/tensor "t": missing "data_offsets"/, 8));
      assert.throws(() => parse(one('')), refused(/tensor "t": missing string "dtype"/, 8));
      for (const entry of ['[]', '"F32"', '1', 'null']) {
        assert.throws(() => parse(fileOf(`{"t":${entry}}`, 0)), refused(/tensor "t": the entry is not an object/, 8), entry);
      }
      // Case matters: "Dtype" is not "dtype".
      assert.throws(() => parse(one('"Dtype":"F32","shape":[2],"data_offsets":[0,8]')), refused(/missing string "dtype"/, 8));
    });

    it('a NUL byte anywhere in the header is refused at its offset, before any other JSON check (reference: not valid JSON)', () => {
      const json = '{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
      const problem = /the header holds a NUL byte \(not valid JSON\)/;
      // After the JSON object, followed by anything (nlohmann's lexer would stop at it).
      for (const pad of ['\0', '\0garbage', '   \0[[[[', '\0\xff', ' \0\0']) {
        const bytes = fileOf(json, 8, pad);
        assert.throws(() => parse(bytes), refused(problem, 8 + json.length + pad.indexOf('\0')), JSON.stringify(pad));
        agrees(bytes, JSON.stringify(pad));
      }
      // Inside the JSON: in a string, between tokens, before malformed JSON, deep nesting or bad UTF-8.
      for (const [head, tail] of [['{"t\0":', '1}'], ['{"t":', '\0{}}'], ['{"a":1', '\0,}'], ['{', '\0[[[[[[[['], ['{"\xff', '\0"}'], ['{"a":"\xc3', '\0"}']]) {
        const header = Buffer.from(head! + tail!, 'latin1');
        assert.throws(() => parse(fileOf(header)), refused(problem, 8 + header.indexOf(0)), JSON.stringify(head! + tail!));
        agrees(fileOf(header), JSON.stringify(head! + tail!));
      }
      // A header that does not start with "{" is that problem first; an escaped NUL (\u0000) is fine.
      assert.throws(() => parse(fileOf('\0{}')), refused(/the header is not a JSON object/, 8));
      const escaped = fileOf('{"a\\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1);
      assert.deepEqual(parse(escaped).tensors.map((t) => t.name), ['a\0b']);
      agrees(escaped, 'escaped NUL');
      // NUL bytes in the data section are data.
      assert.equal(parse(fileOf(json, 8)).tensors.length, 1);
    });
  });
  describe('fuzz', () => {
    const BASES: Spec[] = [
      validSpec([{ name: 'w', dtype: 'F32', shape: [2, 3] }, { name: 'b', dtype: 'F16', shape: [5] }], { format: 'pt' }),
      {
        ...validSpec(
          [{ name: 'e', dtype: 'BF16', shape: [3, 1] }, { name: 's', dtype: 'F32', shape: [] }, { name: 'z', dtype: 'F32', shape: [0, 3] }, { name: 'h', dtype: 'F16', shape: [2, 2] }],
          undefined,
          [2, 0, 3, 1],
        ),
        pad: '', // unpadded
      },
      validSpec(
        [
          { name: 'ids', dtype: 'I64', shape: [2] },
          { name: 'mask', dtype: 'BOOL', shape: [3] },
          { name: 'bytes', dtype: 'U8', shape: [7] },
          { name: 'idx', dtype: 'I32', shape: [2, 1] },
          { name: 'x', dtype: 'F64', shape: [1] },
          { name: 'y', dtype: 'F16', shape: [3] },
        ],
        { a: '1', 'b.c': 'x y' },
        [5, 3, 1, 0, 2, 4],
      ),
    ];
    const PER_BASE = 12_000;

    /** Whether an accepted file's header has `"__metadata__": null` (the last one, where repeated). */
    function metadataIsNull(b: Uint8Array, dataStart: number): boolean {
      const root = parseJson(Buffer.from(b.subarray(8, dataStart)).toString('utf8'), 3);
      return root instanceof Map && root.get('__metadata__') === null;
    }

    it(`${BASES.length * PER_BASE} seeded mutants: accepted with a tiling header or refused with ERR_MMESID_DATA_FORMAT, as the model says; loadTensors agrees`, async () => {
      const started = process.hrtime.bigint();
      const rng = new Rng(20240611);
      const stats = { mutants: 0, accepted: 0, refused: 0, nulRefused: 0, tsAccepted: 0, tsDivergent: {} as Record<string, number>, ops: {} as Record<string, number> };
      const accepted = new Map<string, Uint8Array>();
      for (const base of BASES) {
        const baseBytes = specFile(base, rng);
        const baseModel = model(baseBytes);
        assert.ok(baseModel.ok, baseModel.ok ? '' : baseModel.reason);
        sameHeader(parse(baseBytes), baseModel.header, 'base file');
        for (let i = 0; i < PER_BASE; i += 1) {
          let mutant: Uint8Array;
          const ops: string[] = [];
          const kind = rng.next();
          if (kind < 0.45) {
            const [m, op] = mutateBytes(baseBytes, rng);
            mutant = m;
            ops.push(op);
          } else {
            let spec = base;
            for (let k = kind < 0.85 ? 1 : 2; k > 0; k -= 1) {
              const [next, op] = mutateSpec(spec, rng);
              spec = next;
              ops.push(op);
            }
            mutant = specFile(spec, rng);
            if (rng.next() < 0.15) {
              const [m, op] = mutateBytes(mutant, rng);
              mutant = m;
              ops.push(op);
            }
          }
          for (const op of ops) stats.ops[op] = (stats.ops[op] ?? 0) + 1;
          stats.mutants += 1;
          try {
            const native = parseNative(mutant);
            const expected = model(mutant);
            if (native.ok) {
              stats.accepted += 1;
              checkInvariants(native.header, mutant, 'accepted');
              assert.ok(expected.ok, `native accepted what the model refuses: ${expected.ok ? '' : expected.reason}`);
              sameHeader(native.header, expected.header, 'native vs model');
              const key = `${Buffer.from(mutant.subarray(0, native.header.dataStart)).toString('latin1')}|${mutant.length}`;
              if (!accepted.has(key)) accepted.set(key, mutant);
            } else {
              stats.refused += 1;
              checkRefusal(native.error, mutant.length, 'refused');
              assert.ok(!expected.ok, `native refused what the model accepts: ${native.error.message}`);
              if (expected.at) {
                // A NUL byte: refused at its offset, with that problem.
                assert.equal(native.error.message, `<bytes>: byte ${expected.at.offset}: ${expected.at.problem}`);
                stats.nulRefused += 1;
              }
            }
          } catch (error) {
            throw new Error(`mutant ${i} of base ${BASES.indexOf(base)} (${ops.join(' + ')}): ${(error as Error).message}\nmutant (base64): ${Buffer.from(mutant).toString('base64')}`, { cause: error });
          }
        }
      }

      // Every accepted mutant through the independent TypeScript reader.
      const file = path.join(dir, 'mutant.safetensors');
      for (const mutant of accepted.values()) {
        const native = parse(mutant);
        fs.writeFileSync(file, mutant);
        let ts: Awaited<ReturnType<typeof loadTensors>> | undefined;
        let failure: unknown;
        try {
          ts = await loadTensors(file);
        } catch (error) {
          failure = error;
        }
        const dump = (): string => `mutant (base64): ${Buffer.from(mutant).toString('base64')}`;
        if (ts) {
          stats.tsAccepted += 1;
          const byName = (list: { name: string; shape: number[] }[]): [string, number[]][] => list.map((t): [string, number[]] => [t.name, [...t.shape]]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
          assert.deepEqual(byName(ts.tensors), byName(native.tensors), dump());
          assert.deepEqual({ ...ts.metadata }, { ...native.metadata }, dump());
          continue;
        }
        assert.ok(failure instanceof DataFormatError, `loadTensors threw ${String(failure)}; ${dump()}`);
        // The reasons loadTensors may refuse a file the native reader accepts (see the top of this file).
        const reason =
          native.tensors.some((t) => !TS_DTYPES.has(t.dtype)) && /unsupported dtype/.test(failure.message)
            ? 'dtype not read by loadTensors'
            : native.tensors.some((t) => t.shape.some((d) => d > Number.MAX_SAFE_INTEGER)) && /shape is not a list of non-negative integers/.test(failure.message)
              ? 'dimension ≥ 2^53'
              : metadataIsNull(mutant, native.dataStart) && /"__metadata__" is not an object of strings/.test(failure.message)
                ? '__metadata__ null'
                : undefined;
        assert.ok(reason, `loadTensors refused a file the native reader accepts: ${failure.message}; ${dump()}`);
        stats.tsDivergent[reason] = (stats.tsDivergent[reason] ?? 0) + 1;
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      console.log(
        `      ${stats.mutants} mutants in ${seconds.toFixed(1)} s: ${stats.accepted} accepted, ${stats.refused} refused (${stats.nulRefused} at a NUL byte); ` +
          `${accepted.size} distinct accepted headers through loadTensors: ${stats.tsAccepted} accepted, refused: ${JSON.stringify(stats.tsDivergent)}`,
      );
      assert.ok(stats.mutants >= 20_000);
      // Both paths are exercised in earnest.
      assert.ok(stats.accepted >= 2000 && stats.refused >= 5000 && stats.nulRefused >= 100, JSON.stringify(stats));
      assert.ok(stats.tsAccepted >= 100, JSON.stringify(stats));
    });
  });

  describe('checkpoint files', () => {
    it('a truncated model.safetensors makes LlamaModel.load reject with DataFormatError naming it; a valid checkpoint loads next', async () => {
      const bad = writeTinyLlama(path.join(dir, 'truncated'), {});
      const file = bad.files[0]!;
      const bytes = fs.readFileSync(file);
      const cut = bytes.length - 100;
      fs.writeFileSync(file, bytes.subarray(0, cut));
      await assert.rejects(LlamaModel.load(bad.dir, { threads: 1 }), (e: unknown) => {
        assert.ok(e instanceof DataFormatError, String(e));
        assert.equal(e.code, 'ERR_MMESID_DATA_FORMAT');
        assert.equal(e.file, file);
        assert.equal(e.offset, cut);
        assert.match(e.problem, /the tensors cover \d+ bytes of a \d+-byte data section \(a truncated or padded file\)/);
        assert.ok(e.message.startsWith(`${file}: byte ${cut}: `), e.message);
        return true;
      });
      // Cut inside the header: the length runs past the end.
      fs.writeFileSync(file, bytes.subarray(0, 50));
      await assert.rejects(LlamaModel.load(bad.dir, { threads: 1 }), (e: unknown) => e instanceof DataFormatError && e.file === file && e.offset === 0 && /runs past the end of the file \(50 bytes\)/.test(e.message));
      // The second shard of a sharded checkpoint: that shard is named.
      const sharded = writeTinyLlama(path.join(dir, 'sharded'), { shards: 2 });
      const shard = sharded.files[1]!;
      fs.truncateSync(shard, fs.statSync(shard).size - 4);
      await assert.rejects(LlamaModel.load(sharded.dir, { threads: 1 }), (e: unknown) => e instanceof DataFormatError && e.file === shard && /truncated or padded/.test(e.message));

      const good = writeTinyLlama(path.join(dir, 'good'), {});
      const model = await LlamaModel.load(good.dir, { threads: 1 });
      try {
        const out = await model.forward({ batch: 1, length: 3, inputIds: Int32Array.from([1, 2, 3]), logits: true });
        assert.equal(out.logits?.length, 3 * 40);
        assert.ok(out.logits.every((x) => Number.isFinite(x)));
      } finally {
        await model.dispose();
      }
    });
  });
});
