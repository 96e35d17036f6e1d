/**
 * Evaluation of a trained SASRec ({@link SasrecModel}) under the same protocol, evaluator and tie rule
 * as every other model: each evaluated user's last `maxLen` input items (left-padded with 0) go through
 * the model without dropout, the last position's hidden state scores every item, and the whole input is
 * masked. Gives the same figures as the test metrics `trainSasrec` reports for its best epoch (up to
 * float rounding of batched matrix products).
 */
import type { Sequences } from '../data/sequences';
import { evaluationSplit } from '../data/splits';
import { InvalidArgumentError } from '../errors';
import { SasrecModel } from '../sasrec';
import { evaluateSplit, readEvaluationOptions } from './popularity';
import type { EvaluatePopularityOptions, EvaluationReport } from './popularity';

/** Options of {@link evaluateSasrec} (those of the popularity evaluation: split, ks, batching, …). */
export type EvaluateSasrecOptions = EvaluatePopularityOptions;

/**
 * Evaluates a trained SASRec on one split of `sequences`.
 * @param model a loaded model, or the folder (or `model.safetensors` file) `trainSasrec` wrote
 * @throws InvalidArgumentError on a bad argument, including a model trained for a different number of
 *   items; DataFormatError for a malformed weight file; CancelledError when `signal` aborts.
 */
export async function evaluateSasrec(sequences: Sequences, model: SasrecModel | string, options: EvaluateSasrecOptions = {}): Promise<EvaluationReport> {
  const settings = readEvaluationOptions(options);
  const { splitName, batchSize } = settings;
  const loaded = model instanceof SasrecModel ? model : await SasrecModel.load(model);
  const { numItems, maxLen } = loaded.architecture;
  if (numItems !== sequences.numItems) {
    throw new InvalidArgumentError('model', `a model trained for ${sequences.numItems} items (the sequences' item count)`, loaded.source, `a model for ${numItems} items`);
  }

  const split = evaluationSplit(sequences, splitName, { maxHistory: maxLen });
  const rows = Math.min(batchSize, Math.max(1, split.users.length));
  const inputs = new Int32Array(rows * maxLen);
  const scores = new Float32Array(rows * (numItems + 1));
  const { dim, blocks, heads } = loaded.architecture;
  const trainedOn = typeof loaded.dataset.sha256 === 'string' ? `, trained on sha256 ${loaded.dataset.sha256.slice(0, 12)}…` : '';
  return evaluateSplit(
    sequences,
    split,
    settings,
    async (start: number, end: number) => {
    const batch = end - start;
    inputs.fill(0);
    for (let b = 0; b < batch; b += 1) {
      const stop = split.inputOffsets[start + b + 1]!;
      const from = Math.max(split.inputOffsets[start + b]!, stop - maxLen);
      inputs.set(split.inputItems.subarray(from, stop), (b + 1) * maxLen - (stop - from));
    }
    const out = scores.subarray(0, batch * (numItems + 1));
    await loaded.scoreInto(inputs.subarray(0, batch * maxLen), batch, out);
    return out;
    },
    `sasrec: ${loaded.source} (d=${dim}, ${blocks} blocks, ${heads} heads, maxLen ${maxLen}${trainedOn})`,
  );
}
