/**
 * The data stage's input: the MME-SID paper's sequence format, one user per line,
 *
 *     user item item item ...
 *
 * whitespace-separated 1-based integer ids, items in chronological order (0 is kept free for padding).
 * The file is streamed once (node:readline over one read stream), hashing it on the way, into a CSR
 * pair: user u's items are `items[offsets[u] .. offsets[u + 1])`.
 *
 * Format rules (a violation throws DataFormatError naming the file, the 1-based line and the problem):
 * - blank or whitespace-only lines are skipped anywhere (a trailing newline, a final empty line);
 *   `\r\n` line ends are accepted;
 * - every token is a decimal integer in [1, 2^31 − 1] (no sign, no decimal point);
 * - a user line must list at least one item;
 * - a user id may appear on one line only.
 * Users keep the order of the file; `numItems` is the largest item id seen (ids need not be dense).
 */

import { CancelledError, DataFormatError, InvalidArgumentError } from '../errors';
import { optionalSignal, requireObject } from '../validate';
import { AtomicFile } from './atomicFile';
import { readHashedLines } from './lineReader';

/** Users' chronological item lists, CSR. */
export interface Sequences {
  /** The file as given to {@link loadSequences} (or a label for in-memory data). */
  source: string;
  /** sha256 of the file's bytes, hex (the dataset's fingerprint). */
  sha256: string;
  /** Number of users (lines with data). */
  numUsers: number;
  /** Largest item id; ids are 1..numItems, so score rows have numItems + 1 columns. */
  numItems: number;
  /** Distinct item ids that occur. */
  distinctItems: number;
  /** Total items over all users. */
  numInteractions: number;
  /** int32 [numUsers], each user's id as written in the file (file order). */
  userIds: Int32Array;
  /** int32 [numUsers + 1], CSR row pointers into `items`. */
  offsets: Int32Array;
  /** int32 [numInteractions], every user's items, chronological. */
  items: Int32Array;
}

/** Options of {@link loadSequences}. */
export interface LoadSequencesOptions {
  /** Cancels the read; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
}

const INT32_MAX = 2 ** 31 - 1;
const DIGITS = /^[0-9]+$/;

/** A growable Int32Array. */
class IntBuffer {
  private data = new Int32Array(1024);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const grown = new Int32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length] = value;
    this.length += 1;
  }

  /** A right-sized copy. */
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

function parseId(token: string, file: string, line: number, position: number, what: string): number {
  const value = DIGITS.test(token) ? Number(token) : NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > INT32_MAX) {
    const shown = token.length > 24 ? `${token.slice(0, 24)}…` : token;
    throw new DataFormatError(file, line, `token ${position} (${JSON.stringify(shown)}, the ${what}) is not an integer id in [1, ${INT32_MAX}]`);
  }
  return value;
}

/**
 * Reads a sequence file, streaming it once.
 * @param file path of the file
 * @throws DataFormatError (rejection) on malformed content; the file system's own error (e.g. ENOENT)
 *   when it cannot be read; CancelledError when `signal` aborts; InvalidArgumentError on bad arguments.
 */
export async function loadSequences(file: string, options: LoadSequencesOptions = {}): Promise<Sequences> {
  if (typeof file !== 'string' || file.length === 0) throw new InvalidArgumentError('file', 'a file path', file);
  const signal = optionalSignal((options as Record<string, unknown>).signal, 'options.signal');
  const reader = readHashedLines(file);

  const userIds = new IntBuffer();
  const offsets = new IntBuffer();
  const items = new IntBuffer();
  const userLine = new Map<number, number>();
  let numItems = 0;
  let lineNumber = 0;
  offsets.push(0);
  try {
    for await (const text of reader.lines) {
      lineNumber += 1;
      if (signal?.aborted) throw new CancelledError('loadSequences was cancelled');
      const trimmed = text.trim();
      if (trimmed.length === 0) continue;
      const tokens = trimmed.split(/\s+/);
      const user = parseId(tokens[0]!, file, lineNumber, 1, 'user id');
      if (tokens.length < 2) throw new DataFormatError(file, lineNumber, `user ${user} has no items`);
      const earlier = userLine.get(user);
      if (earlier !== undefined) throw new DataFormatError(file, lineNumber, `user ${user} already appeared on line ${earlier}`);
      userLine.set(user, lineNumber);
      for (let t = 1; t < tokens.length; t += 1) {
        const item = parseId(tokens[t]!, file, lineNumber, t + 1, 'item id');
        if (item > numItems) numItems = item;
        items.push(item);
      }
      if (items.length > INT32_MAX) throw new DataFormatError(file, lineNumber, `more than ${INT32_MAX} interactions`);
      userIds.push(user);
      offsets.push(items.length);
    }
  } finally {
    reader.close();
  }
  const itemArray = items.toArray();
  const seen = new Uint8Array(numItems + 1);
  let distinctItems = 0;
  for (const item of itemArray) {
    if (seen[item] === 0) {
      seen[item] = 1;
      distinctItems += 1;
    }
  }
  return {
    source: file,
    sha256: reader.sha256(),
    numUsers: userIds.length,
    numItems,
    distinctItems,
    numInteractions: itemArray.length,
    userIds: userIds.toArray(),
    offsets: offsets.toArray(),
    items: itemArray,
  };
}

/** User u's items (a view, not a copy). */
export function userItems(sequences: Sequences, user: number): Int32Array {
  return sequences.items.subarray(sequences.offsets[user], sequences.offsets[user + 1]);
}

/**
 * Writes sequences in the format {@link loadSequences} reads (`user item item ...`, one line per user
 * with at least one item, file order, `\n` line ends), atomically. Loading the file back gives the same
 * users, items and order; `numItems` becomes the largest id that occurs.
 * @returns the sha256 of the bytes written (what loadSequences will report)
 * @throws InvalidArgumentError on a malformed `sequences` (bad offsets, an id < 1); the file system's error
 */
export async function saveSequences(file: string, sequences: Sequences): Promise<string> {
  if (typeof file !== 'string' || file.length === 0) throw new InvalidArgumentError('file', 'a file path', file);
  const s = requireObject(sequences, 'sequences') as unknown as Sequences;
  const { offsets, items, userIds, numUsers } = s;
  if (!(offsets instanceof Int32Array) || offsets.length !== numUsers + 1 || offsets[numUsers] !== items.length) {
    throw new InvalidArgumentError('sequences.offsets', `an Int32Array of numUsers + 1 row pointers ending at items.length`, offsets);
  }
  if (!(userIds instanceof Int32Array) || userIds.length !== numUsers) throw new InvalidArgumentError('sequences.userIds', `an Int32Array of numUsers (${numUsers}) ids`, userIds);
  const out = new AtomicFile(file);
  await out.open();
  try {
    for (let u = 0; u < numUsers; u += 1) {
      const begin = offsets[u]!;
      const end = offsets[u + 1]!;
      if (end < begin) throw new InvalidArgumentError(`sequences.offsets[${u + 1}]`, `a value >= offsets[${u}] (${begin})`, end);
      if (end === begin) continue;
      if (userIds[u]! < 1) throw new InvalidArgumentError(`sequences.userIds[${u}]`, 'an id >= 1', userIds[u]);
      const row = items.subarray(begin, end);
      const bad = row.findIndex((item) => item < 1);
      if (bad >= 0) throw new InvalidArgumentError(`sequences.items[${begin + bad}]`, 'an item id >= 1', row[bad]);
      await out.write(`${userIds[u]} ${row.join(' ')}\n`);
    }
    const sha256 = await out.finish();
    await out.commit();
    return sha256;
  } catch (error) {
    await out.discard();
    throw error;
  }
}

/** Summary counts of a data set (`items` is the largest item id, as in the paper's tables). */
export interface SequenceStats {
  users: number;
  items: number;
  interactions: number;
  distinctItems: number;
  minLength: number;
  maxLength: number;
  meanLength: number;
  sha256: string;
}

/** Counts of {@link Sequences}. */
export function sequenceStats(sequences: Sequences): SequenceStats {
  let minLength = sequences.numUsers > 0 ? Infinity : 0;
  let maxLength = 0;
  for (let u = 0; u < sequences.numUsers; u += 1) {
    const length = sequences.offsets[u + 1]! - sequences.offsets[u]!;
    minLength = Math.min(minLength, length);
    maxLength = Math.max(maxLength, length);
  }
  return {
    users: sequences.numUsers,
    items: sequences.numItems,
    interactions: sequences.numInteractions,
    distinctItems: sequences.distinctItems,
    minLength,
    maxLength,
    meanLength: sequences.numUsers > 0 ? sequences.numInteractions / sequences.numUsers : 0,
    sha256: sequences.sha256,
  };
}

/** The dataset record every report carries: where the data came from, its sha256 and its size. */
export function describeDataset(sequences: Sequences): {
  source: string;
  sha256: string;
  users: number;
  items: number;
  interactions: number;
} {
  return {
    source: sequences.source,
    sha256: sequences.sha256,
    users: sequences.numUsers,
    items: sequences.numItems,
    interactions: sequences.numInteractions,
  };
}
