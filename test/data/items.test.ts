/** The items.jsonl loader: content and normalization, every malformed-input error, and the real Beauty catalogue. */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { InvalidArgumentError } from '../../lib/errors';
import { itemInfo, loadItems } from '../../lib/data/items';
import { loadSequences } from '../../lib/data/sequences';
import { dataFormatError } from '../support/dataFormat';

const beautyDir = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'beauty');

describe('data: item metadata loader', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-items-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  const line = (o: unknown): string => `${JSON.stringify(o)}\n`;

  it('reads items in line order, normalizing categories to paths and a missing brand to null', async () => {
    const text =
      line({ id: 1, asin: 'A1', title: 'One', brand: 'B', categories: ['Makeup', 'Nails'] }) +
      '\r\n  \n' +
      line({ id: 2, asin: 'A2', title: '', brand: null, categories: [['Beauty', 'Skin'], ['Beauty']], extra: 5 }) +
      line({ id: 3, asin: 'A3', title: 'Three' });
    const file = write('ok.jsonl', text);
    const catalog = await loadItems(file);
    assert.equal(catalog.numItems, 3);
    assert.equal(catalog.items.length, 4);
    assert.equal(catalog.items[0], null);
    assert.deepEqual(itemInfo(catalog, 1), { id: 1, asin: 'A1', title: 'One', brand: 'B', categories: [['Makeup', 'Nails']] });
    assert.deepEqual(itemInfo(catalog, 2), { id: 2, asin: 'A2', title: '', brand: null, categories: [['Beauty', 'Skin'], ['Beauty']] });
    assert.deepEqual(itemInfo(catalog, 3), { id: 3, asin: 'A3', title: 'Three', brand: null, categories: [] });
    assert.equal(catalog.idByAsin.get('A2'), 2);
    assert.equal(catalog.sha256, createHash('sha256').update(text).digest('hex'));
    assert.throws(() => itemInfo(catalog, 0), InvalidArgumentError);
    assert.throws(() => itemInfo(catalog, 4), /Expected an item id in \[1, 3\] for id but received 4/);
  });

  it('ids may be left out entirely (then they are the line order)', async () => {
    const catalog = await loadItems(write('noid.jsonl', line({ asin: 'X', title: 't' }) + line({ asin: 'Y', title: 'u' })));
    assert.deepEqual([itemInfo(catalog, 2).asin, catalog.numItems], ['Y', 2]);
  });

  const ok = { asin: 'A1', title: 'One', brand: null, categories: ['C'] };
  const cases: [string, string, number, RegExp][] = [
    ['broken JSON', line({ ...ok, id: 1 }) + '{"id": 2, "asin": \n', 2, /not valid JSON/],
    ['not an object', `${line({ ...ok, id: 1 })}[1, 2]\n`, 2, /not a JSON object but \[1,2\]/],
    ['id out of order', line({ ...ok, id: 1 }) + line({ ...ok, asin: 'A2', id: 3 }), 2, /"id" is 3 but this is item 2/],
    ['id as string', line({ ...ok, id: '1' }), 1, /"id" is "1" but this is item 1/],
    ['id missing later', line({ ...ok, id: 1 }) + line({ ...ok, asin: 'A2' }), 2, /has no "id"/],
    ['id appearing later', line(ok) + line({ ...ok, asin: 'A2', id: 2 }), 2, /has an "id" but the first item has none/],
    ['missing asin', line({ title: 't' }), 1, /"asin" must be a non-empty string, not undefined/],
    ['empty asin', line({ ...ok, asin: '' }), 1, /"asin" must be a non-empty string, not ""/],
    ['duplicate asin', line(ok) + '\n' + line(ok), 3, /asin "A1" already appeared on line 1/],
    ['missing title', line({ asin: 'A' }), 1, /"title" must be a string, not undefined/],
    ['numeric brand', line({ ...ok, brand: 7 }), 1, /"brand" must be a string or null, not 7/],
    ['categories string', line({ ...ok, categories: 'Makeup' }), 1, /"categories" must be an array/],
    ['categories mixed', line({ ...ok, categories: ['a', ['b']] }), 1, /"categories" must be an array of strings or of arrays of strings \(element 0 is "a"\)/],
    ['categories number', line({ ...ok, categories: [['a'], 3] }), 1, /element 1 is 3/],
  ];
  for (const [name, text, lineNumber, problem] of cases) {
    it(`rejects ${name}: DataFormatError with file, line ${lineNumber} and the problem`, async () => {
      const file = write(`${name.replace(/ /g, '_')}.jsonl`, text);
      await assert.rejects(loadItems(file), dataFormatError(file, lineNumber, problem));
    });
  }

  it('a missing file rejects with the file system error; a cancelled read with CancelledError', async () => {
    await assert.rejects(loadItems(path.join(dir, 'missing.jsonl')), { code: 'ENOENT' });
    await assert.rejects(loadItems(write('c.jsonl', line(ok)), { signal: AbortSignal.abort() }), { code: 'ERR_MMESID_CANCELLED' });
    await assert.rejects(loadItems(''), InvalidArgumentError);
  });

  it('Amazon Beauty: 12,086 items with explicit ids, one-to-one ASINs, covering every item of the sequences', async () => {
    const file = path.join(beautyDir, 'items.jsonl');
    assert.ok(fs.existsSync(file), `the shared Beauty data is missing: ${file} (see ../shared/data/README.md)`);
    const catalog = await loadItems(file);
    assert.equal(catalog.numItems, 12086);
    assert.equal(catalog.idByAsin.size, 12086);
    const first = itemInfo(catalog, 1);
    assert.deepEqual(first, { id: 1, asin: 'B004756YJA', title: 'OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce', brand: 'OPI', categories: [['Makeup', 'Nails', 'Nail Polish']] });
    assert.equal(itemInfo(catalog, 3).brand, null);
    let withBrand = 0;
    for (let id = 1; id <= catalog.numItems; id += 1) {
      const item = itemInfo(catalog, id);
      assert.ok(item.title.length > 0, `item ${id} has an empty title`);
      if (item.brand !== null) withBrand += 1;
    }
    assert.ok(withBrand > 0 && withBrand < 12086);
    const sequences = await loadSequences(path.join(beautyDir, 'sequences.txt'));
    assert.equal(sequences.numItems, catalog.numItems);
  });
});
