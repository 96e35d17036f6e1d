/**
 * The collaborative stage on the command line, end to end on the synthetic data set:
 * `data synthetic` → `sasrec train` → `evaluate --model sasrec:DIR`, each with --json (exactly one
 * document on stdout), the evaluation agreeing with the trainer's own test figures.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadNpy } from '../../lib/data/embeddings';
import { loadSequences } from '../../lib/data/sequences';
import { generateSynthetic } from '../../lib/data/synthetic';
import { torchAvailable } from '../support/backends';
import { mmesid, oneJson } from '../support/cli';
import { tolerances } from '../support/tolerances';

describe('cli: data synthetic → sasrec train → evaluate sasrec:DIR', function () {
  this.timeout(300_000);
  let dir: string;
  before(function () {
    if (!torchAvailable) {
      if (process.env.CI) throw new Error('mmesid_torch.node is missing in CI: libtorch should have been found');
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-cli-sasrec-'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes the synthetic set, trains on it and evaluates the saved model with the same figures', async () => {
    const data = path.join(dir, 'data');
    const gen = mmesid('data', 'synthetic', '--out', data, '--users', '400', '--items', '150', '--seed', '5', '--json');
    assert.equal(gen.status, 0, gen.stderr);
    const written = oneJson(gen.stdout) as { users: number; interactions: number; sha256: string };
    const expected = generateSynthetic({ seed: 5, numUsers: 400, numItems: 150 });
    const sequences = await loadSequences(path.join(data, 'sequences.txt'));
    assert.equal(sequences.sha256, written.sha256);
    assert.deepEqual(Array.from(sequences.items), Array.from(expected.sequences.items));
    const text = await loadNpy(path.join(data, 'text_emb.npy'));
    assert.deepEqual(Array.from(text.data), Array.from(expected.text.data));
    assert.deepEqual(fs.readdirSync(data).sort(), ['sequences.txt', 'synthetic.json', 'text_emb.npy', 'visual_emb.npy']);

    const out = path.join(dir, 'sasrec');
    const train = mmesid('sasrec', 'train', '--sequences', path.join(data, 'sequences.txt'), '--out', out, '--dim', '16', '--blocks', '1', '--max-len', '20', '--lr', '0.005', '--epochs', '6', '--threads', '1', '--json');
    assert.equal(train.status, 0, train.stderr);
    const report = oneJson(train.stdout) as { bestEpoch: number; test: { metrics: Record<string, number> }; model: { file: string } };
    assert.equal(report.model.file, 'model.safetensors');
    assert.deepEqual(fs.readdirSync(out).sort(), ['item_emb.npy', 'metrics.json', 'model.safetensors']);

    const evaluation = mmesid('evaluate', '--sequences', path.join(data, 'sequences.txt'), '--model', `sasrec:${out}`, '--json');
    assert.equal(evaluation.status, 0, evaluation.stderr);
    const result = oneJson(evaluation.stdout) as { split: string; metrics: Record<string, number>; protocol: { model: string; usersAveraged: number } };
    assert.equal(result.split, 'test');
    assert.match(result.protocol.model, /^sasrec: /);
    for (const [metric, value] of Object.entries(report.test.metrics)) {
      assert.ok(Math.abs(result.metrics[metric]! - value) <= tolerances.sasrec.reloadedMetrics.atol, `${metric}: ${result.metrics[metric]} vs ${value}`);
    }
  });

  it('a bad --model fails with a message naming the choices; a missing folder with the file system error', () => {
    const bad = mmesid('evaluate', '--sequences', 'x.txt', '--model', 'sasrec:');
    assert.notEqual(bad.status, 0);
    assert.equal(bad.stdout, '');
    assert.match(bad.stderr, /expected one of popularity, sasrec:DIR, got "sasrec:"/);
    const missing = mmesid('evaluate', '--sequences', 'x.txt', '--model', `sasrec:${path.join(dir, 'nowhere')}`, '--json');
    assert.equal(missing.status, 1);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /ENOENT/);
  });
});
