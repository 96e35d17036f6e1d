/**
 * Amazon review dumps, as users download them, into the paper's data files: {@link prepareAmazon}
 * reads a reviews file and a metadata file (each JSON lines, each optionally gzip-compressed) and writes
 *
 *     <outDir>/sequences.txt   `user item item ...`, chronological (what loadSequences reads)
 *     <outDir>/items.jsonl     `{"id", "asin", "title", "brand", "categories"}` per item id (what loadItems reads)
 *     <outDir>/id_map.json     reviewerID ↔ user id and asin ↔ item id, with the inputs' sha256
 *
 * Inputs (both Amazon releases use the same keys):
 * - reviews (2014 "5-core"/"ratings" JSON, 2018 JSON): one object per line with `reviewerID` and `asin`
 *   (non-empty strings) and `unixReviewTime` (a non-negative integer, seconds); other fields
 *   (`overall`, `reviewText`, …) are ignored;
 * - metadata: one object per line with `asin`, optionally `title`, `brand`, and `categories` (2014: an
 *   array of category paths) or `category` (2018: one path, an array of strings). Some 2014 metadata
 *   files are Python dict literals (`{'asin': '…'}`), not JSON: such a line is reported as a
 *   DataFormatError saying so (it is never evaluated); convert the file to JSON first. A blank `brand`
 *   (the 2018 files write "") becomes null; a repeated asin keeps its first record.
 * A file whose first two bytes are 1f 8b is gunzipped on the fly (multi-member gzip included). Every file
 * is streamed once, never held whole, and its raw bytes are hashed on the same read.
 *
 * Pipeline, in this order:
 * 1. interactions whose item has no title (absent from the metadata, or a missing, null or blank
 *    `title`) are dropped — the paper's Table 1 counts only items with a title;
 * 2. a repeated (user, item) pair keeps only its earliest occurrence (ties: the first in the file), so
 *    k-core counts distinct users and items (`duplicates: 'keep'` keeps every occurrence instead);
 * 3. iterative k-core (default k = 5): users and items with fewer than k interactions are removed,
 *    repeatedly, until every remaining user and item has at least k. The k-core is unique, so the
 *    result does not depend on the removal order;
 * 4. each user's interactions are ordered by `unixReviewTime`; equal times keep the file's order;
 * 5. ids: users are numbered 1..U in order of their first appearance in the reviews file; items
 *    1..N in order of first appearance when the users' chronological sequences are read user 1, user 2, …
 *    Both rules depend only on the file's content, so gzip and plain inputs give identical outputs.
 *
 * Nothing is written until both inputs are read and validated; each output goes to a temporary file in
 * `outDir` that is renamed into place only when all three are complete (sequences.txt last, so its
 * presence means the set is whole). A failure leaves no output and no temporary file behind.
 */

import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import * as zlib from 'node:zlib';

import { CancelledError, DataFormatError, InvalidArgumentError } from '../errors';
import { optionalSignal, requireObject, optionalInteger } from '../validate';
import type { Sequences } from './sequences';
import { AtomicFile } from './atomicFile';

/** Options of {@link prepareAmazon}. */
export interface PrepareAmazonOptions {
  /** Reviews file (JSON lines, plain or gzip). */
  reviews: string;
  /** Metadata file (JSON lines, plain or gzip). */
  metadata: string;
  /** Output folder (created when missing); receives sequences.txt, items.jsonl and id_map.json. */
  outDir: string;
  /** Minimum interactions per user and per item (k-core), default 5; 1 disables the filter. */
  k?: number;
  /** `'first'` (default): a repeated (user, item) pair keeps its earliest occurrence; `'keep'`: keep all. */
  duplicates?: 'first' | 'keep';
  /** Cancels the work; the promise then rejects with CancelledError and nothing is written. */
  signal?: AbortSignal;
}

/** Counts of each step of {@link prepareAmazon}. */
export interface AmazonPrepareStats {
  /** Review lines read (non-blank). */
  reviews: number;
  /** Metadata lines read (non-blank). */
  metadataRecords: number;
  /** Interactions dropped because their item has no title. */
  droppedNoTitle: number;
  /** Interactions dropped as repeated (user, item) pairs. */
  droppedDuplicates: number;
  /** Interactions removed by the k-core filter. */
  droppedKCore: number;
  /** Rounds the k-core filter took to become stable (the last one removes nothing). */
  kCoreRounds: number;
  users: number;
  items: number;
  interactions: number;
}

/** What {@link prepareAmazon} wrote and the resulting data set. */
export interface AmazonPrepareResult {
  /** The written sequences, exactly what `loadSequences(files.sequences)` returns (sha256 included). */
  sequences: Sequences;
  files: { sequences: string; items: string; idMap: string };
  stats: AmazonPrepareStats;
}

/** The id_map.json document (format `mmesid-amazon-id-map`, version 1). */
export interface AmazonIdMap {
  format: 'mmesid-amazon-id-map';
  version: 1;
  k: number;
  duplicates: 'first' | 'keep';
  sources: { reviews: { file: string; sha256: string }; metadata: { file: string; sha256: string } };
  /** reviewerID of user id u at index u − 1. */
  users: string[];
  /** asin of item id i at index i − 1. */
  items: string[];
}

const FORMAT = 'mmesid-amazon-id-map';

const shown = (value: unknown): string => {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
};

/**
 * The lines of a plain or gzip file (detected from its first bytes), read once; the raw bytes are
 * hashed into `hash`. A corrupt gzip stream throws DataFormatError (file, compressed byte offset).
 */
async function* readLines(file: string, hash: Hash): AsyncGenerator<string> {
  const raw = fs.createReadStream(file);
  let rawBytes = 0;
  let gunzip: zlib.Gunzip | undefined;
  try {
    const chunks = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const head = await chunks.next();
    if (head.done) return;
    let first: Buffer = head.value;
    // A file stream's first chunk is 64 KiB unless the file is smaller, but be exact anyway.
    while (first.length < 2) {
      const next = await chunks.next();
      if (next.done) break;
      first = Buffer.concat([first, next.value]);
    }
    const gzip = first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b;
    async function* bytes(): AsyncGenerator<Buffer> {
      for (let chunk: Buffer | undefined = first; chunk !== undefined; ) {
        hash.update(chunk);
        rawBytes += chunk.length;
        yield chunk;
        const next = await chunks.next();
        chunk = next.done ? undefined : next.value;
      }
    }
    let decoded: AsyncIterable<Buffer> = bytes();
    if (gzip) {
      gunzip = zlib.createGunzip();
      // pipeline destroys the gunzip stream with any error, so the iteration below rejects with it.
      pipeline(Readable.from(bytes()), gunzip, () => undefined);
      decoded = gunzip;
    }
    const decoder = new StringDecoder('utf8');
    let pending = '';
    try {
      for await (const chunk of decoded) {
        pending += decoder.write(chunk);
        let start = 0;
        for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n', start)) {
          yield pending.slice(start, end > start && pending.charCodeAt(end - 1) === 13 ? end - 1 : end);
          start = end + 1;
        }
        pending = pending.slice(start);
      }
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (gzip && typeof code === 'string' && code.startsWith('Z_')) {
        throw DataFormatError.atByte(file, rawBytes, `corrupt gzip data (${(error as Error).message})`);
      }
      throw error;
    }
    pending += decoder.end();
    if (pending.length > 0) yield pending.endsWith('\r') ? pending.slice(0, -1) : pending;
  } finally {
    gunzip?.destroy();
    raw.destroy();
  }
}

/** Parses one JSON-lines record; a Python dict literal gets its own message. */
function parseRecord(text: string, file: string, line: number): Record<string, unknown> {
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch (error) {
    if (/^\s*\{\s*u?'/.test(text)) {
      throw new DataFormatError(
        file,
        line,
        'is a Python dict literal (single-quoted strings), not JSON; some 2014 Amazon metadata files are written this way — convert the file to JSON lines first (it is never evaluated here)',
      );
    }
    throw new DataFormatError(file, line, `not valid JSON (${(error as Error).message})`);
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw new DataFormatError(file, line, `not a JSON object but ${shown(record)}`);
  }
  return record as Record<string, unknown>;
}

/** `categories` (2014, paths) or `category` (2018, one path) as a list of paths. */
function parseCategories(o: Record<string, unknown>, fail: (problem: string) => never): string[][] {
  const key = o.categories !== undefined ? 'categories' : 'category';
  const value = o[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail(`"${key}" must be an array, not ${shown(value)}`);
  const list = value as unknown[];
  if (list.every((c) => typeof c === 'string')) return list.length === 0 ? [] : [list];
  if (list.every((p) => Array.isArray(p) && p.every((c) => typeof c === 'string'))) {
    return list.filter((p) => p.length > 0);
  }
  return fail(`"${key}" must be an array of strings or of arrays of strings, not ${shown(value)}`);
}

/** A growable typed array of numbers. */
class Column<T extends Int32Array | Float64Array> {
  length = 0;
  constructor(
    private data: T,
    private readonly make: (n: number) => T,
  ) {}
  push(value: number): void {
    if (this.length === this.data.length) {
      const grown = this.make(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length] = value;
    this.length += 1;
  }
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }
}

interface ItemMeta {
  title: string;
  brand: string | null;
  categories: string[][];
}

function requireFile(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(name, 'a file path', value);
  return value;
}

/**
 * Converts an Amazon reviews file and metadata file into sequences.txt, items.jsonl and id_map.json
 * (see the module comment for the formats, the pipeline and the id rules).
 * @returns the written sequences (CSR, the same object loadSequences would return), the paths, and counts
 * @throws DataFormatError (rejection) naming the file and line (or the byte, for corrupt gzip) of
 *   malformed input — nothing is written then; the file system's own error (e.g. ENOENT);
 *   CancelledError when `signal` aborts; InvalidArgumentError on bad arguments.
 */
export async function prepareAmazon(options: PrepareAmazonOptions): Promise<AmazonPrepareResult> {
  const o = requireObject(options, 'options');
  const reviewsFile = requireFile(o.reviews, 'options.reviews');
  const metadataFile = requireFile(o.metadata, 'options.metadata');
  const outDir = requireFile(o.outDir, 'options.outDir');
  const k = optionalInteger(o.k, 'options.k', 5, 1);
  const duplicates = o.duplicates ?? 'first';
  if (duplicates !== 'first' && duplicates !== 'keep') throw new InvalidArgumentError('options.duplicates', "'first' or 'keep'", o.duplicates);
  const signal = optionalSignal(o.signal, 'options.signal');
  const checkCancelled = (): void => {
    if (signal?.aborted) throw new CancelledError('prepareAmazon was cancelled');
  };

  // 1. Reviews: intern reviewerIDs and asins in order of first appearance; keep three columns.
  const userIndex = new Map<string, number>();
  const userNames: string[] = [];
  const asinIndex = new Map<string, number>();
  const asinNames: string[] = [];
  const users = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  const asins = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  const times = new Column(new Float64Array(1024), (n) => new Float64Array(n));
  const reviewsHash = createHash('sha256');
  let reviewCount = 0;
  let lineNumber = 0;
  for await (const text of readLines(reviewsFile, reviewsHash)) {
    lineNumber += 1;
    if ((lineNumber & 1023) === 0) checkCancelled();
    if (text.trim().length === 0) continue;
    const line = lineNumber;
    const fail = (problem: string): never => {
      throw new DataFormatError(reviewsFile, line, problem);
    };
    const r = parseRecord(text, reviewsFile, line);
    const { reviewerID, asin, unixReviewTime } = r;
    if (typeof reviewerID !== 'string' || reviewerID.length === 0) fail(`"reviewerID" must be a non-empty string, not ${shown(reviewerID)}`);
    if (typeof asin !== 'string' || asin.length === 0) fail(`"asin" must be a non-empty string, not ${shown(asin)}`);
    if (typeof unixReviewTime !== 'number' || !Number.isSafeInteger(unixReviewTime) || unixReviewTime < 0) {
      fail(`"unixReviewTime" must be a non-negative integer (seconds), not ${shown(unixReviewTime)}`);
    }
    let u = userIndex.get(reviewerID as string);
    if (u === undefined) {
      u = userNames.length;
      userIndex.set(reviewerID as string, u);
      userNames.push(reviewerID as string);
    }
    let a = asinIndex.get(asin as string);
    if (a === undefined) {
      a = asinNames.length;
      asinIndex.set(asin as string, a);
      asinNames.push(asin as string);
    }
    users.push(u);
    asins.push(a);
    times.push(unixReviewTime as number);
    reviewCount += 1;
  }
  checkCancelled();

  // 2. Metadata: every line is validated; only reviewed asins are kept (first record of an asin wins).
  const meta: (ItemMeta | undefined)[] = new Array<ItemMeta | undefined>(asinNames.length);
  const metadataHash = createHash('sha256');
  let metadataCount = 0;
  lineNumber = 0;
  for await (const text of readLines(metadataFile, metadataHash)) {
    lineNumber += 1;
    if ((lineNumber & 1023) === 0) checkCancelled();
    if (text.trim().length === 0) continue;
    const line = lineNumber;
    const fail = (problem: string): never => {
      throw new DataFormatError(metadataFile, line, problem);
    };
    const m = parseRecord(text, metadataFile, line);
    metadataCount += 1;
    if (typeof m.asin !== 'string' || m.asin.length === 0) fail(`"asin" must be a non-empty string, not ${shown(m.asin)}`);
    const title = m.title ?? null;
    if (title !== null && typeof title !== 'string') fail(`"title" must be a string or null, not ${shown(title)}`);
    const brand = m.brand ?? null;
    if (brand !== null && typeof brand !== 'string') fail(`"brand" must be a string or null, not ${shown(brand)}`);
    const categories = parseCategories(m, fail);
    const a = asinIndex.get(m.asin as string);
    if (a === undefined || meta[a] !== undefined) continue;
    if (title !== null && (title as string).trim().length > 0) {
      const brandText = brand === null || (brand as string).trim().length === 0 ? null : (brand as string);
      meta[a] = { title: title as string, brand: brandText, categories };
    }
  }
  checkCancelled();

  // 3. Title filter and duplicate (user, item) pairs, in file order.
  const n = users.length;
  const userOf = users.view();
  const asinOf = asins.view();
  const timeOf = times.view();
  const alive = new Uint8Array(n);
  let droppedNoTitle = 0;
  let droppedDuplicates = 0;
  const firstSeen = new Map<number, number>();
  for (let i = 0; i < n; i += 1) {
    if (meta[asinOf[i]!] === undefined) {
      droppedNoTitle += 1;
      continue;
    }
    if (duplicates === 'first') {
      const pair = userOf[i]! * asinNames.length + asinOf[i]!;
      const earlier = firstSeen.get(pair);
      if (earlier !== undefined) {
        droppedDuplicates += 1;
        // Keep the earliest in time; on equal times the earlier line stays.
        if (timeOf[i]! < timeOf[earlier]!) {
          alive[earlier] = 0;
          alive[i] = 1;
          firstSeen.set(pair, i);
        }
        continue;
      }
      firstSeen.set(pair, i);
    }
    alive[i] = 1;
  }
  firstSeen.clear();

  // 4. Iterative k-core: recount, drop every interaction of an under-k user or item, until stable.
  const userCount = new Int32Array(userNames.length);
  const itemCount = new Int32Array(asinNames.length);
  let kCoreRounds = 0;
  let droppedKCore = 0;
  for (;;) {
    kCoreRounds += 1;
    userCount.fill(0);
    itemCount.fill(0);
    for (let i = 0; i < n; i += 1) {
      if (alive[i] === 0) continue;
      const u = userOf[i]!;
      const a = asinOf[i]!;
      userCount[u] = userCount[u]! + 1;
      itemCount[a] = itemCount[a]! + 1;
    }
    let removed = 0;
    for (let i = 0; i < n; i += 1) {
      if (alive[i] !== 0 && (userCount[userOf[i]!]! < k || itemCount[asinOf[i]!]! < k)) {
        alive[i] = 0;
        removed += 1;
      }
    }
    droppedKCore += removed;
    if (removed === 0) break;
  }

  // 5. Users by first appearance; each user's interactions by time (stable); items by first appearance.
  const userId = new Int32Array(userNames.length);
  let numUsers = 0;
  for (let u = 0; u < userNames.length; u += 1) if (userCount[u]! > 0) userId[u] = ++numUsers;
  const offsets = new Int32Array(numUsers + 1);
  for (let u = 0; u < userNames.length; u += 1) if (userId[u]! > 0) offsets[userId[u]!] = userCount[u]!;
  for (let u = 0; u < numUsers; u += 1) offsets[u + 1] = offsets[u + 1]! + offsets[u]!;
  const numInteractions = offsets[numUsers]!;
  const order = new Int32Array(numInteractions);
  const fill = offsets.slice(0, numUsers);
  for (let i = 0; i < n; i += 1) {
    if (alive[i] === 0) continue;
    const row = userId[userOf[i]!]! - 1;
    order[fill[row]!] = i;
    fill[row] = fill[row]! + 1;
  }
  for (let u = 0; u < numUsers; u += 1) {
    // Array.prototype.sort is stable, and within a user `order` is in file order: ties keep file order.
    const row = Array.from(order.subarray(offsets[u], offsets[u + 1]));
    row.sort((x, y) => timeOf[x]! - timeOf[y]!);
    order.set(row, offsets[u]);
  }
  const itemId = new Int32Array(asinNames.length);
  const itemAsins: number[] = [];
  const items = new Int32Array(numInteractions);
  for (let j = 0; j < numInteractions; j += 1) {
    const a = asinOf[order[j]!]!;
    if (itemId[a] === 0) {
      itemAsins.push(a);
      itemId[a] = itemAsins.length;
    }
    items[j] = itemId[a]!;
  }
  const numItems = itemAsins.length;
  const userIds = new Int32Array(numUsers);
  for (let u = 0; u < numUsers; u += 1) userIds[u] = u + 1;
  const usersById: string[] = new Array<string>(numUsers);
  for (let u = 0; u < userNames.length; u += 1) if (userId[u]! > 0) usersById[userId[u]! - 1] = userNames[u]!;
  checkCancelled();

  // 6. Write the three files to temporaries, then rename them into place (sequences.txt last).
  await fs.promises.mkdir(outDir, { recursive: true });
  const files = {
    sequences: path.join(outDir, 'sequences.txt'),
    items: path.join(outDir, 'items.jsonl'),
    idMap: path.join(outDir, 'id_map.json'),
  };
  const outputs = [new AtomicFile(files.items), new AtomicFile(files.idMap), new AtomicFile(files.sequences)];
  const [itemsOut, mapOut, sequencesOut] = outputs as [AtomicFile, AtomicFile, AtomicFile];
  let sequencesSha: string;
  try {
    for (const out of outputs) await out.open();
    for (let i = 0; i < numItems; i += 1) {
      const a = itemAsins[i]!;
      const m = meta[a]!;
      await itemsOut.write(`${JSON.stringify({ id: i + 1, asin: asinNames[a], title: m.title, brand: m.brand, categories: m.categories })}\n`);
    }
    const idMap: AmazonIdMap = {
      format: FORMAT,
      version: 1,
      k,
      duplicates,
      sources: {
        reviews: { file: path.basename(reviewsFile), sha256: reviewsHash.digest('hex') },
        metadata: { file: path.basename(metadataFile), sha256: metadataHash.digest('hex') },
      },
      users: usersById,
      items: itemAsins.map((a) => asinNames[a]!),
    };
    await mapOut.write(`${JSON.stringify(idMap)}\n`);
    for (let u = 0; u < numUsers; u += 1) {
      if ((u & 1023) === 0) checkCancelled();
      await sequencesOut.write(`${u + 1} ${Array.prototype.join.call(items.subarray(offsets[u], offsets[u + 1]), ' ')}\n`);
    }
    await itemsOut.finish();
    await mapOut.finish();
    sequencesSha = await sequencesOut.finish();
    checkCancelled();
    for (const out of outputs) await out.commit();
  } catch (error) {
    await Promise.all(outputs.map((out) => out.discard()));
    throw error;
  }

  const sequences: Sequences = {
    source: files.sequences,
    sha256: sequencesSha,
    numUsers,
    numItems,
    distinctItems: numItems,
    numInteractions,
    userIds,
    offsets,
    items,
  };
  return {
    sequences,
    files,
    stats: {
      reviews: reviewCount,
      metadataRecords: metadataCount,
      droppedNoTitle,
      droppedDuplicates,
      droppedKCore,
      kCoreRounds,
      users: numUsers,
      items: numItems,
      interactions: numInteractions,
    },
  };
}

/**
 * Reads an id_map.json written by {@link prepareAmazon}.
 * @throws DataFormatError when the file is not such a document (wrong format or version, bad fields)
 */
export async function loadAmazonIdMap(file: string): Promise<AmazonIdMap> {
  requireFile(file, 'file');
  const text = await fs.promises.readFile(file, 'utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new DataFormatError(file, 1, `not valid JSON (${(error as Error).message})`);
  }
  const d = doc as Partial<AmazonIdMap> | null;
  if (typeof d !== 'object' || d === null || d.format !== FORMAT) throw new DataFormatError(file, 1, `not an ${FORMAT} document`);
  if (d.version !== 1) throw new DataFormatError(file, 1, `unsupported ${FORMAT} version ${shown(d.version)} (this release reads version 1)`);
  const strings = (v: unknown): boolean => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (!strings(d.users) || !strings(d.items)) throw new DataFormatError(file, 1, '"users" and "items" must be arrays of strings');
  return d as AmazonIdMap;
}
