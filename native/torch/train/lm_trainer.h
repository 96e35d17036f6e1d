// LoRA fine-tuning of the Llama (models/llama.h) as a causal language model on token sequences, on the
// shared step loop (train_loop.h). The adapters are the only trained tensors; the base stays frozen.
//
// Data order: micro-batch g = step · accumulation + micro of the run is the (g mod B)-th slice of
// micro_batch sequences of epoch ⌊g / B⌋ (B = ⌈sequences / micro_batch⌉), epochs shuffled by
// std::mt19937_64(seed + epoch) — a function of (seed, g) alone, so a resumed run reads the same batches.
// Each sequence is truncated to max_length and right-padded to the micro-batch's longest; the loss is
// the mean next-token cross-entropy over the real (unpadded) target tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "torch/models/llama.h"
#include "torch/train/train_loop.h"

namespace mmesid::train {

struct LmTrainOptions {
  std::vector<int64_t> offsets;  ///< sequence i = tokens[offsets[i], offsets[i + 1]); each >= 2 tokens
  std::vector<int64_t> tokens;   ///< token ids in [0, vocab)
  int64_t max_length = 512;      ///< >= 2
  int64_t micro_batch = 4;       ///< sequences per micro-batch, >= 1
  LoopOptions loop;              ///< steps, accumulation, AdamW, schedule, clipping, checkpoints
  models::LlamaRunOptions run;   ///< training is forced on (LoRA dropout); gradient checkpointing, autocast
};

/// Trains `model`'s adapters (apply_lora first). @throws std::invalid_argument for bad data or options
/// or a model without adapters; the step loop's errors (TrainingCancelled, non-finite loss, …).
LoopResult train_lm_lora(models::Llama& model, const LmTrainOptions& options,
                         const std::function<void(const StepReport&)>& on_step,
                         const std::function<bool()>& cancelled);

}  // namespace mmesid::train
