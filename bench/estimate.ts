/**
 * On-paper cost of one MME-SID fine-tuning epoch with Llama-3-8B on Amazon Beauty on A100s, from FLOP
 * counts: `node -r ts-node/register/transpile-only bench/estimate.ts [sequences.txt]`.
 *
 * - Samples and their lengths are measured on the real data: the official protocol's training samples
 *   (every prefix of items[:-2], the last 50 targets per user, histories of at most 50 items), each sample
 *   = the paper template's prefix (34 tokens with the Llama 3 tokenizer) + one embedding per history item +
 *   the suffix (4 tokens).
 * - FLOPs per sample: the transformer forward + backward with a frozen base and LoRA r 8 on gate/up/down,
 *   counted by bench/trials.ts llmTrainFlop (base projections forward and again for the input gradient,
 *   attention QKᵀ/PV forward and twice that backward, LoRA forward and 3× backward) at the sample's length,
 *   plus the gradient-checkpointing recompute (one more forward of the projections and attention) as an
 *   option, plus the head: the 6-way item-input MLP per history item and the cross-entropy over all items
 *   (h·Uᵀ and its backward) per sample. The fusion terms of the scores are counted as the head computes
 *   them with B = 16 < H: (h·P_m)·T_mᵀ, 16·d_m multiply-adds per item and modality per step (the total
 *   includes one modality of dimension 4,096; it is 0.03 % of it). A plain head
 *   projecting every item's table per step (P_m·T_m, d_m·H per item, forward + recompute + backward) would
 *   add `plainHeadExtraPetaflopPerModality` per modality of dimension 4,096 (reported, not in the total).
 * - Time = FLOPs / (A100 bf16 dense peak 312 TFLOP/s × MFU); MFU 35–50 % is what LoRA fine-tuning of 7–8B
 *   Llamas typically sustains with FlashAttention-class kernels. The official setting (4-bit NF4 base on
 *   V100/A100) is slower than bf16; this is the bf16 estimate.
 */
import * as path from 'node:path';

import { loadSequences } from '../lib/data/sequences';
import { trainingSamples } from '../lib/data/splits';
import { llmTrainFlop, type LlmBenchShape } from './trials';

const LLAMA3_8B = { hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128256 };
const PREFIX = 34, SUFFIX = 4;
const A100_BF16 = 312e12;

async function main(): Promise<void> {
  const file = process.argv[2] ?? path.resolve(__dirname, '..', '..', 'shared', 'data', 'beauty', 'sequences.txt');
  const sequences = await loadSequences(file);
  const samples = trainingSamples(sequences);
  let flop = 0, flopCheckpointed = 0, tokens = 0;
  const h = LLAMA3_8B.hidden, items = sequences.numItems + 1;
  for (let i = 0; i < samples.count; i++) {
    const history = Math.min(samples.positions[i]!, samples.maxHistory);
    const length = PREFIX + history + SUFFIX;
    tokens += length;
    const shape: LlmBenchShape = { label: '', ...LLAMA3_8B, batch: 1, length };
    const transformer = llmTrainFlop(shape);
    // Recompute: one more forward of the base projections and attention (≈ a third of fwd+bwd here).
    const base = 2 * (2 * h * h + 2 * h * LLAMA3_8B.kvHeads * (h / LLAMA3_8B.heads) + 3 * h * LLAMA3_8B.intermediate);
    const recompute = length * LLAMA3_8B.layers * (base + 4 * length * h);
    // Head: item-input MLP (6H → 3H → H, forward + backward ≈ 3×) per history item; CE over all items.
    const head = 3 * history * 2 * (6 * h * 3 * h + 3 * h * h) + 3 * 2 * items * h;
    flop += transformer + head;
    flopCheckpointed += transformer + recompute + head;
  }
  const steps = Math.ceil(samples.count / 16), modalityDim = 4096;
  // Per step: the factorized scores' (h·P_m)·T_mᵀ [16, N] (×4: forward, recompute, two backward GEMMs)
  // against the plain head's P_m·T_m [N, H] (×4 likewise).
  const factorizedHead = steps * 4 * 2 * 16 * modalityDim * items;
  const plainHead = steps * 4 * 2 * items * modalityDim * h;
  flop += factorizedHead;
  flopCheckpointed += factorizedHead;
  const hours = (f: number, mfu: number, gpus: number) => f / (A100_BF16 * mfu * gpus) / 3600;
  const out = {
    dataset: { source: sequences.source, users: sequences.numUsers, items: sequences.numItems },
    samples: samples.count,
    meanTokensPerSample: tokens / samples.count,
    petaflopPerEpoch: flop / 1e15,
    petaflopPerEpochWithCheckpointing: flopCheckpointed / 1e15,
    plainHeadExtraPetaflopPerModality: (plainHead - factorizedHead) / 1e15,
    a100HoursPerEpoch: { mfu35: hours(flop, 0.35, 1), mfu50: hours(flop, 0.5, 1), mfu35Checkpointing: hours(flopCheckpointed, 0.35, 1) },
    eightA100MinutesPerEpoch: { mfu35: 60 * hours(flop, 0.35, 8), mfu50: 60 * hours(flop, 0.5, 8) },
  };
  console.log(JSON.stringify(out, null, 2));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
