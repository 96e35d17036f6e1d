// Training loop of the SASRec collaborative encoder (native/torch/models/sasrec.h) on the leave-one-out
// split of the official MME-SID code, with validation after every epoch by the full-ranking evaluator
// (native/eval/ranking.h: history masked, ties to the lower item id), best-nDCG@10 weights and early
// stopping. Runs synchronously on the calling thread (the addon gives it a thread of its own); reports
// through callbacks and polls a cancellation predicate between steps and between evaluation batches.
//
// Data: users' chronological item lists as CSR (offsets int32 [users + 1], items int32, ids in
// [1, num_items]). Training part of a user with n items: items[:n−2] when n >= 3, else all n items.
// A training row is that part's last max_len + 1 items: input = part[:-1], positive targets = part[1:],
// left-padded with 0 to max_len (users whose part has < 2 items give no row).
// Validation: input items[:n−2] → target items[n−2]; test: items[:n−1] → items[n−1] (users with n >= 3).
// The model reads the last max_len input items; the evaluator masks the whole input.
//
// Losses:
//   bce — the original SASRec objective: at every non-padded position, the positive next item against ONE
//         negative drawn uniformly from the items not in the user's training part;
//         loss = BCE(σ(s⁺), 1) + BCE(σ(s⁻), 0), each averaged over the non-padded positions.
//   ce  — full softmax cross-entropy over items 1..num_items (padding excluded) at EVERY non-padded
//         position (the per-position variant used by SASRec/BERT4Rec-style CE training), averaged over them.
// Optimizer: Adam, β = (0.9, 0.98), ε = 1e-8 (the reference implementation's settings), no weight decay.
// Reproducibility: the weights and dropout masks come from ATen's default CPU generator, seeded with
// at::manual_seed(seed) at the start (process-wide: run one training per process for reproducible
// runs); batch order and negatives come from a std::mt19937_64 seeded with the same seed. With
// threads = 1 the same seed gives bit-identical losses and weights.
// Checkpoints (torch::pickle_save of a dict, loadable by Python's torch.load): format
// "mmesid.sasrec.checkpoint" version 1 with the configuration, the current and the best parameters
// (by name), Adam's moments and step, the early-stopping state, the epoch history, and both random
// states (ATen's CPU generator and the sampler's mt19937_64), so a resumed run continues exactly as an
// uninterrupted one would (bit-identical with threads = 1).
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "torch/models/sasrec.h"
#include "torch/train/adamw.h"
#include "torch/train/cancelled.h"

namespace mmesid::train {

/// Everything a training run needs (validated by the TypeScript facade; checked again here).
struct SasrecTrainOptions {
  models::SasrecConfig model;    ///< model.num_items must be set
  std::vector<int32_t> offsets;  ///< int32 [users + 1], CSR row pointers
  std::vector<int32_t> items;    ///< int32, chronological items, each in [1, num_items]
  std::string loss = "bce";      ///< "bce" | "ce"
  double lr = 1e-3;              ///< Adam learning rate
  int64_t batch_size = 128;      ///< training rows per step
  int64_t epochs = 200;          ///< maximum epochs
  int64_t patience = 10;         ///< stop after this many epochs without a better validation nDCG@10
  uint64_t seed = 42;
  int threads = 1;                ///< ATen intra-op threads of the training thread (and the evaluator)
  int64_t eval_batch_size = 256;  ///< users per evaluation batch
  /// Checkpoint file written after every epoch (empty: none). Written atomically: torch pickle bytes
  /// to "<path>.<pid>.tmp" in the same folder, then renamed over the path.
  std::string checkpoint;
  /// Continue from `checkpoint` when that file exists (else start afresh). The configuration, loss,
  /// seed and data size must match the checkpoint's.
  bool resume = false;
};

/// Means over the evaluated users at the cut-offs kSasrecKs.
struct SasrecMetrics {
  int64_t users = 0;
  std::vector<double> hr, ndcg, mrr;  ///< one value per cut-off
};

/// The cut-offs reported (nDCG@10, the second, selects the best epoch).
inline const std::vector<int32_t>& sasrec_ks() {
  static const std::vector<int32_t> ks{5, 10, 20};
  return ks;
}

struct SasrecStep {
  int64_t epoch, step, steps;  ///< 1-based epoch, 1-based step of steps in this epoch
  double loss;                 ///< this step's loss
  double samples_per_second;   ///< training rows per second over this epoch so far
};

struct SasrecEpoch {
  int64_t epoch;
  double loss;          ///< mean training loss of the epoch
  double seconds;       ///< wall time of the epoch's training steps
  double eval_seconds;  ///< wall time of the validation
  SasrecMetrics valid;
  bool improved;  ///< best validation nDCG@10 so far
};

struct SasrecTrainResult {
  std::vector<SasrecEpoch> epochs;
  int64_t best_epoch = 0;
  bool stopped_early = false;
  SasrecMetrics test;           ///< of the best weights
  std::vector<float> item_emb;  ///< float32 [num_items + 1, dim] of the best weights, row 0 = padding
  /// Every parameter of the best weights (Sasrec::parameters() order and names), detached, contiguous.
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  int64_t training_rows = 0;
  int64_t resumed_from_epoch = 0;  ///< the checkpoint's epoch when resumed, else 0
};

struct SasrecCallbacks {
  std::function<void(const SasrecStep&)> on_step;
  std::function<void(const SasrecEpoch&)> on_epoch;
  std::function<bool()> cancelled;  ///< polled between steps and evaluation batches
};

/// SASRec's optimizer: Adam (AdamW without decay), β = (0.9, 0.98), ε = 1e-8 (the reference SASRec's).
class SasrecAdam : public AdamW {
 public:
  /// @param lr learning rate > 0
  SasrecAdam(const std::vector<std::pair<std::string, at::Tensor>>& params, double lr)
      : AdamW(params, AdamWConfig{lr, 0.0, 0.9, 0.98, 1e-8}) {}
};

/// One training batch, int64 [B, L] each, left-padded with 0: input items x, positive targets pos, and
/// (bce only; undefined for ce) one negative per position neg. Positions with pos == 0 carry no loss.
struct SasrecBatch {
  at::Tensor x, pos, neg;
};

/// The training loss of one batch (see "Losses" above), a float32 scalar with autograd history; runs
/// the model with dropout. @param bce true: bce, false: ce.
at::Tensor sasrec_loss(const models::Sasrec& model, const SasrecBatch& batch, bool bce);

/// The training step of train_sasrec, exposed so that benchmarks time exactly the trainer's code path:
/// zero the gradients, loss, autograd backward, Adam update. Holds references to `model`, which must
/// outlive it. Draws dropout masks from ATen's default CPU generator.
class SasrecStepper {
 public:
  SasrecStepper(models::Sasrec& model, double lr, bool bce);

  /// One optimisation step on `batch`. @return the batch's loss before the update.
  double step(const SasrecBatch& batch);

  SasrecAdam& optimizer() { return adam_; }

 private:
  models::Sasrec& model_;
  SasrecAdam adam_;
  bool bce_;
};

/// Trains, validating after each epoch; restores the best epoch's weights, evaluates them on the test
/// split and returns their item embedding.
/// @throws TrainingCancelled; c10::Error / std::invalid_argument on inconsistent options or data.
SasrecTrainResult train_sasrec(const SasrecTrainOptions& options, const SasrecCallbacks& callbacks);

}  // namespace mmesid::train
