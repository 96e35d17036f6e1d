/** Running the `mmesid` CLI in tests: from its TypeScript sources, in a child process. */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');

/** Runs the CLI from its TypeScript sources (always current, unlike a dist/ build). */
export function mmesid(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(root, 'lib', 'cli', 'main.ts'), ...args], {
    cwd: root,
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Parses stdout as exactly one JSON document (one line, nothing else). */
export function oneJson(stdout: string): Record<string, unknown> {
  const lines = stdout.split('\n').filter((line) => line.length > 0);
  assert.equal(lines.length, 1, `stdout must be one JSON document, got:\n${stdout}`);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}
