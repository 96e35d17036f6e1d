/**
 * RecBole atomic files (.inter + .item) → Sequences: token → id rules, stable chronological order, item
 * fields by type, header and row errors (file + line), and a round trip through the splits and the
 * evaluator that gives the same result as the same data read by loadSequences.
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CancelledError, InvalidArgumentError } from '../../lib/errors';
import { loadRecBole } from '../../lib/data/recbole';
import { loadSequences, userItems } from '../../lib/data/sequences';
import { evaluationSplit, trainFrequency, trainingSamples } from '../../lib/data/splits';
import { evaluatePopularity } from '../../lib/evaluate/popularity';
import { dataFormatError } from '../support/dataFormat';

const fixtures = path.resolve(__dirname, '..', 'fixtures', 'data', 'recbole');
const inter = path.join(fixtures, 'mini.inter');
const item = path.join(fixtures, 'mini.item');

describe('data: RecBole atomic files', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-recbole-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  const rows = (data: { sequences: { numUsers: number } & Parameters<typeof userItems>[0] }): number[][] =>
    Array.from({ length: data.sequences.numUsers }, (_, u) => Array.from(userItems(data.sequences, u)));

  it('maps tokens to ids (users by first appearance, items by first appearance in the chronological sequences)', async () => {
    const data = await loadRecBole(inter, { item });
    // alice: i30@900 i10@1000 i20@1100 · bob: i20@500 i10@500 (tie: file order) i40@600 · carol: i40@1400 i30@1.5e3 · dave: i10@10
    assert.deepEqual(data.userTokens, ['[PAD]', 'alice', 'bob', 'carol', 'dave']);
    assert.deepEqual(data.itemTokens, ['[PAD]', 'i30', 'i10', 'i20', 'i40']);
    assert.deepEqual(rows(data), [[1, 2, 3], [3, 2, 4], [4, 1], [2]]);
    assert.equal(data.userIdByToken.get('carol'), 3);
    assert.equal(data.itemIdByToken.get('i40'), 4);
    const s = data.sequences;
    assert.deepEqual(
      [s.source, s.numUsers, s.numItems, s.distinctItems, s.numInteractions],
      [inter, 4, 4, 4, 9],
    );
    assert.deepEqual(s.userIds, Int32Array.from([1, 2, 3, 4]));
    assert.deepEqual(s.offsets, Int32Array.from([0, 3, 6, 8, 9]));
    assert.equal(s.sha256, createHash('sha256').update(fs.readFileSync(inter)).digest('hex'));
    assert.deepEqual(data.interFields.map((f) => `${f.name}:${f.type}`), ['user_id:token', 'item_id:token', 'rating:float', 'timestamp:float']);
  });

  it('reads .item fields by type; items without a row are null; unused rows are counted', async () => {
    const data = await loadRecBole(inter, { item });
    assert.deepEqual(data.itemFields.map((f) => f.name), ['title', 'brand', 'categories', 'price']);
    assert.equal(data.items.length, 5);
    assert.equal(data.items[0], null);
    assert.deepEqual(data.items[1], { title: ['Hair', 'Brush'], brand: '', categories: ['Beauty', 'Hair'], price: 7.25 });
    assert.deepEqual(data.items[2], { title: ['Rose', 'Face', 'Cream'], brand: 'Acme', categories: ['Beauty', 'Skin'], price: 12.5 });
    assert.equal(data.items[4], null); // i40 has no .item row
    assert.equal(data.unusedItemRows, 1); // i99
    assert.equal(data.itemSha256, createHash('sha256').update(fs.readFileSync(item)).digest('hex'));
    const bare = await loadRecBole(inter);
    assert.deepEqual([bare.items.every((x) => x === null), bare.itemFields, bare.itemSha256], [true, [], null]);
  });

  it('round trip: splits and the evaluator see the same data as loadSequences on the equivalent text file', async () => {
    const data = await loadRecBole(inter, { item });
    const text = rows(data).map((r, u) => `${u + 1} ${r.join(' ')}\n`).join('');
    const loaded = await loadSequences(write('mini.txt', text));
    for (const key of ['numUsers', 'numItems', 'distinctItems', 'numInteractions', 'userIds', 'offsets', 'items'] as const) {
      assert.deepEqual(data.sequences[key], loaded[key], key);
    }
    const test = evaluationSplit(data.sequences, 'test');
    assert.deepEqual([test.users, test.targets, test.inputItems, test.skippedUsers], [Int32Array.from([0, 1]), Int32Array.from([3, 4]), Int32Array.from([1, 2, 3, 2]), 2]);
    assert.deepEqual(trainFrequency(data.sequences), trainFrequency(loaded));
    assert.deepEqual(trainingSamples(data.sequences).targets, trainingSamples(loaded).targets);
    const [a, b] = await Promise.all([evaluatePopularity(data.sequences, { split: 'test' }), evaluatePopularity(loaded, { split: 'test' })]);
    assert.deepEqual(a.metrics, b.metrics);
    assert.equal(a.protocol.dataset.sha256, data.sequences.sha256);
  });

  it('accepts other column names, CRLF line ends and extra columns in any order', async () => {
    const file = write('renamed.inter', 'ts:float\tu:token\tx:token_seq\ti:token\r\n3\tU\ta b\tX\r\n1\tU\t\tY\r\n');
    const data = await loadRecBole(file, { userField: 'u', itemField: 'i', timeField: 'ts' });
    assert.deepEqual([data.itemTokens, rows(data)], [['[PAD]', 'Y', 'X'], [[1, 2]]]);
  });

  const header = 'user_id:token\titem_id:token\ttimestamp:float\n';
  const cases: [string, 'inter' | 'item', string, number, RegExp][] = [
    ['a missing user_id column', 'inter', 'item_id:token\ttimestamp:float\n', 1, /header has no "user_id:token" column \(columns: item_id:token, timestamp:float\)/],
    ['a missing timestamp column', 'inter', 'user_id:token\titem_id:token\n', 1, /header has no "timestamp:float" column/],
    ['an unknown type suffix', 'inter', 'user_id:token\titem_id:token\ttimestamp:float\tx:int\n', 1, /header column 4 \("x:int"\) has unknown type "int" \(expected one of token, token_seq, float, float_seq\)/],
    ['a column without a type', 'inter', 'user_id:token\titem_id\ttimestamp:float\n', 1, /header column 2 \("item_id"\) is not "name:type"/],
    ['a wrongly typed id column', 'inter', 'user_id:float\titem_id:token\ttimestamp:float\n', 1, /header column "user_id" must be of type token, not float/],
    ['a repeated column', 'inter', 'user_id:token\titem_id:token\ttimestamp:float\titem_id:token\n', 1, /"item_id" appears twice/],
    ['an empty file', 'inter', '', 1, /empty file/],
    ['too few columns', 'inter', `${header}a\ti\t1\n\na\ti\n`, 4, /has 2 columns but the header has 3/],
    ['too many columns', 'inter', `${header}a\ti\t1\t9\n`, 2, /has 4 columns but the header has 3/],
    ['a non-numeric timestamp', 'inter', `${header}a\ti\t1\nb\ti\t12:30\n`, 3, /timestamp "12:30" is not a finite number/],
    ['an empty timestamp', 'inter', `${header}a\ti\t\n`, 2, /timestamp "" is not a finite number/],
    ['an empty item token', 'inter', `${header}a\t\t1\n`, 2, /empty item_id/],
    ['a missing item_id column', 'item', 'title:token_seq\n', 1, /header has no "item_id:token" column/],
    ['a bad float', 'item', 'item_id:token\tprice:float\ni10\t1\ni20\tcheap\n', 3, /price "cheap" is not a finite number/],
    ['a bad float_seq element', 'item', 'item_id:token\temb:float_seq\ni10\t1 2 x\n', 2, /emb element "x" is not a finite number/],
    ['a repeated item row', 'item', 'item_id:token\ttitle:token_seq\ni10\ta\ni10\tb\n', 3, /item_id "i10" already appeared on line 2/],
    ['a short item row', 'item', 'item_id:token\ttitle:token_seq\ni10\n', 2, /has 1 columns but the header has 2/],
  ];
  for (const [name, which, text, lineNumber, problem] of cases) {
    it(`rejects ${name} (.${which}): DataFormatError with file and line ${lineNumber}`, async () => {
      const bad = write(`${name.replace(/ /g, '_')}.${which}`, text);
      const promise = which === 'inter' ? loadRecBole(bad) : loadRecBole(inter, { item: bad });
      await assert.rejects(promise, dataFormatError(bad, lineNumber, problem));
    });
  }

  it('validates its arguments and honours an AbortSignal', async () => {
    await assert.rejects(loadRecBole(''), InvalidArgumentError);
    await assert.rejects(loadRecBole(inter, { item: '' }), /for options\.item/);
    await assert.rejects(loadRecBole(inter, { userField: '' }), /for options\.userField/);
    await assert.rejects(loadRecBole(path.join(dir, 'missing.inter')), { code: 'ENOENT' });
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(loadRecBole(inter, { signal: controller.signal }), CancelledError);
  });
});
