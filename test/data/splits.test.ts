/** Leave-one-out splits of the official code on hand-made users. */
import * as assert from 'node:assert/strict';

import { InvalidArgumentError } from '../../lib/errors';
import type { Sequences } from '../../lib/data/sequences';
import { evaluationInput, evaluationSplit, modelHistory, trainFrequency, trainingHistory, trainingSamples } from '../../lib/data/splits';

function sequences(users: number[][]): Sequences {
  const offsets = [0];
  for (const u of users) offsets.push(offsets[offsets.length - 1]! + u.length);
  const items = users.flat();
  const numItems = Math.max(0, ...items);
  return {
    source: 'memory',
    sha256: '',
    numUsers: users.length,
    numItems,
    distinctItems: new Set(items).size,
    numInteractions: items.length,
    userIds: Int32Array.from(users.map((_, i) => i + 1)),
    offsets: Int32Array.from(offsets),
    items: Int32Array.from(items),
  };
}

describe('data: splits', () => {
  // user 0: 6 items; user 1: the minimum of 3; user 2: too short (2 items); user 3: a repeat
  const s = sequences([
    [1, 2, 3, 4, 5, 6],
    [7, 8, 9],
    [2, 3],
    [4, 4, 1, 2, 4],
  ]);

  it('test: input items[:-1] -> items[-1]; valid: items[:-2] -> items[-2]; short users skipped', () => {
    const test = evaluationSplit(s, 'test');
    assert.deepEqual(Array.from(test.users), [0, 1, 3]);
    assert.deepEqual(Array.from(test.targets), [6, 9, 4]);
    assert.deepEqual(Array.from(evaluationInput(test, 0)), [1, 2, 3, 4, 5]);
    assert.deepEqual(Array.from(evaluationInput(test, 1)), [7, 8]);
    assert.deepEqual(Array.from(evaluationInput(test, 2)), [4, 4, 1, 2]);
    assert.equal(test.skippedUsers, 1);
    const valid = evaluationSplit(s, 'valid');
    assert.deepEqual(Array.from(valid.targets), [5, 8, 2]);
    assert.deepEqual(Array.from(valid.inputOffsets), [0, 4, 5, 8]);
    assert.deepEqual(Array.from(valid.inputItems), [1, 2, 3, 4, 7, 4, 4, 1]);
  });

  it('model history is the last maxHistory input items; the mask keeps the whole input', () => {
    const test = evaluationSplit(s, 'test', { maxHistory: 2 });
    assert.deepEqual(Array.from(modelHistory(test, 0)), [4, 5]);
    assert.deepEqual(Array.from(evaluationInput(test, 0)), [1, 2, 3, 4, 5]);
    assert.deepEqual(Array.from(modelHistory(test, 1)), [7, 8]);
  });

  it('training: every prefix of items[:-2] predicts its next item; short users train on all they have', () => {
    const t = trainingSamples(s);
    const rows = Array.from({ length: t.count }, (_, i) => [t.users[i], Array.from(trainingHistory(s, t, i)), t.targets[i]]);
    assert.deepEqual(rows, [
      [0, [1], 2],
      [0, [1, 2], 3],
      [0, [1, 2, 3], 4],
      // user 1: items[:-2] = [7] has no prefix with a next item
      [2, [2], 3],
      [3, [4], 4],
      [3, [4, 4], 1],
    ]);
  });

  it('training: history truncated to maxHistory, only the last maxTargetsPerUser targets kept', () => {
    const long = sequences([Array.from({ length: 12 }, (_, i) => i + 1)]);
    const t = trainingSamples(long, { maxHistory: 3, maxTargetsPerUser: 4 });
    assert.deepEqual(Array.from(t.targets), [7, 8, 9, 10]);
    assert.deepEqual(Array.from(trainingHistory(long, t, 0)), [4, 5, 6]);
    assert.deepEqual(Array.from(trainingHistory(long, t, 3)), [7, 8, 9]);
    assert.equal(trainingSamples(long).count, 9);
  });

  it('training frequency counts items[:-2] (all items of short users); padding 0', () => {
    const f = trainFrequency(s);
    assert.equal(f.length, 10);
    // user 0: 1 2 3 4; user 1: 7; user 2: 2 3; user 3: 4 4 1
    assert.deepEqual(Array.from(f), [0, 2, 2, 2, 3, 0, 0, 1, 0, 0]);
  });

  it('rejects bad options', () => {
    assert.throws(() => evaluationSplit(s, 'train' as never), InvalidArgumentError);
    assert.throws(() => trainingSamples(s, { maxHistory: 0 }), InvalidArgumentError);
    assert.throws(() => trainingSamples(s, { maxTargetsPerUser: 1.5 }), InvalidArgumentError);
  });
});
