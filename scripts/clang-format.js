#!/usr/bin/env node
// clang-format over every C++/CUDA source in native/: `--check` fails on any difference, `--fix` rewrites.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const mode = process.argv[2] === '--fix' ? '--fix' : '--check';
const exts = new Set(['.h', '.cpp', '.cu', '.cuh']);
const files = [];
(function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (exts.has(path.extname(entry.name))) files.push(full);
  }
})(path.join(root, 'native'));

const binary = ['clang-format', 'clang-format-14', 'clang-format-15', 'clang-format-16'].find(
  (b) => spawnSync(b, ['--version']).status === 0,
);
if (!binary) {
  console.error('clang-format not found (apt-get install clang-format)');
  process.exit(1);
}
const args = mode === '--fix' ? ['-i', ...files] : ['--dry-run', '--Werror', ...files];
const result = spawnSync(binary, args, { stdio: 'inherit' });
if (result.status === 0) console.log(`clang-format: ${files.length} files ${mode === '--fix' ? 'formatted' : 'clean'}`);
process.exit(result.status ?? 1);
