/**
 * The tokenizer stage through its public doors — `trainTokenizer` and `mmesid tokenizer train` — on the
 * synthetic data set: the folder it writes is complete and self-consistent (Tokenizer.load serves it and
 * reproduces sids.<m>.npy; `mmesid tokenize --item-table` reproduces it byte for byte), the report's
 * figures are recomputed here from the written files, settings are validated with the argument named,
 * cancellation writes nothing, and an interrupted CLI run resumed from its checkpoint ends exactly where
 * the uninterrupted one does.
 *
 * Data: generateSynthetic({ seed: 3, numItems: 240 }) — collab = text table (32-d), visual (16-d).
 * Model: hidden [24], L 3, K 8, e 8, batch 64, a few epochs, threads 1.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { saveNpy, loadTensors, type EmbeddingTable } from '../../lib/data/embeddings';
import { decomposeTau } from '../../bench/tauDecomposition';
import { generateSynthetic } from '../../lib/data/synthetic';
import { CancelledError, InvalidArgumentError } from '../../lib/errors';
import { codebookUsage, collisionRate, distanceKendallTau } from '../../lib/tokenizer/metrics';
import { Tokenizer } from '../../lib/tokenizer/service';
import { trainTokenizer, type TokenizerTrainReport, type TrainTokenizerOptions } from '../../lib/tokenizer/train';
import { torchAvailable } from '../support/backends';
import { mmesid, oneJson } from '../support/cli';
import { readInt32Npy, tempFiles } from '../support/npy';

const stories = path.resolve(__dirname, '..', '..', '..', 'shared', 'models', 'stories260K');

describe('tokenizer training (trainTokenizer, mmesid tokenizer train)', function () {
  this.timeout(300_000);
  const numItems = 240;
  const data = generateSynthetic({ seed: 3, numUsers: 40, numItems });
  const collab: EmbeddingTable = data.text;
  const visual: EmbeddingTable = data.visual;
  const L = 3, K = 8, E = 8;
  const small = { hidden: [24], levels: L, codes: K, codeDim: E, batchSize: 64, epochs: 4, lr: 5e-3, seed: 7, threads: 1, tauPairs: 2000 } as const;
  let root: string;
  let folder: string;
  let report: TokenizerTrainReport;

  before(async function () {
    if (!torchAvailable) {
      if (process.env.CI) throw new Error('mmesid_torch.node is missing in CI: libtorch should have been found');
      this.skip();
    }
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-tok-train-'));
    folder = path.join(root, 'two');
    report = await trainTokenizer({ ...small, collab, visual, outDir: folder });
    await saveNpy(path.join(root, 'collab.npy'), collab.rows, collab.dim, collab.data);
    await saveNpy(path.join(root, 'visual.npy'), visual.rows, visual.dim, visual.data);
  });
  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('writes exactly the documented files; report.json is the returned report', async () => {
    assert.deepEqual(fs.readdirSync(folder).sort(), ['report.json', 'sids.collab.npy', 'sids.visual.npy', 'tokenizer.json', 'tokenizer.safetensors']);
    const stored = JSON.parse(fs.readFileSync(path.join(folder, 'report.json'), 'utf8')) as Record<string, unknown>;
    const { outDir, ...rest } = report;
    assert.equal(outDir, folder);
    assert.deepEqual(stored, JSON.parse(JSON.stringify(rest)));
    assert.deepEqual(report.modalities, ['collab', 'visual']);
    assert.equal(report.epochs.length, 4);
    assert.equal(report.settings.codeDimSource, 'option');
    assert.deepEqual(report.settings.sinkhornLevels, [L - 1]);
    const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(manifest.format, 'mmesid.tokenizer');
    assert.equal(manifest.version, 1);
    assert.deepEqual(manifest.modalities, [
      { name: 'collab', inputDim: 32, hidden: [24] },
      { name: 'visual', inputDim: 16, hidden: [24] },
    ]);
    assert.equal((manifest.losses as { epoch: number }).epoch, report.bestEpoch);
    assert.equal((manifest.settings as { recon: string }).recon, 'mmd');
    const { tensors } = await loadTensors(path.join(folder, 'tokenizer.safetensors'));
    assert.equal(tensors.length, 2 * (4 + 4 + 1));
  });

  it('bench/tauDecomposition.ts: its total τ is the report\'s kendallTau; encoder and quantizer parts are τ values', async () => {
    const parts = await decomposeTau(folder, collab, 'collab', { pairs: small.tauPairs });
    assert.equal(parts.total, Math.round(report.kendallTau.collab! * 1e4) / 1e4);
    assert.equal(parts.prefix.length, L);
    assert.equal(parts.prefix[L - 1], parts.total);
    assert.ok(parts.codesReproduced >= 0.99, `the tool's z reproduces ${parts.codesReproduced} of the codes`);
    for (const v of [parts.encoder, parts.quantizer, ...parts.prefix]) assert.ok(v >= -1 && v <= 1 && v !== 0, String(v));
  });

  it('Tokenizer.load serves the folder and gives the codes of sids.<m>.npy; row 0 is -1', async () => {
    const tok = await Tokenizer.load(folder);
    try {
      const codes = await tok.encode({ collab: collab.data.subarray(collab.dim), visual: visual.data.subarray(visual.dim) });
      for (const [name, table] of [['collab', codes.collab!], ['visual', codes.visual!]] as const) {
        const sids = readInt32Npy(path.join(folder, `sids.${name}.npy`));
        assert.equal(sids.rows, numItems + 1);
        assert.equal(sids.dim, L);
        assert.deepEqual(Array.from(sids.data.subarray(0, L)), [-1, -1, -1]);
        assert.deepEqual(sids.data.subarray(L), table, name);
      }
    } finally {
      tok.dispose();
    }
  });

  it('the report\'s usage, collision rate and Kendall τ are recomputed from the written files', async () => {
    const { tensors } = await loadTensors(path.join(folder, 'tokenizer.safetensors'));
    for (const [name, table] of [['collab', collab], ['visual', visual]] as const) {
      const codes = readInt32Npy(path.join(folder, `sids.${name}.npy`)).data.subarray(L);
      const books = tensors.find((t) => t.name === `${name}.codebooks`)!.data;
      const quantized = new Float32Array(numItems * E);
      for (let i = 0; i < numItems; i += 1) {
        for (let l = 0; l < L; l += 1) {
          const c = codes[i * L + l]!;
          for (let k = 0; k < E; k += 1) quantized[i * E + k]! += books[(l * K + c) * E + k]!;
        }
      }
      const tau = distanceKendallTau(table.data.subarray(table.dim), table.dim, quantized, E, { pairs: 2000, seed: 1 }).tau;
      assert.ok(Math.abs(tau - report.kendallTau[name]!) < 1e-6, `${name}: τ ${tau} vs reported ${report.kendallTau[name]}`);
      assert.ok(tau > 0.1, `${name}: quantization should keep some distance order, τ = ${tau}`);
      assert.equal(report.collisionRate[name], collisionRate(codes, L));
      assert.deepEqual(report.usage[name], codebookUsage(codes, L, K));
      assert.equal(report.perModality[name]!.distinctSids, new Set(Array.from({ length: numItems }, (_, i) => codes.subarray(i * L, (i + 1) * L).join())).size);
      assert.ok(report.reconMse[name]! > 0 && Number.isFinite(report.reconMse[name]));
    }
  });

  it('mmesid tokenize --item-table reproduces sids.collab.npy byte for byte', () => {
    const out = path.join(root, 'tokenized.npy');
    const run = mmesid('tokenize', '--tokenizer', folder, '--input', path.join(root, 'collab.npy'), '--modality', 'collab', '--out', out, '--item-table', '--json');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(fs.readFileSync(out), fs.readFileSync(path.join(folder, 'sids.collab.npy')));
  });

  it('one modality, any alignment; the code dim follows an LLM config.json (stories260K: hidden_size 64)', async function () {
    for (const align of ['none', 'mmd'] as const) {
      const r = await trainTokenizer({ ...small, epochs: 2, visual, align, recon: 'mse', outDir: path.join(root, `one-${align}`) });
      assert.deepEqual(r.modalities, ['visual']);
      assert.ok(r.epochs.every((e) => e.align === 0), 'no pair to align with one modality');
    }
    if (!fs.existsSync(path.join(stories, 'config.json'))) this.skip();
    const { codeDim: _omit, ...rest } = small;
    void _omit;
    const r = await trainTokenizer({ ...rest, epochs: 1, collab, llmConfig: stories, outDir: path.join(root, 'llm') });
    assert.equal(r.codeDim, 64);
    assert.equal(r.settings.codeDimSource, 'llmConfig');
  });

  it('rejects bad arguments naming them, before training and without writing', async () => {
    const out = path.join(root, 'never');
    const base: TrainTokenizerOptions = { ...small, collab, outDir: out };
    const cases: Array<[Partial<TrainTokenizerOptions> & Record<string, unknown>, RegExp]> = [
      [{ collab: undefined }, /at least one item table of collab, text, visual for options/],
      [{ visual: { rows: 10, dim: 16, data: new Float32Array(160) } }, /241 rows \(numItems \+ 1; row 0 is padding\) for options\.visual but received 10 rows/],
      [{ levels: 0 }, /options\.levels/],
      [{ recon: 'l1' as never }, /one of "mmd", "mse" for options\.recon/],
      [{ align: 'cosine' as never }, /options\.align/],
      [{ residualGradient: 'vq' as never }, /one of "exact", "lc-rec" for options\.residualGradient/],
      [{ sinkhornLevels: [L] }, /options\.sinkhornLevels\[0\]/],
      [{ batchSize: 1 }, /options\.batchSize/],
      [{ temperature: 0 }, /options\.temperature/],
      [{ resume: true }, /options\.resume/],
      [{ llmConfig: path.join(root, 'nowhere'), codeDim: undefined }, /options\.llmConfig/],
    ];
    for (const [patch, message] of cases) {
      await assert.rejects(trainTokenizer({ ...base, ...patch }), (e: unknown) => e instanceof InvalidArgumentError && message.test(e.message), JSON.stringify(Object.keys(patch)));
    }
    const poisoned = new Float32Array(collab.data);
    poisoned[5 * collab.dim + 3] = Number.NaN;
    await assert.rejects(trainTokenizer({ ...base, collab: { ...collab, data: poisoned } }), /finite values for options\.collab but received NaN at row 5, column 3/);
    assert.equal(fs.existsSync(out), false);
  });

  it('cancellation rejects with CancelledError and writes nothing', async () => {
    const out = path.join(root, 'cancelled');
    const ac = new AbortController();
    await assert.rejects(
      trainTokenizer({ ...small, epochs: 10_000, patience: 10_000, collab, outDir: out, signal: ac.signal, onProgress: (e) => e.kind === 'epoch' && ac.abort() }),
      CancelledError,
    );
    assert.equal(fs.existsSync(out), false);
  });

  it('CLI: --json gives one document; an interrupted run resumed from its checkpoint equals the uninterrupted run', () => {
    const args = (out: string, epochs: number, ...extra: string[]) => [
      'tokenizer', 'train', '--collab', path.join(root, 'collab.npy'), '--visual', path.join(root, 'visual.npy'), '--out', out,
      '--hidden', '24', '--levels', String(L), '--codes', String(K), '--code-dim', String(E), '--batch-size', '64', '--lr', '0.005',
      '--seed', '11', '--threads', '1', '--tau-pairs', '2000', '--epochs', String(epochs), '--patience', '100', '--json', ...extra,
    ];
    const whole = mmesid(...args(path.join(root, 'cli-whole'), 5));
    assert.equal(whole.status, 0, whole.stderr);
    const wholeReport = oneJson(whole.stdout) as unknown as TokenizerTrainReport;
    assert.equal(wholeReport.epochs.length, 5);
    assert.ok(fs.existsSync(path.join(root, 'cli-whole', 'checkpoint.pt')), 'default checkpoint in the output folder');

    const part = path.join(root, 'cli-part');
    const first = mmesid(...args(part, 2));
    assert.equal(first.status, 0, first.stderr);
    const resumed = mmesid(...args(part, 5, '--resume'));
    assert.equal(resumed.status, 0, resumed.stderr);
    const resumedReport = oneJson(resumed.stdout) as unknown as TokenizerTrainReport;
    assert.equal(resumedReport.resumedFromEpoch, 2);
    assert.deepEqual(resumedReport.epochs.map((e) => e.loss), wholeReport.epochs.map((e) => e.loss));
    for (const f of ['tokenizer.safetensors', 'sids.collab.npy', 'sids.visual.npy']) {
      assert.deepEqual(fs.readFileSync(path.join(part, f)), fs.readFileSync(path.join(root, 'cli-whole', f)), f);
    }
    assert.deepEqual(tempFiles(part), []);
  });

  it('CLI: no table, or a missing file, fails clearly with nothing on stdout', () => {
    const none = mmesid('tokenizer', 'train', '--out', path.join(root, 'cli-none'));
    assert.equal(none.status, 1);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /expected at least one of --collab, --text, --visual/);
    const missing = mmesid('tokenizer', 'train', '--collab', path.join(root, 'absent.npy'), '--out', path.join(root, 'cli-missing'), '--json');
    assert.equal(missing.status, 1);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /absent\.npy/);
    assert.equal(fs.existsSync(path.join(root, 'cli-missing', 'tokenizer.json')), false);
  });
});
