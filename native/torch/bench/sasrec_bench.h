// SASRec training and evaluation throughput, ours against plain libtorch eager (the same-run baselines
// of `npm run bench`; never used by the library itself).
//
// Training: ours runs train::SasrecStepper — the exact step of train_sasrec — on our models::Sasrec;
// the eager baseline is the same model, loss and optimizer written the way a libtorch user would:
// torch::nn::Embedding (padding_idx 0), torch::nn::MultiheadAttention on [L, B, d] with a causal mask,
// torch::nn::LayerNorm, torch::nn::Linear feed-forward, torch::nn::Dropout, torch::optim::Adam
// (β 0.9/0.98, ε 1e-8), the same bce / masked ce as native/torch/train/sasrec_trainer.h.
// Evaluation (eager only; ours is SasrecModel.scoreInto + rankBatch in TypeScript): forward without
// dropout, last position's h·Eᵀ, history masked with index_put_ to −inf (the target stays ranked),
// rank = count of items beating the target (ties to the lower id), HR/nDCG@{5,10,20} with torch ops.
//
// Each (config, loss) model is built once per process from a fixed seed (at::manual_seed(1234)) on the
// first call and kept, so calls time steps, not initialisation. Calls are serialised by a mutex.
#pragma once

#include <cstdint>

#include "torch/models/sasrec.h"

namespace mmesid::torch_bench {

/// Prepared training batches: int32 [count, batch, max_len] each, left-padded with 0; neg is nullptr
/// for ce. pos == 0 marks positions without a target.
struct SasrecTrainBatches {
  const int32_t* x = nullptr;
  const int32_t* pos = nullptr;
  const int32_t* neg = nullptr;
  int64_t count = 0, batch = 0;
};

/// Users to evaluate, in batches of `eval_batch`: inputs int32 [users, max_len] (left-padded), targets
/// int32 [users] in [1, num_items], history CSR (offsets int32 [users + 1], items int32) to mask.
struct SasrecEvalUsers {
  const int32_t* inputs = nullptr;
  const int32_t* targets = nullptr;
  const int32_t* history_offsets = nullptr;
  const int32_t* history_items = nullptr;
  int64_t users = 0, eval_batch = 256;
};

/// Ours: one train::SasrecStepper step (lr 1e-3) per batch. @return the mean loss of the steps.
double sasrec_train_ours(const models::SasrecConfig& config, bool bce, const SasrecTrainBatches& batches);

/// The libtorch eager baseline of the same steps (torch::nn + torch::optim). @return the mean loss.
double sasrec_train_eager(const models::SasrecConfig& config, bool bce, const SasrecTrainBatches& batches);

/// The libtorch eager full-ranking evaluation. @return the sum of nDCG@10 over the users.
double sasrec_evaluate_eager(const models::SasrecConfig& config, const SasrecEvalUsers& users);

}  // namespace mmesid::torch_bench
