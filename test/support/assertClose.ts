/** Element-wise closeness with |a − b| <= atol + rtol·|b|, reporting the worst element on failure. */
import * as assert from 'node:assert/strict';

import type { Tolerance } from './tolerances';

export function assertClose(actual: ArrayLike<number> | number, expected: ArrayLike<number> | number, tol: Tolerance, what: string): void {
  const a = typeof actual === 'number' ? [actual] : actual;
  const e = typeof expected === 'number' ? [expected] : expected;
  assert.equal(a.length, e.length, `${what}: length ${a.length} vs ${e.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < a.length; i += 1) {
    const ai = a[i] as number;
    const ei = e[i] as number;
    const diff = Math.abs(ai - ei);
    const bound = tol.atol + tol.rtol * Math.abs(ei);
    if (!(diff <= bound)) {
      const excess = Number.isFinite(diff) ? diff - bound : Infinity;
      if (worst < 0 || excess > worstExcess) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}: element ${worst} is ${a[worst]} but expected ${e[worst]} (atol ${tol.atol}, rtol ${tol.rtol})`);
  }
}
