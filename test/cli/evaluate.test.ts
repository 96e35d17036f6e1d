/**
 * The `mmesid evaluate` and `mmesid data stats` commands, run as child processes from the TypeScript
 * sources through ts-node (a dist/ build may be stale): with --json, stdout carries exactly one JSON
 * document.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { tolerances } from '../support/tolerances';

const root = path.resolve(__dirname, '..', '..');
const beauty = path.resolve(root, '..', 'shared', 'data', 'beauty', 'sequences.txt');

/** Runs the CLI from its TypeScript sources (always current, unlike a dist/ build). */
function mmesid(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(root, 'lib', 'cli', 'main.ts'), ...args], {
    cwd: root,
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Parses stdout as exactly one JSON document (one line, nothing else). */
function oneJson(stdout: string): Record<string, unknown> {
  const lines = stdout.split('\n').filter((line) => line.length > 0);
  assert.equal(lines.length, 1, `stdout must be one JSON document, got:\n${stdout}`);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

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
