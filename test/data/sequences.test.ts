/** The sequence-file loader: content, fingerprint, every malformed-input error, and the real Beauty counts. */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadSequences, saveSequences, sequenceStats, userItems } from '../../lib/data/sequences';
import { generateSynthetic } from '../../lib/data/synthetic';
import { InvalidArgumentError } from '../../lib/errors';
import { dataFormatError } from '../support/dataFormat';

const beauty = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'beauty', 'sequences.txt');

describe('data: sequence loader', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-seq-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };

  it('reads users into CSR, skipping blank lines, accepting CRLF and tabs, hashing the bytes', async () => {
    const text = '1 3 1 2\r\n\n  \n7\t5  4\n2 9\n\n';
    const file = write('ok.txt', text);
    const s = await loadSequences(file);
    assert.equal(s.numUsers, 3);
    assert.equal(s.numItems, 9);
    assert.equal(s.numInteractions, 6);
    assert.equal(s.distinctItems, 6);
    assert.deepEqual(Array.from(s.userIds), [1, 7, 2]);
    assert.deepEqual(Array.from(s.offsets), [0, 3, 5, 6]);
    assert.deepEqual(Array.from(userItems(s, 1)), [5, 4]);
    assert.equal(s.sha256, createHash('sha256').update(text).digest('hex'));
    const stats = sequenceStats(s);
    assert.deepEqual([stats.users, stats.items, stats.interactions, stats.minLength, stats.maxLength], [3, 9, 6, 1, 3]);
  });

  it('an empty file has no users', async () => {
    const s = await loadSequences(write('empty.txt', ''));
    assert.deepEqual([s.numUsers, s.numItems, s.numInteractions, s.offsets.length], [0, 0, 0, 1]);
  });

  const cases: [string, string, number, RegExp][] = [
    ['word', '1 2 3\n2 4 x5 6\n', 2, /token 3 \("x5", the item id\) is not an integer id/],
    ['zero', '1 2 0\n', 1, /token 3 \("0", the item id\)/],
    ['negative', '1 2 3\n\n3 -4\n', 3, /token 2 \("-4", the item id\)/],
    ['decimal', '1 2.0\n', 1, /token 2 \("2\.0"/],
    ['huge', '1 2147483648\n', 1, /token 2 \("2147483648"/],
    ['bad user', 'u1 2 3\n', 1, /token 1 \("u1", the user id\)/],
    ['no items', '1 2 3\n4\n', 2, /user 4 has no items/],
    ['duplicate user', '1 2 3\n2 5\n1 7\n', 3, /user 1 already appeared on line 1/],
  ];
  for (const [name, text, line, problem] of cases) {
    it(`rejects ${name}: DataFormatError with file, line ${line} and the problem`, async () => {
      const file = write(`${name.replace(/ /g, '_')}.txt`, text);
      await assert.rejects(loadSequences(file), dataFormatError(file, line, problem));
    });
  }

  it('a missing file rejects with the file system error', async () => {
    await assert.rejects(loadSequences(path.join(dir, 'missing.txt')), { code: 'ENOENT' });
  });

  it('Amazon Beauty 5-core: 22,332 users, 12,086 items, 198,215 interactions (the paper\'s Table 1)', async () => {
    assert.ok(fs.existsSync(beauty), `the shared Beauty data is missing: ${beauty} (see ../shared/data/README.md)`);
    const stats = sequenceStats(await loadSequences(beauty));
    assert.equal(stats.users, 22332);
    assert.equal(stats.items, 12086);
    assert.equal(stats.distinctItems, 12086);
    assert.equal(stats.interactions, 198215);
    assert.equal(stats.minLength, 5);
  });

  it('saveSequences writes what loadSequences reads back (users, order, items, sha256), atomically', async () => {
    const { sequences } = generateSynthetic({ seed: 3, numUsers: 50, numItems: 40 });
    const file = path.join(dir, 'synthetic.txt');
    const sha256 = await saveSequences(file, sequences);
    const back = await loadSequences(file);
    assert.equal(back.sha256, sha256);
    assert.equal(createHash('sha256').update(fs.readFileSync(file)).digest('hex'), sha256);
    assert.deepEqual(Array.from(back.userIds), Array.from(sequences.userIds));
    assert.deepEqual(Array.from(back.offsets), Array.from(sequences.offsets));
    assert.deepEqual(Array.from(back.items), Array.from(sequences.items));
    const broken = { ...sequences, items: sequences.items.slice() };
    broken.items[7] = 0;
    await assert.rejects(saveSequences(file, broken), (e: unknown) => e instanceof InvalidArgumentError && /sequences\.items\[7\]/.test(e.message));
    assert.equal((await loadSequences(file)).sha256, sha256, 'a failed save must leave the old file');
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  });
});
