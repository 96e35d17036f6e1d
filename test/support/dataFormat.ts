/** Assertion for `assert.rejects`: a DataFormatError naming `file`, `line` and a problem matching `problem`. */
import * as assert from 'node:assert/strict';

import { DataFormatError } from '../../lib/errors';

export function dataFormatError(file: string, line: number, problem: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof DataFormatError, String(e));
    assert.equal(e.code, 'ERR_MMESID_DATA_FORMAT');
    assert.equal(e.file, file);
    assert.equal(e.line, line);
    assert.match(e.problem, problem);
    assert.ok(e.message.startsWith(`${file}:${line}: `), e.message);
    return true;
  };
}
