/**
 * The `mmesid evaluate` and `mmesid data stats` commands, run as child processes from the TypeScript
 * sources through ts-node (a dist/ build may be stale): with --json, stdout carries exactly one JSON
 * document.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { mmesid, oneJson } from '../support/cli';
import { tolerances } from '../support/tolerances';

const beauty = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'beauty', 'sequences.txt');

describe('cli: evaluate and data stats', function () {
  this.timeout(120_000);

  it('data stats --json: Beauty counts', () => {
    const run = mmesid('data', 'stats', beauty, '--json');
    assert.equal(run.status, 0, run.stderr);
    const stats = oneJson(run.stdout);
    assert.equal(stats.users, 22332);
    assert.equal(stats.items, 12086);
    assert.equal(stats.interactions, 198215);
  });

  it('evaluate --model popularity --json: one document with metrics, protocol and cold/warm', () => {
    const run = mmesid('evaluate', '--sequences', beauty, '--model', 'popularity', '--split', 'test', '--json');
    assert.equal(run.status, 0, run.stderr);
    const report = oneJson(run.stdout) as {
      split: string;
      metrics: Record<string, number>;
      protocol: { dataset: { sha256: string }; ks: number[]; usersAveraged: number; tieRule: string; masking: string; truncation: string };
      coldWarm: { threshold: number; cold: { users: number }; warm: { users: number } };
    };
    assert.equal(report.split, 'test');
    assert.deepEqual(Object.keys(report.metrics), ['HR@5', 'HR@10', 'HR@20', 'nDCG@5', 'nDCG@10', 'nDCG@20', 'MRR@5', 'MRR@10', 'MRR@20']);
    assert.ok(Math.abs(report.metrics['HR@10']! - 0.0134) <= tolerances.evaluate.popularityBeauty.atol);
    assert.match(report.protocol.dataset.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(report.protocol.ks, [5, 10, 20]);
    assert.equal(report.protocol.usersAveraged, 22332);
    assert.match(report.protocol.tieRule, /lower item id/);
    assert.equal(report.coldWarm.threshold, 5);
    assert.equal(report.coldWarm.cold.users + report.coldWarm.warm.users, 22332);
  });

  it('a malformed file fails with the file, the line and the error code on stderr, nothing on stdout', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-cli-'));
    try {
      const file = path.join(dir, 'bad.txt');
      fs.writeFileSync(file, '1 2 3\n2 4 five\n');
      const run = mmesid('data', 'stats', file, '--json');
      assert.equal(run.status, 1);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /bad\.txt:2: token 3 \("five", the item id\).*\[ERR_MMESID_DATA_FORMAT\]/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
