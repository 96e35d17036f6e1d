// The "ours" side of the SASRec training benchmark: kept out of the eager TU so it sees only the
// trainer's light ATen headers, as the library does.
#include <ATen/Context.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "torch/bench/sasrec_bench.h"
#include "torch/train/sasrec_trainer.h"

namespace mmesid::torch_bench {
namespace {

struct OursState {
  explicit OursState(const models::SasrecConfig& config, bool bce)
      : model(config), stepper(model, 1e-3, bce) {}
  models::Sasrec model;
  train::SasrecStepper stepper;
};

at::Tensor batch_tensor(const int32_t* data, int64_t index, int64_t batch, int64_t len) {
  return at::from_blob(const_cast<int32_t*>(data + index * batch * len), {batch, len}, at::kInt)
      .to(at::kLong);
}

}  // namespace

double sasrec_train_ours(const models::SasrecConfig& config, bool bce, const SasrecTrainBatches& batches) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<OursState>> states;
  std::lock_guard<std::mutex> lock(mutex);
  std::ostringstream key;
  key << config.num_items << '/' << config.dim << '/' << config.blocks << '/' << config.heads << '/'
      << config.max_len << '/' << config.dropout << '/' << bce;
  std::unique_ptr<OursState>& state = states[key.str()];
  if (!state) {
    at::manual_seed(1234);
    state = std::make_unique<OursState>(config, bce);
  }
  const int64_t len = config.max_len;
  double loss_sum = 0.0;
  for (int64_t i = 0; i < batches.count; ++i) {
    train::SasrecBatch b;
    b.x = batch_tensor(batches.x, i, batches.batch, len);
    b.pos = batch_tensor(batches.pos, i, batches.batch, len);
    if (bce) b.neg = batch_tensor(batches.neg, i, batches.batch, len);
    loss_sum += state->stepper.step(b);
  }
  return loss_sum / static_cast<double>(std::max<int64_t>(1, batches.count));
}

}  // namespace mmesid::torch_bench
