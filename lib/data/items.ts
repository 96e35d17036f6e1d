/**
 * Item metadata: `items.jsonl`, one JSON object per item, item ids 1..N in line order,
 *
 *     {"id": 1, "asin": "B004756YJA", "title": "OPI Nail Lacquer, …", "brand": "OPI", "categories": ["Makeup", "Nails", "Nail Polish"]}
 *
 * streamed once (node:readline over one read stream), hashing the bytes on the way.
 *
 * Format rules (a violation throws DataFormatError naming the file, the 1-based line and the problem):
 * - blank or whitespace-only lines are skipped; `\r\n` line ends are accepted; every other line is one
 *   JSON object (extra fields are ignored);
 * - `id` (optional, but all-or-none: decided by the first record): when present it must equal the
 *   record's position, 1, 2, 3, … (the Beauty file carries it);
 * - `asin`: a non-empty string, unique over the file;
 * - `title`: a string;
 * - `brand`: a string or null (missing means null);
 * - `categories`: an array of strings (one category path, as in the Beauty file) or an array of arrays
 *   of strings (several paths, as in the raw Amazon metadata); missing means none. Both are kept as a
 *   list of paths: `["Makeup", "Nails"]` becomes `[["Makeup", "Nails"]]`.
 */

import { CancelledError, DataFormatError, InvalidArgumentError } from '../errors';
import { optionalSignal } from '../validate';
import { readHashedLines } from './lineReader';

/** One item's metadata. */
export interface ItemInfo {
  /** The item id, 1-based (its position in the file). */
  id: number;
  /** Amazon Standard Identification Number (or the catalogue's own key). */
  asin: string;
  title: string;
  /** null where unknown. */
  brand: string | null;
  /** Category paths, most general first; empty where unknown. */
  categories: string[][];
}

/** The item catalogue, indexed by item id. */
export interface ItemCatalog {
  /** The file as given to {@link loadItems}. */
  source: string;
  /** sha256 of the file's bytes, hex. */
  sha256: string;
  /** Number of items; ids are 1..numItems. */
  numItems: number;
  /** [numItems + 1]; index 0 (padding) is null, index i is item i. */
  items: (ItemInfo | null)[];
  /** Item id of each ASIN. */
  idByAsin: Map<string, number>;
}

/** Options of {@link loadItems}. */
export interface LoadItemsOptions {
  /** Cancels the read; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
}

const shown = (value: unknown): string => {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
};

function parseCategories(value: unknown, fail: (problem: string) => never): string[][] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(`"categories" must be an array of strings or of arrays of strings, not ${shown(value)}`);
  const list = value as unknown[];
  if (list.length === 0) return [];
  if (list.every((c) => typeof c === 'string')) return [list];
  if (list.every((path) => Array.isArray(path) && path.every((c) => typeof c === 'string'))) return list;
  const bad = list.findIndex((c) => typeof c !== 'string' && !Array.isArray(c));
  const where = bad >= 0 ? bad : list.findIndex((c) => typeof c === 'string');
  return fail(`"categories" must be an array of strings or of arrays of strings (element ${where} is ${shown(list[where])})`);
}

/**
 * Reads an `items.jsonl` catalogue, streaming it once.
 * @param file path of the file
 * @throws DataFormatError (rejection) on malformed content (file, line, problem); the file system's
 *   own error (e.g. ENOENT) when it cannot be read; CancelledError when `signal` aborts;
 *   InvalidArgumentError on bad arguments.
 */
export async function loadItems(file: string, options: LoadItemsOptions = {}): Promise<ItemCatalog> {
  if (typeof file !== 'string' || file.length === 0) throw new InvalidArgumentError('file', 'a file path', file);
  const signal = optionalSignal((options as Record<string, unknown>).signal, 'options.signal');
  const reader = readHashedLines(file);

  const items: (ItemInfo | null)[] = [null];
  const idByAsin = new Map<string, number>();
  const asinLine = new Map<string, number>();
  let hasIds: boolean | undefined;
  let lineNumber = 0;
  try {
    for await (const text of reader.lines) {
      lineNumber += 1;
      if (signal?.aborted) throw new CancelledError('loadItems was cancelled');
      if (text.trim().length === 0) continue;
      const line = lineNumber;
      const fail = (problem: string): never => {
        throw new DataFormatError(file, line, problem);
      };
      let record: unknown;
      try {
        record = JSON.parse(text);
      } catch (error) {
        fail(`not valid JSON (${(error as Error).message})`);
      }
      if (typeof record !== 'object' || record === null || Array.isArray(record)) fail(`not a JSON object but ${shown(record)}`);
      const o = record as Record<string, unknown>;
      const id = items.length;
      hasIds ??= 'id' in o;
      if (hasIds !== 'id' in o) fail(hasIds ? 'has no "id" (the first item has one, so every item must)' : 'has an "id" but the first item has none');
      if (hasIds && o.id !== id) fail(`"id" is ${shown(o.id)} but this is item ${id} (ids are 1, 2, 3, … in line order)`);
      const { asin, title } = o;
      if (typeof asin !== 'string' || asin.length === 0) fail(`"asin" must be a non-empty string, not ${shown(asin)}`);
      const earlier = asinLine.get(asin as string);
      if (earlier !== undefined) fail(`asin ${shown(asin)} already appeared on line ${earlier}`);
      if (typeof title !== 'string') fail(`"title" must be a string, not ${shown(title)}`);
      const brand = o.brand ?? null;
      if (brand !== null && typeof brand !== 'string') fail(`"brand" must be a string or null, not ${shown(brand)}`);
      const categories = parseCategories(o.categories, fail);
      asinLine.set(asin as string, line);
      idByAsin.set(asin as string, id);
      items.push({ id, asin: asin as string, title: title as string, brand: brand as string | null, categories });
    }
  } finally {
    reader.close();
  }
  return { source: file, sha256: reader.sha256(), numItems: items.length - 1, items, idByAsin };
}

/**
 * Item `id`'s metadata.
 * @throws InvalidArgumentError when `id` is not in 1..numItems
 */
export function itemInfo(catalog: ItemCatalog, id: number): ItemInfo {
  const item = Number.isSafeInteger(id) ? catalog.items[id] : undefined;
  if (!item) throw new InvalidArgumentError('id', `an item id in [1, ${catalog.numItems}]`, id);
  return item;
}
