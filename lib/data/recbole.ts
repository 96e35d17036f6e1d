/**
 * RecBole atomic files: `.inter` (interactions) and `.item` (item features), into the same in-memory
 * {@link Sequences} that loadSequences returns, plus the token ↔ id maps and the item fields.
 *
 * Both files are tab-separated; the first line is the header, one `name:type` per column, with `type`
 * one of RecBole's `token`, `token_seq`, `float`, `float_seq`:
 *
 *     user_id:token	item_id:token	rating:float	timestamp:float
 *     A1YJEY40YUW4SE	7806397051	1.0	1391040000
 *
 *     item_id:token	title:token_seq	brand:token	categories:token_seq
 *     7806397051	Mineral Powder Brush	Sigma	Beauty Tools
 *
 * Rules (a violation throws DataFormatError naming the file, the 1-based line and the problem):
 * - the `.inter` header must have `user_id:token`, `item_id:token` and `timestamp:float` (other names
 *   through the options); the `.item` header must have `item_id:token`; a column name appears once;
 * - every row has exactly the header's number of columns; blank lines are skipped; `\r\n` is accepted;
 * - user and item tokens are non-empty; a timestamp (and any `.item` float) is a finite decimal number;
 * - an `.item` row's item appears once.
 *
 * Ids, deterministically from the files' content: users are 1..U in order of first appearance in the
 * `.inter` file; each user's interactions are ordered by timestamp, equal timestamps keeping file order;
 * items are 1..N in order of first appearance when the users' chronological sequences are read user 1,
 * user 2, … (the rule prepareAmazon uses). Repeated interactions are kept, as RecBole keeps them.
 * `.item` rows of items absent from the `.inter` file are skipped (counted in `unusedItemRows`).
 */

import { CancelledError, DataFormatError, InvalidArgumentError } from '../errors';
import { optionalSignal, requireObject } from '../validate';
import { readHashedLines } from './lineReader';
import type { Sequences } from './sequences';

/** RecBole's column types. */
export type RecBoleType = 'token' | 'token_seq' | 'float' | 'float_seq';

/** A parsed `.item` value: token → string, token_seq → tokens (split on spaces), float → number, float_seq → numbers. */
export type RecBoleValue = string | string[] | number | number[];

/** One header column. */
export interface RecBoleField {
  name: string;
  type: RecBoleType;
}

/** Options of {@link loadRecBole}. */
export interface LoadRecBoleOptions {
  /** The `.item` file; without it `items` holds only nulls. */
  item?: string;
  /** Column names (RecBole's USER_ID_FIELD, ITEM_ID_FIELD, TIME_FIELD); defaults `user_id`, `item_id`, `timestamp`. */
  userField?: string;
  itemField?: string;
  timeField?: string;
  /** Cancels the read; the promise then rejects with CancelledError. */
  signal?: AbortSignal;
}

/** A RecBole data set as {@link Sequences} plus its tokens and item features. */
export interface RecBoleDataset {
  /** source = the `.inter` file, sha256 = its bytes' hash; userIds are 1..numUsers. */
  sequences: Sequences;
  /** [numUsers + 1]: the token of user id u at index u; index 0 is `[PAD]` (RecBole's convention). */
  userTokens: string[];
  /** [numItems + 1]: the token of item id i at index i; index 0 is `[PAD]`. */
  itemTokens: string[];
  userIdByToken: Map<string, number>;
  itemIdByToken: Map<string, number>;
  /** The `.inter` header. */
  interFields: RecBoleField[];
  /** The `.item` header without the item column (empty without an `.item` file). */
  itemFields: RecBoleField[];
  /** [numItems + 1]: item i's fields by name; index 0, and items without an `.item` row, are null. */
  items: (Record<string, RecBoleValue> | null)[];
  /** sha256 of the `.item` file's bytes (null without one). */
  itemSha256: string | null;
  /** `.item` rows whose item never occurs in the `.inter` file. */
  unusedItemRows: number;
}

const TYPES: readonly RecBoleType[] = ['token', 'token_seq', 'float', 'float_seq'];
const PAD = '[PAD]';
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

const shown = (text: string): string => JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);

function parseHeader(text: string, file: string): RecBoleField[] {
  const fields: RecBoleField[] = [];
  const seen = new Set<string>();
  for (const [i, column] of text.split('\t').entries()) {
    const colon = column.lastIndexOf(':');
    const name = colon > 0 ? column.slice(0, colon) : '';
    const type = column.slice(colon + 1).trim();
    if (colon <= 0) throw new DataFormatError(file, 1, `header column ${i + 1} (${shown(column)}) is not "name:type"`);
    if (!(TYPES as readonly string[]).includes(type)) {
      throw new DataFormatError(file, 1, `header column ${i + 1} (${shown(column)}) has unknown type ${shown(type)} (expected one of ${TYPES.join(', ')})`);
    }
    if (seen.has(name)) throw new DataFormatError(file, 1, `header column ${i + 1}: "${name}" appears twice`);
    seen.add(name);
    fields.push({ name, type: type as RecBoleType });
  }
  return fields;
}

function column(fields: RecBoleField[], name: string, type: RecBoleType, file: string): number {
  const index = fields.findIndex((f) => f.name === name);
  if (index < 0) throw new DataFormatError(file, 1, `header has no "${name}:${type}" column (columns: ${fields.map((f) => `${f.name}:${f.type}`).join(', ')})`);
  if (fields[index]!.type !== type) throw new DataFormatError(file, 1, `header column "${name}" must be of type ${type}, not ${fields[index]!.type}`);
  return index;
}

function parseNumber(text: string, fail: (problem: string) => never, what: string): number {
  const trimmed = text.trim();
  const value = NUMBER.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isFinite(value)) return fail(`${what} ${shown(text)} is not a finite number`);
  return value;
}

function optionalName(value: unknown, name: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(name, 'a non-empty column name', value);
  return value;
}

/**
 * Reads a RecBole `.inter` file (and optionally its `.item` file), each streamed once.
 * @param inter path of the `.inter` file
 * @throws DataFormatError (rejection) on malformed content (file, line, problem); the file system's own
 *   error (e.g. ENOENT); CancelledError when `signal` aborts; InvalidArgumentError on bad arguments.
 */
export async function loadRecBole(inter: string, options: LoadRecBoleOptions = {}): Promise<RecBoleDataset> {
  if (typeof inter !== 'string' || inter.length === 0) throw new InvalidArgumentError('inter', 'a file path', inter);
  const o = requireObject(options, 'options');
  const itemFile = o.item;
  if (itemFile !== undefined && (typeof itemFile !== 'string' || itemFile.length === 0)) throw new InvalidArgumentError('options.item', 'a file path', itemFile);
  const userField = optionalName(o.userField, 'options.userField', 'user_id');
  const itemField = optionalName(o.itemField, 'options.itemField', 'item_id');
  const timeField = optionalName(o.timeField, 'options.timeField', 'timestamp');
  const signal = optionalSignal(o.signal, 'options.signal');
  const checkCancelled = (): void => {
    if (signal?.aborted) throw new CancelledError('loadRecBole was cancelled');
  };

  // .inter: intern user and item tokens in order of first appearance; keep three columns.
  const userIndex = new Map<string, number>();
  const userNames: string[] = [];
  const tokenIndex = new Map<string, number>();
  const tokenNames: string[] = [];
  const rowUser: number[] = [];
  const rowItem: number[] = [];
  const rowTime: number[] = [];
  let interFields: RecBoleField[] = [];
  let userColumn = 0;
  let itemColumn = 0;
  let timeColumn = 0;
  const reader = readHashedLines(inter);
  let lineNumber = 0;
  try {
    for await (const text of reader.lines) {
      lineNumber += 1;
      if ((lineNumber & 1023) === 0) checkCancelled();
      if (lineNumber === 1) {
        interFields = parseHeader(text, inter);
        userColumn = column(interFields, userField, 'token', inter);
        itemColumn = column(interFields, itemField, 'token', inter);
        timeColumn = column(interFields, timeField, 'float', inter);
        continue;
      }
      if (text.trim().length === 0) continue;
      const line = lineNumber;
      const fail = (problem: string): never => {
        throw new DataFormatError(inter, line, problem);
      };
      const cells = text.split('\t');
      if (cells.length !== interFields.length) fail(`has ${cells.length} columns but the header has ${interFields.length}`);
      const user = cells[userColumn]!;
      const item = cells[itemColumn]!;
      if (user.length === 0) fail(`empty ${userField}`);
      if (item.length === 0) fail(`empty ${itemField}`);
      const time = parseNumber(cells[timeColumn]!, fail, timeField);
      let u = userIndex.get(user);
      if (u === undefined) {
        u = userNames.length;
        userIndex.set(user, u);
        userNames.push(user);
      }
      let t = tokenIndex.get(item);
      if (t === undefined) {
        t = tokenNames.length;
        tokenIndex.set(item, t);
        tokenNames.push(item);
      }
      rowUser.push(u);
      rowItem.push(t);
      rowTime.push(time);
    }
  } finally {
    reader.close();
  }
  if (lineNumber === 0) throw new DataFormatError(inter, 1, 'empty file (expected a header line)');
  checkCancelled();

  // Users in first-appearance order; rows bucketed per user (file order), then stably sorted by time.
  const numUsers = userNames.length;
  const n = rowUser.length;
  const offsets = new Int32Array(numUsers + 1);
  for (const u of rowUser) offsets[u + 1] = offsets[u + 1]! + 1;
  for (let u = 0; u < numUsers; u += 1) offsets[u + 1] = offsets[u + 1]! + offsets[u]!;
  const fill = offsets.slice(0, numUsers);
  const order = new Int32Array(n);
  for (let r = 0; r < n; r += 1) {
    const u = rowUser[r]!;
    order[fill[u]!] = r;
    fill[u] = fill[u]! + 1;
  }
  const items = new Int32Array(n);
  const itemOfToken = new Int32Array(tokenNames.length);
  const itemTokens = [PAD];
  for (let u = 0; u < numUsers; u += 1) {
    const row = Array.from(order.subarray(offsets[u], offsets[u + 1]));
    row.sort((x, y) => rowTime[x]! - rowTime[y]!); // stable: equal times keep file order
    for (const [j, r] of row.entries()) {
      const t = rowItem[r]!;
      if (itemOfToken[t] === 0) {
        itemTokens.push(tokenNames[t]!);
        itemOfToken[t] = itemTokens.length - 1;
      }
      items[offsets[u]! + j] = itemOfToken[t]!;
    }
  }
  const numItems = itemTokens.length - 1;
  const itemIdByToken = new Map<string, number>();
  for (let i = 1; i <= numItems; i += 1) itemIdByToken.set(itemTokens[i]!, i);
  const userIdByToken = new Map<string, number>();
  for (let u = 0; u < numUsers; u += 1) userIdByToken.set(userNames[u]!, u + 1);
  const userIds = new Int32Array(numUsers);
  for (let u = 0; u < numUsers; u += 1) userIds[u] = u + 1;

  // .item: the features of items that occur in the interactions.
  const itemRecords: (Record<string, RecBoleValue> | null)[] = new Array<Record<string, RecBoleValue> | null>(numItems + 1).fill(null);
  let itemFields: RecBoleField[] = [];
  let itemSha256: string | null = null;
  let unusedItemRows = 0;
  if (itemFile !== undefined) {
    const file = itemFile;
    const itemReader = readHashedLines(file);
    const rowOf = new Map<string, number>();
    let fields: RecBoleField[] = [];
    let keyColumn = 0;
    lineNumber = 0;
    try {
      for await (const text of itemReader.lines) {
        lineNumber += 1;
        if ((lineNumber & 1023) === 0) checkCancelled();
        if (lineNumber === 1) {
          fields = parseHeader(text, file);
          keyColumn = column(fields, itemField, 'token', file);
          itemFields = fields.filter((_, i) => i !== keyColumn);
          continue;
        }
        if (text.trim().length === 0) continue;
        const line = lineNumber;
        const fail = (problem: string): never => {
          throw new DataFormatError(file, line, problem);
        };
        const cells = text.split('\t');
        if (cells.length !== fields.length) fail(`has ${cells.length} columns but the header has ${fields.length}`);
        const token = cells[keyColumn]!;
        if (token.length === 0) fail(`empty ${itemField}`);
        const earlier = rowOf.get(token);
        if (earlier !== undefined) fail(`${itemField} ${shown(token)} already appeared on line ${earlier}`);
        rowOf.set(token, line);
        const record: Record<string, RecBoleValue> = {};
        for (const [c, field] of fields.entries()) {
          if (c === keyColumn) continue;
          const cell = cells[c]!;
          const parts = (): string[] => cell.split(' ').filter((s) => s.length > 0);
          if (field.type === 'token') record[field.name] = cell;
          else if (field.type === 'token_seq') record[field.name] = parts();
          else if (field.type === 'float') record[field.name] = parseNumber(cell, fail, field.name);
          else record[field.name] = parts().map((s) => parseNumber(s, fail, `${field.name} element`));
        }
        const id = itemIdByToken.get(token);
        if (id === undefined) unusedItemRows += 1;
        else itemRecords[id] = record;
      }
    } finally {
      itemReader.close();
    }
    if (lineNumber === 0) throw new DataFormatError(file, 1, 'empty file (expected a header line)');
    itemSha256 = itemReader.sha256();
  }

  const sequences: Sequences = {
    source: inter,
    sha256: reader.sha256(),
    numUsers,
    numItems,
    distinctItems: numItems,
    numInteractions: n,
    userIds,
    offsets,
    items,
  };
  return {
    sequences,
    userTokens: [PAD, ...userNames],
    itemTokens,
    userIdByToken,
    itemIdByToken,
    interFields,
    itemFields,
    items: itemRecords,
    itemSha256,
    unusedItemRows,
  };
}
