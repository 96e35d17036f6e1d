/**
 * Serving a fine-tuned MME-SID run: `await Recommender.load(runDir)`, then
 * `await rec.recommend(histories, { k, excludeHistory })` → the top-k item ids and scores per user.
 *
 * The item side of the score (every item's vector U[n] = fusion-weighted target-item row + projected
 * modality rows, [items + 1, H]) is computed once, at load; each call runs the LLM over the batch's
 * prompts on the libuv pool (never on the JS thread) and ranks all items natively (one h·Uᵀ GEMM and a
 * top-k). Calls may overlap; they run one at a time on the model. Histories longer than the run's
 * maxHistory are cut to their last maxHistory items (what the model reads); excludeHistory masks every
 * item of the history as given.
 */
import { InvalidArgumentError, describe } from '../errors';
import { optionalBoolean, optionalInteger, requireObject } from '../validate';
import { historyBatch, MmesidRun } from './run';

/** Options of {@link Recommender.recommend}. */
export interface RecommendOptions {
  /** Items per user. Default 10. */
  k?: number;
  /** Never recommend an item of the user's history. Default true. */
  excludeHistory?: boolean;
  /** Users per native call. Default 64. */
  batchSize?: number;
}

/** One user's recommendations, best first. */
export interface Recommendation {
  items: Int32Array;
  scores: Float32Array;
}

export class Recommender {
  private constructor(private readonly run: MmesidRun) {}

  /** Loads a run directory and computes the item side. @throws DataFormatError for a missing/foreign run. */
  static async load(dir: string): Promise<Recommender> {
    const run = await MmesidRun.load(dir);
    try {
      await run.tensor('itemVectors'); // computes and caches U
    } catch (error) {
      await run.dispose();
      throw error;
    }
    return new Recommender(run);
  }

  /** Items 1 … numItems. */
  get numItems(): number {
    return this.run.manifest.numItems;
  }

  /**
   * Top-k items per history.
   * @throws InvalidArgumentError for an empty history list, an item id outside [1, numItems] or bad options.
   */
  async recommend(histories: readonly (readonly number[])[], options: RecommendOptions = {}): Promise<Recommendation[]> {
    if (!Array.isArray(histories)) throw new InvalidArgumentError('histories', 'an array of item-id arrays', describe(histories));
    const o = requireObject(options, 'options');
    const k = optionalInteger(o.k, 'options.k', 10, 1, this.numItems);
    const excludeHistory = optionalBoolean(o.excludeHistory, 'options.excludeHistory', true);
    const batchSize = optionalInteger(o.batchSize, 'options.batchSize', 64, 1, 1 << 16);
    const maxHistory = this.run.config.maxHistory;
    histories.forEach((h, u) => {
      if (!Array.isArray(h) || h.length === 0) throw new InvalidArgumentError(`histories[${u}]`, 'a non-empty array of item ids', describe(h));
      h.forEach((item, i) => {
        if (!Number.isInteger(item) || item < 1 || item > this.numItems) throw new InvalidArgumentError(`histories[${u}][${i}]`, `an item id in [1, ${this.numItems}]`, describe(item));
      });
    });
    const all: readonly (readonly number[])[] = histories;
    const out: Recommendation[] = [];
    for (let start = 0; start < all.length; start += batchSize) {
      const chunk: readonly (readonly number[])[] = all.slice(start, start + batchSize);
      // The model reads the last maxHistory items; exclusion uses the whole history.
      const read = historyBatch(chunk.map((h) => h.slice(-maxHistory)));
      let ids: Int32Array, scores: Float32Array;
      if (!excludeHistory || chunk.every((h) => h.length <= maxHistory)) {
        ({ ids, scores } = await this.run.topK(read, k, excludeHistory));
      } else {
        // Mask the full history: ask for k + |history| and filter the rest out.
        const widest = Math.max(...chunk.map((h) => new Set(h).size));
        const wide = await this.run.topK(read, Math.min(this.numItems, k + widest), true);
        const kk = Math.min(this.numItems, k + widest);
        ids = new Int32Array(chunk.length * k);
        scores = new Float32Array(chunk.length * k);
        chunk.forEach((h, b) => {
          const seen = new Set(h);
          let n = 0;
          for (let j = 0; j < kk && n < k; j++) {
            const item = wide.ids[b * kk + j]!;
            if (seen.has(item)) continue;
            ids[b * k + n] = item;
            scores[b * k + n] = wide.scores[b * kk + j]!;
            n++;
          }
        });
      }
      chunk.forEach((_, b) => out.push({ items: ids.slice(b * k, (b + 1) * k), scores: scores.slice(b * k, (b + 1) * k) }));
    }
    return out;
  }

  /** Frees the model. */
  async dispose(): Promise<void> {
    await this.run.dispose();
  }
}
