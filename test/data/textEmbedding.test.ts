/**
 * Item text embeddings without a pretrained model: the tokenizer and TF-IDF against hand computations,
 * the randomized SVD against ml-matrix's exact SVD, determinism, and on the real Beauty catalogue that
 * items of one brand lie closer together than random pairs; plus `mmesid embed-text` as a child process.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Matrix, SingularValueDecomposition } from 'ml-matrix';

import { loadNpy } from '../../lib/data/embeddings';
import { loadItems } from '../../lib/data/items';
import type { ItemCatalog, ItemInfo } from '../../lib/data/items';
import { buildTfidf, embedItemText, itemDocument, randomizedSvd } from '../../lib/data/textEmbedding';
import type { CsrMatrix, TextEmbedding } from '../../lib/data/textEmbedding';
import { CancelledError, InvalidArgumentError } from '../../lib/errors';
import { Rng } from '../support/random';

const root = path.resolve(__dirname, '..', '..');
const beautyItems = path.resolve(root, '..', 'shared', 'data', 'beauty', 'items.jsonl');

function catalogOf(items: Omit<ItemInfo, 'id'>[]): ItemCatalog {
  const list: (ItemInfo | null)[] = [null, ...items.map((item, i) => ({ ...item, id: i + 1 }))];
  return { source: 'memory', sha256: '', numItems: items.length, items: list, idByAsin: new Map(items.map((item, i) => [item.asin, i + 1])) };
}

function csrOf(dense: number[][]): CsrMatrix {
  const indptr = [0];
  const indices: number[] = [];
  const data: number[] = [];
  for (const row of dense) {
    row.forEach((v, j) => {
      if (v !== 0) {
        indices.push(j);
        data.push(v);
      }
    });
    indptr.push(indices.length);
  }
  return { rows: dense.length, cols: dense[0]!.length, indptr: Int32Array.from(indptr), indices: Int32Array.from(indices), data: Float64Array.from(data) };
}

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function cosine(data: Float32Array, dim: number, a: number, b: number): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let c = 0; c < dim; c += 1) {
    const x = data[a * dim + c]!;
    const y = data[b * dim + c]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

describe('data: text embeddings (TF-IDF + randomized SVD)', function () {
  this.timeout(120_000);

  it('tokenizes title words, one brand term and one term per category name (lower-cased, NFKC, letter/digit runs)', () => {
    const item: ItemInfo = {
      id: 1,
      asin: 'A',
      title: 'OPI Nail Lacquer, 0.5-Fluid Ounce — Ｂｌｕｅ Crème',
      brand: 'Maybelline New York',
      categories: [['Makeup', 'Nails', 'Nail Polish'], ['Makeup', 'Nails']],
    };
    assert.deepEqual(itemDocument(item), [
      'opi', 'nail', 'lacquer', '0', '5', 'fluid', 'ounce', 'blue', 'crème',
      'brand:maybelline_new_york', 'cat:makeup', 'cat:nails', 'cat:nail_polish',
    ]);
    assert.deepEqual(itemDocument({ ...item, title: 'x', brand: null }, false), ['x', 'makeup', 'nails', 'nail', 'polish', 'makeup', 'nails']);
  });

  it('TF-IDF: vocabulary of terms with df >= minDf, sorted; smooth idf; raw or sublinear tf; L2 rows', () => {
    const catalog = catalogOf([
      { asin: 'a', title: 'red red polish', brand: 'X', categories: [] },
      { asin: 'b', title: 'red lipstick', brand: 'X', categories: [] },
      { asin: 'c', title: 'blue polish unique', brand: null, categories: [] },
    ]);
    const { vocabulary, matrix, idf } = buildTfidf(catalog);
    assert.deepEqual(vocabulary, ['brand:x', 'polish', 'red']);
    const idf2 = Math.log(4 / 3) + 1;
    assert.ok(Array.from(idf).every((v) => Math.abs(v - idf2) < 1e-15));
    assert.deepEqual(Array.from(matrix.indptr), [0, 3, 5, 6]);
    assert.deepEqual(Array.from(matrix.indices), [0, 1, 2, 0, 2, 1]);
    // item 1: counts (1, 1, 2) with equal idf → (1, 1, 2) / √6
    const r6 = Math.sqrt(6);
    [1 / r6, 1 / r6, 2 / r6, Math.SQRT1_2, Math.SQRT1_2, 1].forEach((v, e) => assert.ok(Math.abs(matrix.data[e]! - v) < 1e-15));
    const sub = buildTfidf(catalog, { sublinearTf: true, minDf: 1 });
    assert.equal(sub.vocabulary.length, 6);
    const red = sub.vocabulary.indexOf('red');
    const row0 = Array.from({ length: 3 }, (_, e) => [sub.matrix.indices[e]!, sub.matrix.data[e]!] as const);
    const norm = Math.hypot(...row0.map(([, v]) => v));
    assert.ok(Math.abs(norm - 1) < 1e-15);
    const redIdf = Math.log(4 / 3) + 1;
    const polishIdf = Math.log(4 / 3) + 1;
    const brandIdf = Math.log(4 / 3) + 1;
    const expectedRed = ((1 + Math.log(2)) * redIdf) / Math.hypot((1 + Math.log(2)) * redIdf, polishIdf, brandIdf);
    assert.ok(Math.abs(row0.find(([j]) => j === red)![1] - expectedRed) < 1e-15);
  });

  it('randomized SVD: singular values of a small matrix match the exact SVD (ml-matrix) to 1e-4 relative', async () => {
    const rng = new Rng(11);
    // 40 x 30, rank-ish structure with decaying spectrum plus sparsity
    const dense = Array.from({ length: 40 }, () => Array.from({ length: 30 }, () => 0));
    for (let t = 0; t < 8; t += 1) {
      const u = Array.from({ length: 40 }, () => rng.normal());
      const v = Array.from({ length: 30 }, () => rng.normal());
      for (let i = 0; i < 40; i += 1) for (let j = 0; j < 30; j += 1) dense[i]![j]! += 2 ** -t * u[i]! * v[j]!;
    }
    for (let i = 0; i < 40; i += 1) for (let j = 0; j < 30; j += 1) if (rng.next() < 0.3) dense[i]![j] = 0;
    const exact = new SingularValueDecomposition(new Matrix(dense), { autoTranspose: true }).diagonal;
    const rank = 6;
    const result = await randomizedSvd(csrOf(dense), rank, { seed: 5, powerIterations: 4 });
    for (let c = 0; c < rank; c += 1) {
      const rel = Math.abs(result.singularValues[c]! - exact[c]!) / exact[c]!;
      assert.ok(rel <= 1e-4, `σ${c}: ${result.singularValues[c]} vs exact ${exact[c]} (rel ${rel})`);
    }
    // U·Σ columns: norms are the singular values; the largest-|·| entry of each is positive
    for (let c = 0; c < rank; c += 1) {
      let norm = 0;
      let best = 0;
      for (let r = 0; r < 40; r += 1) {
        const v = result.transformed[r * rank + c]!;
        norm += v * v;
        if (Math.abs(v) > Math.abs(result.transformed[best * rank + c]!)) best = r;
      }
      assert.ok(Math.abs(Math.sqrt(norm) - result.singularValues[c]!) <= 1e-9 * result.singularValues[c]!);
      assert.ok(result.transformed[best * rank + c]! > 0);
    }
  });

  it('rejects bad arguments and honours cancellation', async () => {
    const catalog = catalogOf([
      { asin: 'a', title: 'red polish', brand: null, categories: [] },
      { asin: 'b', title: 'red polish', brand: null, categories: [] },
    ]);
    await assert.rejects(embedItemText(catalog, { dim: 0 }), InvalidArgumentError);
    await assert.rejects(embedItemText(catalog, { dim: 3 }), /Expected an integer in \[1, 2\] for options.dim/);
    await assert.rejects(embedItemText(catalog, { dim: 2, minDf: 1, seed: -1 }), /options.seed/);
    // vocabulary is {polish, red}: dim 2 is the most it allows
    await assert.rejects(embedItemText(catalogOf(Array.from({ length: 3 }, (_, i) => ({ asin: `${i}`, title: 'red polish', brand: null, categories: [] }))), { dim: 3 }), /vocabulary size/);
    await assert.rejects(randomizedSvd(csrOf([[1, 0], [0, 1]]), 3), /for rank/);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(embedItemText(catalog, { dim: 1, signal: ac.signal }), CancelledError);
  });

  describe('on a 2,000-item slice of Beauty', () => {
    let catalog: ItemCatalog;
    before(async () => {
      const full = await loadItems(beautyItems);
      catalog = { ...full, numItems: 2000, items: full.items.slice(0, 2001) };
    });

    it('same seed → identical bytes; row 0 zeros; shape [items + 1, D]; finite', async () => {
      const a = await embedItemText(catalog, { dim: 24, seed: 9 });
      const b = await embedItemText(catalog, { dim: 24, seed: 9 });
      assert.equal(a.rows, 2001);
      assert.equal(a.dim, 24);
      assert.equal(a.data.length, 2001 * 24);
      assert.ok(bytes(a.data).equals(bytes(b.data)));
      assert.ok(a.data.subarray(0, 24).every((v) => v === 0));
      assert.ok(a.data.every((v) => Number.isFinite(v)));
      assert.ok(a.data.subarray(24).some((v) => v !== 0));
      assert.deepEqual(a.explainedVarianceRatio, b.explainedVarianceRatio);
      assert.ok(a.explainedVarianceRatio.every((v) => v > 0 && v < 1));
    });

    it('another seed differs only by the randomized error: leading singular values agree to 1e-3', async () => {
      const a = await embedItemText(catalog, { dim: 24, seed: 1 });
      const b = await embedItemText(catalog, { dim: 24, seed: 2 });
      assert.ok(!bytes(a.data).equals(bytes(b.data)));
      for (let c = 0; c < 8; c += 1) {
        const rel = Math.abs(a.singularValues[c]! - b.singularValues[c]!) / a.singularValues[c]!;
        assert.ok(rel <= 1e-3, `σ${c}: ${a.singularValues[c]} vs ${b.singularValues[c]}`);
      }
      // the leading component is the same direction with the same sign (both flipped by one rule)
      assert.ok(cosineColumn(a, b, 0) > 0.999);
    });
  });

  it('on the full Beauty catalogue, items of one brand are clearly more similar than random pairs', async () => {
    const catalog = await loadItems(beautyItems);
    const started = process.hrtime.bigint();
    const e = await embedItemText(catalog, { dim: 64, seed: 1 });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    assert.equal(e.rows, 12087);
    assert.ok(e.data.every((v) => Number.isFinite(v)));

    const byBrand = new Map<string, number[]>();
    for (let id = 1; id <= catalog.numItems; id += 1) {
      const brand = catalog.items[id]!.brand;
      if (brand !== null) byBrand.set(brand, [...(byBrand.get(brand) ?? []), id]);
    }
    const rng = new Rng(3);
    const brands = [...byBrand.values()].filter((ids) => ids.length >= 2);
    let same = 0;
    let random = 0;
    const pairs = 20_000;
    for (let p = 0; p < pairs; p += 1) {
      const ids = brands[rng.int(brands.length)]!;
      const i = rng.int(ids.length);
      let j = rng.int(ids.length - 1);
      if (j >= i) j += 1;
      same += cosine(e.data, e.dim, ids[i]!, ids[j]!);
      random += cosine(e.data, e.dim, 1 + rng.int(catalog.numItems), 1 + rng.int(catalog.numItems));
    }
    same /= pairs;
    random /= pairs;
    console.log(
      `      Beauty: ${catalog.numItems} items, vocabulary ${e.vocabularySize}, nnz ${e.nnz}, D 64: ${seconds.toFixed(2)} s; ` +
        `explained variance ${(100 * e.explainedVarianceRatio.reduce((a, b) => a + b, 0)).toFixed(1)} %; mean cosine same brand ${same.toFixed(3)} vs random ${random.toFixed(3)}`,
    );
    assert.ok(same - random >= 0.25, `same-brand ${same} vs random ${random}`);
  });

  it('mmesid embed-text --json: one JSON document; the .npy is the table', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-embed-text-'));
    try {
      const items = path.join(dir, 'items.jsonl');
      const lines = fs.readFileSync(beautyItems, 'utf8').split('\n').slice(0, 1000);
      fs.writeFileSync(items, `${lines.join('\n')}\n`);
      const out = path.join(dir, 'text_emb.npy');
      const run = spawnSync(
        process.execPath,
        ['-r', 'ts-node/register/transpile-only', path.join(root, 'lib', 'cli', 'main.ts'), 'embed-text', '--items', items, '--out', out, '--dim', '16', '--seed', '4', '--json'],
        { cwd: root, encoding: 'utf8' },
      );
      assert.equal(run.status, 0, run.stderr);
      const docs = run.stdout.split('\n').filter((line) => line.length > 0);
      assert.equal(docs.length, 1, `stdout must be one JSON document, got:\n${run.stdout}`);
      const report = JSON.parse(docs[0]!) as Record<string, unknown>;
      assert.equal(report.items, 1000);
      assert.equal(report.dim, 16);
      assert.equal(report.seed, 4);
      assert.equal(report.out, out);
      assert.ok((report.vocabularySize as number) > 100 && (report.nnz as number) > 1000);
      assert.equal((report.explainedVarianceRatio as number[]).length, 16);
      assert.ok((report.seconds as number) > 0);
      const table = await loadNpy(out);
      assert.deepEqual([table.rows, table.dim], [1001, 16]);
      const direct = await embedItemText(await loadItems(items), { dim: 16, seed: 4 });
      assert.ok(bytes(table.data).equals(bytes(direct.data)));
      assert.deepEqual(fs.readdirSync(dir).sort(), ['items.jsonl', 'text_emb.npy']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

function cosineColumn(a: TextEmbedding, b: TextEmbedding, c: number): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let r = 1; r < a.rows; r += 1) {
    const x = a.data[r * a.dim + c]!;
    const y = b.data[r * b.dim + c]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}
