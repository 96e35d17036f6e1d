#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "lm_trainer.h"

#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

namespace mmesid::train {

LoopResult train_lm_lora(models::Llama& model, const LmTrainOptions& o,
                         const std::function<void(const StepReport&)>& on_step,
                         const std::function<bool()>& cancelled) {
  if (!model.has_lora())
    throw std::invalid_argument("train_lm_lora: the model has no LoRA adapters (apply_lora first)");
  if (o.offsets.size() < 2) throw std::invalid_argument("train_lm_lora: no sequences");
  if (o.max_length < 2) throw std::invalid_argument("train_lm_lora: max_length must be >= 2");
  if (o.micro_batch < 1) throw std::invalid_argument("train_lm_lora: micro_batch must be >= 1");
  const int64_t n = static_cast<int64_t>(o.offsets.size()) - 1;
  const int64_t vocab = model.config().vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    if (o.offsets[i + 1] - o.offsets[i] < 2)
      throw std::invalid_argument("train_lm_lora: sequence " + std::to_string(i) +
                                  " has fewer than 2 tokens");
  }
  if (o.offsets.front() != 0 || o.offsets.back() != static_cast<int64_t>(o.tokens.size()))
    throw std::invalid_argument("train_lm_lora: offsets do not cover the tokens");
  for (size_t i = 0; i < o.tokens.size(); ++i) {
    if (o.tokens[i] < 0 || o.tokens[i] >= vocab)
      throw std::invalid_argument("train_lm_lora: token " + std::to_string(o.tokens[i]) + " at index " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(vocab) + ")");
  }
  models::LlamaRunOptions run = o.run;
  run.training = true;

  EpochOrder order(n, o.micro_batch, o.loop.seed);
  const MicroLoss micro_loss = [&](int64_t step, int64_t micro, std::mt19937_64&) {
    const std::vector<int64_t> batch = order.micro_batch(step * o.loop.accumulation_steps + micro);
    const auto count = static_cast<int64_t>(batch.size());
    int64_t longest = 0;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t s = batch[static_cast<size_t>(k)];
      longest = std::max(longest, std::min(o.max_length, o.offsets[s + 1] - o.offsets[s]));
    }
    std::vector<int64_t> ids(static_cast<size_t>(count * longest), 0),
        labels(static_cast<size_t>(count * longest), -100), mask(static_cast<size_t>(count * longest), 0);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t s = batch[static_cast<size_t>(k)];
      const int64_t len = std::min(o.max_length, o.offsets[s + 1] - o.offsets[s]);
      for (int64_t t = 0; t < len; ++t) {
        const size_t at = static_cast<size_t>(k * longest + t);
        ids[at] = labels[at] = o.tokens[static_cast<size_t>(o.offsets[s] + t)];
        mask[at] = 1;
      }
    }
    const auto long_opts = at::TensorOptions().dtype(at::kLong);
    const at::Tensor input = at::from_blob(ids.data(), {count, longest}, long_opts).clone();
    const at::Tensor target =
        at::from_blob(labels.data(), {count, longest}, long_opts).clone().to(model.device());
    const at::Tensor attention = at::from_blob(mask.data(), {count, longest}, long_opts).clone();
    const at::Tensor hidden = model.forward(model.embed(input), attention, at::Tensor(), nullptr, run);
    const at::Tensor logits = model.logits(hidden.narrow(1, 0, longest - 1));
    return at::cross_entropy_loss(logits.reshape({-1, vocab}).to(at::kFloat),
                                  target.narrow(1, 1, longest - 1).reshape({-1}), {}, at::Reduction::Mean,
                                  -100);
  };
  return run_train_loop(model.lora_parameters(), o.loop, micro_loss, on_step, cancelled);
}

}  // namespace mmesid::train
