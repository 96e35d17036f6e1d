/**
 * Amazon review dumps → sequences.txt + items.jsonl + id_map.json: the title filter, iterative k-core,
 * chronological order with stable ties, deterministic ids, gzip ≡ plain, malformed input (file + line)
 * and atomic outputs (nothing written on failure).
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import { CancelledError, DataFormatError, InvalidArgumentError } from '../../lib/errors';
import { loadAmazonIdMap, prepareAmazon } from '../../lib/data/amazon';
import { itemInfo, loadItems } from '../../lib/data/items';
import { loadSequences } from '../../lib/data/sequences';
import { dataFormatError } from '../support/dataFormat';

const fixtures = path.resolve(__dirname, '..', 'fixtures', 'data', 'amazon');
const reviews = path.join(fixtures, 'reviews.json');
const meta = path.join(fixtures, 'meta.json');

describe('data: Amazon review dumps', () => {
  let dir: string;
  let count = 0;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-amazon-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fresh = (): string => path.join(dir, `out${++count}`);
  const write = (name: string, data: string | Buffer): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, data);
    return file;
  };
  const read = (out: string): Record<string, string> =>
    Object.fromEntries(['sequences.txt', 'items.jsonl', 'id_map.json'].map((f) => [f, fs.readFileSync(path.join(out, f), 'utf8')]));

  it('k-core iterates to the fixed point: a dropped user drops an item, which drops another user, …', async () => {
    // k = 2. Round 1 removes uE (1 item); then item D has 1 user; then uD has 1 item; then item C has
    // 1 user; then uC has 1 item; round 6 removes nothing. A single pass would have kept uC and uD.
    const out = fresh();
    const result = await prepareAmazon({ reviews, metadata: meta, outDir: out, k: 2 });
    assert.deepEqual(result.stats, {
      reviews: 13,
      metadataRecords: 8,
      droppedNoTitle: 3, // BNOTITLE00 (no title), BNOMETA000 (no record), BBLANK0000 (blank title)
      droppedDuplicates: 1, // uA's second review of B000000002
      droppedKCore: 5,
      kCoreRounds: 6,
      users: 2,
      items: 2,
      interactions: 4,
    });
    // Users by first appearance (uB line 1, uA line 2); uB's two reviews share a time and keep file order
    // (…002 before …001, the reverse of sorting by asin); uA's are sorted by time (…001 at 100, …002 at 300).
    // Items by first appearance in that order: B000000002 → 1, B000000001 → 2.
    const files = read(out);
    assert.equal(files['sequences.txt'], '1 1 2\n2 2 1\n');
    const map = await loadAmazonIdMap(result.files.idMap);
    assert.deepEqual(map.users, ['uB', 'uA']);
    assert.deepEqual(map.items, ['B000000002', 'B000000001']);
    assert.equal(map.k, 2);
    assert.equal(map.sources.reviews.sha256, createHash('sha256').update(fs.readFileSync(reviews)).digest('hex'));
    assert.deepEqual(fs.readdirSync(out).sort(), ['id_map.json', 'items.jsonl', 'sequences.txt']);

    // The outputs are what the loaders read, and the returned Sequences is exactly loadSequences' result.
    assert.deepEqual(await loadSequences(result.files.sequences), result.sequences);
    const catalog = await loadItems(result.files.items);
    assert.equal(catalog.numItems, 2);
    assert.deepEqual(itemInfo(catalog, 1), { id: 1, asin: 'B000000002', title: 'Item A', brand: 'Ay', categories: [] });
    assert.deepEqual(itemInfo(catalog, 2), { id: 2, asin: 'B000000001', title: 'Item B é', brand: null, categories: [['Beauty', 'Makeup', 'Eyes']] });
  });

  it('k = 1 keeps every titled interaction, ordered by time per user, ids by first appearance', async () => {
    const result = await prepareAmazon({ reviews, metadata: meta, outDir: fresh(), k: 1 });
    assert.equal(result.stats.kCoreRounds, 1);
    // uB: …002@200, …001@200 (tie, file order) · uA: …001@100, …002@300 · uE: …004@50 · uC: …001@10, …003@20 · uD: …003@30, …004@40
    assert.equal(fs.readFileSync(result.files.sequences, 'utf8'), '1 1 2\n2 2 1\n3 3\n4 2 4\n5 4 3\n');
    const map = await loadAmazonIdMap(result.files.idMap);
    assert.deepEqual(map.users, ['uB', 'uA', 'uE', 'uC', 'uD']);
    assert.deepEqual(map.items, ['B000000002', 'B000000001', 'B000000004', 'B000000003']);
    const catalog = await loadItems(result.files.items);
    assert.deepEqual(itemInfo(catalog, 4).categories, [['Beauty', 'Skin Care'], ['Beauty']]);
    assert.equal(itemInfo(catalog, 4).brand, 'Cee');
  });

  it("duplicates: 'keep' keeps repeated (user, item) pairs; 'first' keeps the earliest in time", async () => {
    const kept = await prepareAmazon({ reviews, metadata: meta, outDir: fresh(), k: 1, duplicates: 'keep' });
    assert.equal(kept.stats.droppedDuplicates, 0);
    assert.match(fs.readFileSync(kept.files.sequences, 'utf8'), /^2 2 1 1$/m);
    const text =
      `${JSON.stringify({ reviewerID: 'u', asin: 'B000000001', unixReviewTime: 9 })}\n` +
      `${JSON.stringify({ reviewerID: 'u', asin: 'B000000002', unixReviewTime: 5 })}\n` +
      `${JSON.stringify({ reviewerID: 'u', asin: 'B000000001', unixReviewTime: 1 })}\n`;
    const first = await prepareAmazon({ reviews: write('dup.json', text), metadata: meta, outDir: fresh(), k: 1 });
    assert.equal(first.stats.droppedDuplicates, 1);
    assert.equal(fs.readFileSync(first.files.sequences, 'utf8'), '1 1 2\n'); // …001@1 then …002@5
  });

  it('is deterministic, and gzip inputs (detected by magic bytes, any name) give identical outputs', async () => {
    const plainA = fresh();
    const plainB = fresh();
    const gz = fresh();
    await prepareAmazon({ reviews, metadata: meta, outDir: plainA, k: 1 });
    await prepareAmazon({ reviews, metadata: meta, outDir: plainB, k: 1 });
    // Reviews as two concatenated gzip members, metadata gzipped under a name without .gz.
    const bytes = fs.readFileSync(reviews);
    const half = bytes.indexOf('\n', bytes.length >> 1) + 1;
    const gzReviews = write('reviews.json.gz', Buffer.concat([zlib.gzipSync(bytes.subarray(0, half)), zlib.gzipSync(bytes.subarray(half))]));
    const gzMeta = write('meta-compressed.json', zlib.gzipSync(fs.readFileSync(meta)));
    const result = await prepareAmazon({ reviews: gzReviews, metadata: gzMeta, outDir: gz, k: 1 });
    const a = read(plainA);
    assert.deepEqual(read(plainB), a);
    const g = read(gz);
    assert.equal(g['sequences.txt'], a['sequences.txt']);
    assert.equal(g['items.jsonl'], a['items.jsonl']);
    const [mapA, mapG] = [JSON.parse(a['id_map.json']!), JSON.parse(g['id_map.json']!)] as Record<string, unknown>[];
    assert.deepEqual([mapG!.users, mapG!.items], [mapA!.users, mapA!.items]);
    // The recorded sha256 is of the bytes as stored (compressed).
    assert.equal((mapG!.sources as { reviews: { sha256: string } }).reviews.sha256, createHash('sha256').update(fs.readFileSync(gzReviews)).digest('hex'));
    assert.equal(result.sequences.sha256, createHash('sha256').update(a['sequences.txt']!).digest('hex'));
  });

  it('reads 2018-style metadata ("category", one path; blank brand → null) and CRLF line ends', async () => {
    const crlf = write('reviews-crlf.json', fs.readFileSync(reviews, 'utf8').replace(/\n/g, '\r\n'));
    const result = await prepareAmazon({ reviews: crlf, metadata: path.join(fixtures, 'meta_2018.json'), outDir: fresh(), k: 1 });
    const catalog = await loadItems(result.files.items);
    const byAsin = (asin: string) => itemInfo(catalog, catalog.idByAsin.get(asin)!);
    assert.deepEqual(byAsin('B000000003'), { id: 4, asin: 'B000000003', title: 'Item C', brand: 'Cee', categories: [['Beauty', 'Skin Care']] });
    assert.deepEqual(byAsin('B000000001').brand, null);
    assert.deepEqual(byAsin('B000000001').categories, []);
    assert.equal(fs.readFileSync(result.files.sequences, 'utf8'), '1 1 2\n2 2 1\n3 3\n4 2 4\n5 4 3\n');
  });

  const good = JSON.stringify({ reviewerID: 'u1', asin: 'B000000001', unixReviewTime: 1 });
  const cases: [string, 'reviews' | 'metadata', string, number, RegExp][] = [
    ['broken JSON', 'reviews', `${good}\n${good}\n{"reviewerID": "u2", "asin": \n${good}\n`, 3, /not valid JSON/],
    ['an array line', 'reviews', `${good}\n[1, 2]\n`, 2, /not a JSON object but \[1,2\]/],
    ['missing reviewerID', 'reviews', `${good}\n\n{"asin": "B000000001", "unixReviewTime": 1}\n`, 3, /"reviewerID" must be a non-empty string, not undefined/],
    ['empty asin', 'reviews', `{"reviewerID": "u", "asin": "", "unixReviewTime": 1}\n`, 1, /"asin" must be a non-empty string, not ""/],
    ['string time', 'reviews', `${good}\n{"reviewerID": "u", "asin": "B000000001", "unixReviewTime": "12"}\n`, 2, /"unixReviewTime" must be a non-negative integer \(seconds\), not "12"/],
    ['fractional time', 'reviews', `{"reviewerID": "u", "asin": "B000000001", "unixReviewTime": 1.5}\n`, 1, /not 1\.5/],
    [
      'a Python dict literal',
      'metadata',
      `{"asin": "B000000001", "title": "t"}\n{'asin': 'B000000002', 'title': "Olay's cream", 'categories': [['Beauty']]}\n`,
      2,
      /Python dict literal \(single-quoted strings\), not JSON.*convert the file to JSON lines first/,
    ],
    ['numeric title', 'metadata', `{"asin": "B000000001", "title": 7}\n`, 1, /"title" must be a string or null, not 7/],
    ['numeric brand', 'metadata', `{"asin": "B000000001", "title": "t", "brand": 3}\n`, 1, /"brand" must be a string or null, not 3/],
    ['string categories', 'metadata', `{"asin": "B000000001", "title": "t", "categories": "Beauty"}\n`, 1, /"categories" must be an array, not "Beauty"/],
    ['mixed category', 'metadata', `{"asin": "B000000001", "title": "t", "category": ["a", ["b"]]}\n`, 1, /"category" must be an array of strings or of arrays of strings/],
    ['missing asin', 'metadata', `{"asin": "B000000001", "title": "t"}\n{"title": "t"}\n`, 2, /"asin" must be a non-empty string, not undefined/],
  ];
  for (const [name, which, text, lineNumber, problem] of cases) {
    it(`rejects ${name} in the ${which} file: DataFormatError with file and line ${lineNumber}, no output written`, async () => {
      const bad = write(`${name.replace(/ /g, '_')}.json`, text);
      const out = fresh();
      const files = which === 'reviews' ? { reviews: bad, metadata: meta } : { reviews, metadata: bad };
      await assert.rejects(prepareAmazon({ ...files, outDir: out, k: 1 }), dataFormatError(bad, lineNumber, problem));
      assert.equal(fs.existsSync(out), false);
    });
  }

  it('a malformed line mid-file leaves an earlier output untouched and no temporary file behind', async () => {
    const out = fresh();
    await prepareAmazon({ reviews, metadata: meta, outDir: out, k: 1 });
    const before = read(out);
    const lines = fs.readFileSync(reviews, 'utf8').split('\n');
    lines.splice(6, 0, '{"reviewerID": "uX", "asin": "B000000001", "unixReviewTime": -1}');
    const bad = write('bad-mid.json.gz', zlib.gzipSync(lines.join('\n')));
    await assert.rejects(prepareAmazon({ reviews: bad, metadata: meta, outDir: out, k: 1 }), /bad-mid\.json\.gz:7: "unixReviewTime" must be a non-negative integer/);
    assert.deepEqual(read(out), before);
    assert.deepEqual(fs.readdirSync(out).sort(), ['id_map.json', 'items.jsonl', 'sequences.txt']);
  });

  it('corrupt gzip is a DataFormatError at a byte offset; cancellation writes nothing', async () => {
    const gz = zlib.gzipSync(fs.readFileSync(reviews));
    gz[gz.length - 6] = gz[gz.length - 6]! ^ 0xff; // breaks the CRC-32 trailer
    const bad = write('corrupt.json.gz', gz);
    const out = fresh();
    await assert.rejects(prepareAmazon({ reviews: bad, metadata: meta, outDir: out }), (e: unknown) => {
      assert.ok(e instanceof DataFormatError, String(e));
      assert.match(e.message, /corrupt\.json\.gz: byte \d+: corrupt gzip data/);
      return true;
    });
    assert.equal(fs.existsSync(out), false);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(prepareAmazon({ reviews, metadata: meta, outDir: out, signal: controller.signal }), CancelledError);
    assert.equal(fs.existsSync(out), false);
  });

  it('validates its options', async () => {
    await assert.rejects(prepareAmazon({ reviews, metadata: meta, outDir: fresh(), k: 0 }), InvalidArgumentError);
    await assert.rejects(prepareAmazon({ reviews: '', metadata: meta, outDir: fresh() }), /for options\.reviews/);
    await assert.rejects(
      prepareAmazon({ reviews, metadata: meta, outDir: fresh(), duplicates: 'last' as 'first' }),
      /Expected 'first' or 'keep' for options\.duplicates/,
    );
    await assert.rejects(prepareAmazon({ reviews: path.join(dir, 'missing.json'), metadata: meta, outDir: fresh() }), { code: 'ENOENT' });
  });
});
