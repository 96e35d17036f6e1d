/** Reading what the library writes, independently of its own readers. */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';

/** Parses an int32 C-order 2-D `.npy` (v1 or v2 header), checking the header's padding and fields. */
export function readInt32Npy(file: string): { rows: number; dim: number; data: Int32Array } {
  const bytes = fs.readFileSync(file);
  assert.equal(bytes.subarray(1, 6).toString('latin1'), 'NUMPY');
  const major = bytes[6]!;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLength;
  assert.equal(start % 64, 0, 'header padded to 64 bytes');
  const header = bytes.subarray(major === 1 ? 10 : 12, start).toString('latin1');
  assert.match(header, /'descr': '<i4'/);
  assert.match(header, /'fortran_order': False/);
  const shape = /'shape': \((\d+), (\d+)\)/.exec(header)!;
  const rows = Number(shape[1]), dim = Number(shape[2]);
  assert.equal(bytes.length, start + rows * dim * 4);
  const data = new Int32Array(rows * dim);
  new Uint8Array(data.buffer).set(bytes.subarray(start));
  return { rows, dim, data };
}

/** Temporary files (`*.tmp`) left in `dir`. */
export function tempFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'));
}
