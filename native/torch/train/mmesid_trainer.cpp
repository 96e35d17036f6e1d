#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "mmesid_trainer.h"

#include <ATen/ops/from_blob.h>

#include <stdexcept>
#include <string>

namespace mmesid::train {

LoopResult train_mmesid(models::Llama& llm, models::MmesidHead& head, const MmesidTrainOptions& o,
                        const std::function<void(const StepReport&)>& on_step,
                        const std::function<bool()>& cancelled) {
  const auto n = static_cast<int64_t>(o.targets.size());
  if (n < 1) throw std::invalid_argument("train_mmesid: no training samples");
  if (static_cast<int64_t>(o.offsets.size()) != n + 1 || o.offsets.front() != 0 ||
      o.offsets.back() != static_cast<int64_t>(o.items.size()))
    throw std::invalid_argument("train_mmesid: offsets do not describe the histories");
  const int64_t items = head.num_items();
  for (size_t i = 0; i < o.items.size(); ++i)
    if (o.items[i] < 1 || o.items[i] >= items)
      throw std::invalid_argument("train_mmesid: history item " + std::to_string(o.items[i]) +
                                  " outside [1, " + std::to_string(items) + ")");
  for (int64_t i = 0; i < n; ++i) {
    if (o.targets[static_cast<size_t>(i)] < 1 || o.targets[static_cast<size_t>(i)] >= items)
      throw std::invalid_argument("train_mmesid: target of sample " + std::to_string(i) + " outside [1, " +
                                  std::to_string(items) + ")");
  }
  if (o.micro_batch < 1) throw std::invalid_argument("train_mmesid: micro_batch must be >= 1");
  std::vector<std::pair<std::string, at::Tensor>> params = llm.lora_parameters();
  for (const auto& p : head.parameters()) params.push_back(p);
  models::LlamaRunOptions run = o.run;
  run.training = true;
  EpochOrder order(n, o.micro_batch, o.loop.seed);
  const MicroLoss micro_loss = [&](int64_t step, int64_t micro, std::mt19937_64&) {
    models::MmesidPromptBatch batch;
    batch.offsets = o.offsets.data();
    batch.items = o.items.data();
    batch.rows = order.micro_batch(step * o.loop.accumulation_steps + micro);
    batch.prefix = &o.prefix;
    batch.suffix = &o.suffix;
    std::vector<int64_t> targets;
    for (const int64_t r : batch.rows) targets.push_back(o.targets[static_cast<size_t>(r)]);
    const at::Tensor h = models::mmesid_last_hidden(llm, head, batch, run);
    const at::Tensor t =
        at::from_blob(targets.data(), {static_cast<int64_t>(targets.size())}, at::kLong).clone();
    return head.loss(h, t, 0, o.reference_head);
  };
  return run_train_loop(params, o.loop, micro_loss, on_step, cancelled);
}

}  // namespace mmesid::train
