/**
 * One pass over a text file: its lines (node:readline, `\r\n` accepted) and the sha256 of its bytes,
 * computed on the same read stream, so a loader never reads a file twice.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as readline from 'node:readline';

export interface HashedLines {
  /** The file's lines, for `for await`. */
  lines: readline.Interface;
  /** Hex sha256 of every byte read so far (call after the lines are exhausted). */
  sha256(): string;
  /** Stops reading and releases the file (call in `finally`). */
  close(): void;
}

export function readHashedLines(file: string): HashedLines {
  const stream = fs.createReadStream(file);
  const hash = createHash('sha256');
  stream.on('data', (chunk) => hash.update(chunk));
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  return {
    lines,
    sha256: () => hash.digest('hex'),
    close: () => {
      lines.close();
      stream.destroy();
    },
  };
}
