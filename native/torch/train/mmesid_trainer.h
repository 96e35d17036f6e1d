// Fine-tuning MME-SID (models/mmesid.h around models/llama.h) on the shared step loop (train_loop.h):
// the trainable tensors are the Llama's LoRA adapters and the head; the base model stays frozen. One
// sample = (history, target); the loss is the head's chunked cross-entropy over all items. Data order:
// EpochOrder over the samples (a resumed run reads the same batches).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "torch/models/llama.h"
#include "torch/models/mmesid.h"
#include "torch/train/train_loop.h"

namespace mmesid::train {

struct MmesidTrainOptions {
  std::vector<int64_t> offsets;         ///< history of sample i = items[offsets[i], offsets[i + 1])
  std::vector<int32_t> items;           ///< item ids in [1, N)
  std::vector<int32_t> targets;         ///< [samples], in [1, N)
  std::vector<int64_t> prefix, suffix;  ///< the prompt's token ids around the items
  int64_t micro_batch = 4;
  LoopOptions loop;
  models::LlamaRunOptions run;  ///< training is forced on
  bool reference_head = false;  ///< the head's plain loss (MmesidHead::loss reference): the eager baseline
};

/// @throws std::invalid_argument for bad samples or options; the step loop's errors.
LoopResult train_mmesid(models::Llama& llm, models::MmesidHead& head, const MmesidTrainOptions& options,
                        const std::function<void(const StepReport&)>& on_step,
                        const std::function<bool()>& cancelled);

}  // namespace mmesid::train
