/**
 * The popularity baseline on the real Amazon Beauty 5-core data (../shared/data/beauty, see its README):
 * test HR@10 0.0134 and nDCG@10 0.0061 with ties going to the lower item id. The README's flattering
 * figures (target ahead of every tie: 0.0141 / 0.0063) are recomputed here independently, to show the
 * evaluator's tie rule is not the target-favouring one.
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { loadSequences } from '../../lib/data/sequences';
import type { Sequences } from '../../lib/data/sequences';
import { evaluationInput, evaluationSplit } from '../../lib/data/splits';
import { evaluatePopularity, popularityCounts } from '../../lib/evaluate/popularity';
import { tolerances } from '../support/tolerances';

const beauty = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'beauty', 'sequences.txt');
const { atol } = tolerances.evaluate.popularityBeauty;

describe('evaluate: popularity on Amazon Beauty', () => {
  let sequences: Sequences;
  before(async () => {
    sequences = await loadSequences(beauty);
  });

  it('test split: HR@10 0.0134, nDCG@10 0.0061 (the data README), with every metric and cold/warm', async () => {
    const report = await evaluatePopularity(sequences, { split: 'test' });
    assert.ok(Math.abs(report.metrics['HR@10']! - 0.0134) <= atol, `HR@10 ${report.metrics['HR@10']}`);
    assert.ok(Math.abs(report.metrics['nDCG@10']! - 0.0061) <= atol, `nDCG@10 ${report.metrics['nDCG@10']}`);
    assert.deepEqual(Object.keys(report.metrics), ['HR@5', 'HR@10', 'HR@20', 'nDCG@5', 'nDCG@10', 'nDCG@20', 'MRR@5', 'MRR@10', 'MRR@20']);
    assert.ok(report.metrics['HR@5']! <= report.metrics['HR@10']! && report.metrics['HR@10']! <= report.metrics['HR@20']!);
    assert.equal(report.protocol.usersAveraged, 22332);
    assert.equal(report.protocol.dataset.sha256, sequences.sha256);
    const { cold, warm } = report.coldWarm;
    assert.equal(cold.users + warm.users, 22332);
    // the overall average is the users-weighted mean of the two groups
    const mixed = (cold.users * cold.metrics['HR@10']! + warm.users * warm.metrics['HR@10']!) / 22332;
    assert.ok(Math.abs(mixed - report.metrics['HR@10']!) < 1e-12);
  });

  it('the tie rule is not in the target\'s favour: target-first ties would give 0.0141 / 0.0063', async () => {
    const split = evaluationSplit(sequences, 'test');
    const counts = popularityCounts(split, sequences.numItems);
    // rank with ties in the target's favour: items with a strictly higher count, minus masked ones
    const maxCount = Math.max(...counts);
    const atLeast = new Float64Array(maxCount + 2);
    for (let i = 1; i < counts.length; i += 1) atLeast[counts[i]!]! += 1;
    for (let c = maxCount - 1; c >= 0; c -= 1) atLeast[c]! += atLeast[c + 1]!;
    let hr = 0;
    let ndcg = 0;
    for (let e = 0; e < split.users.length; e += 1) {
      const target = split.targets[e]!;
      const own = counts[target]!;
      let rank = atLeast[own + 1]!;
      for (const item of new Set(evaluationInput(split, e))) if (item !== target && counts[item]! > own) rank -= 1;
      if (rank < 10) {
        hr += 1;
        ndcg += 1 / Math.log2(rank + 2);
      }
    }
    const users = split.users.length;
    assert.ok(Math.abs(hr / users - 0.0141) <= atol, `flattering HR@10 ${hr / users}`);
    assert.ok(Math.abs(ndcg / users - 0.0063) <= atol, `flattering nDCG@10 ${ndcg / users}`);
    const report = await evaluatePopularity(sequences, { split: 'test', ks: [10] });
    assert.ok(report.metrics['HR@10']! < hr / users - 0.0003, 'the evaluator must not rank the target ahead of its ties');
  });

  it('valid split ranks items[:-2] -> items[-2] and differs from test', async () => {
    const valid = await evaluatePopularity(sequences, { split: 'valid', batchSize: 1000 });
    const test = await evaluatePopularity(sequences, { split: 'test', batchSize: 1000 });
    assert.equal(valid.split, 'valid');
    assert.equal(valid.protocol.input, 'items[:-2]');
    assert.notEqual(valid.metrics['HR@10'], test.metrics['HR@10']);
  });
});
