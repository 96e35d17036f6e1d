// Training loop of the MM-RQ-VAE tokenizer (native/torch/models/mm_rqvae.h). Runs synchronously on the
// calling thread (the addon gives it a thread of its own); reports through callbacks and polls a
// cancellation predicate between steps and between k-means iterations.
//
// Data: one item table per modality, float32 [num_items + 1, input_dim], row 0 = padding (never trained,
// never encoded); every table has the same number of rows. An epoch visits items 1..num_items once in
// an order shuffled by a std::mt19937_64 seeded with the seed, in batches of batch_size (a last batch of
// one item joins the one before it: the MMD needs two rows).
//
// Before the first step (not on resume), k-means initialises the codebooks (kmeans_init "plain" or
// "constrained"; "none" keeps the uniform init): per modality, the encoder output z of ALL items (no
// grad) → level 0 = k-means(z, K) (k-means++ seeding from the sampler, Lloyd iterations); the residual
// z − C_0[nearest] → level 1; and so on. "constrained" caps every cluster at ceil(n/K) members (greedy
// capacity-respecting assignment over the (point, centroid) pairs sorted by distance, ties → lower
// point, then lower centroid). The residual passed to the next level always uses the nearest codeword,
// as the model's assignment does.
//
// Optimizer: AdamW (decoupled weight decay, on every parameter, as torch.optim.AdamW), β = (0.9, 0.999),
// ε = 1e-8. Early stopping on the epoch's mean total loss; the result holds the lowest-loss epoch's
// weights.
// Reproducibility: the weights come from ATen's default CPU generator seeded with at::manual_seed(seed)
// (process-wide: run one training per process for reproducible runs); k-means seeding and the batch
// order come from the sampler. With threads = 1 the same seed gives bit-identical losses and weights.
// Checkpoints (torch::pickle_save of a dict, loadable by Python's torch.load): format
// "mmesid.tokenizer.checkpoint" version 1 with the run's fingerprint, the current and the best
// parameters (by name), AdamW's moments and step, the early-stopping state, the epoch history and both
// random states, so a resumed run continues exactly as an uninterrupted one (bit-identical, threads 1).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "torch/models/mm_rqvae.h"
#include "torch/train/adamw.h"
#include "torch/train/cancelled.h"

namespace mmesid::train {

/// One modality's item table, float32 row-major [rows, dim] (rows = num_items + 1, row 0 = padding).
struct TokenizerTable {
  std::string name;  ///< "collab" | "text" | "visual"
  int64_t rows = 0, dim = 0;
  std::vector<float> data;
};

/// Everything a training run needs (validated by the TypeScript facade; checked again here).
struct TokenizerTrainOptions {
  std::vector<TokenizerTable> tables;     ///< 1–3, in the order collab, text, visual
  std::vector<int64_t> hidden{256, 128};  ///< encoder hidden sizes of every modality
  int64_t levels = 4, codes = 256, code_dim = 64;
  models::MmRqvaeLossConfig loss;     ///< objective, incl. the Sinkhorn levels
  std::string kmeans_init = "plain";  ///< "plain" | "constrained" | "none"
  int64_t kmeans_iterations = 20;     ///< Lloyd iterations per level (stops early when stable)
  double lr = 2e-4, weight_decay = 1e-4;
  int64_t batch_size = 1024, epochs = 1000, patience = 200;
  uint64_t seed = 42;
  int threads = 1;  ///< ATen intra-op threads of the training thread (and of the kernels)
  /// Checkpoint written after every epoch (empty: none), atomically: "<path>.<pid>.tmp" then rename.
  std::string checkpoint;
  /// Continue from `checkpoint` when it exists; every setting but epochs/patience/threads must match.
  bool resume = false;
};

struct TokenizerStep {
  int64_t epoch, step, steps;     ///< 1-based epoch, 1-based step of steps in this epoch
  double loss, recon, align, rq;  ///< this step's total and unweighted parts
};

struct TokenizerEpoch {
  int64_t epoch;
  double loss, recon, align, rq;  ///< means over the epoch's steps
  double seconds;                 ///< wall time of the epoch
  bool improved;                  ///< lowest mean total loss so far
};

/// One modality's outputs, from the best weights and greedy inference assignment.
struct TokenizerModalityResult {
  std::string name;
  std::vector<int32_t> codes;    ///< int32 [num_items, L] of items 1..num_items (no padding row)
  std::vector<float> quantized;  ///< float32 [num_items, e], z_q = Σ_l C_l[code_l]
  double recon_mse = 0.0;        ///< mean over items and columns of (decoder(z_q) − x)²
};

struct TokenizerTrainResult {
  std::vector<TokenizerEpoch> epochs;
  int64_t best_epoch = 0;
  bool stopped_early = false;
  int64_t resumed_from_epoch = 0;  ///< the checkpoint's epoch when resumed, else 0
  int64_t num_items = 0;
  /// Every parameter of the best weights (MmRqvae::parameters() order and names), detached, contiguous.
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  std::vector<TokenizerModalityResult> modalities;
};

struct TokenizerCallbacks {
  std::function<void(const TokenizerStep&)> on_step;
  std::function<void(const TokenizerEpoch&)> on_epoch;
  std::function<bool()> cancelled;  ///< polled between steps and k-means iterations
};

/// The tokenizer's optimizer: AdamW with torch.optim.AdamW's β = (0.9, 0.999), ε = 1e-8.
class TokenizerAdamW : public AdamW {
 public:
  TokenizerAdamW(const std::vector<std::pair<std::string, at::Tensor>>& params, double lr,
                 double weight_decay)
      : AdamW(params, AdamWConfig{lr, weight_decay, 0.9, 0.999, 1e-8}) {}
};

/// Thrown when `cancelled()` returned true.
class TokenizerCancelled : public TrainingCancelled {
 public:
  TokenizerCancelled() : TrainingCancelled("tokenizer training was cancelled") {}
};

/// k-means of the rows of x [n, e] float32 into k centroids (n >= 1; when n < k some centroids repeat).
/// Seeding: k-means++ drawn from `rng`. Lloyd iterations until the assignment is stable or `iterations`
/// ran; an empty cluster keeps its previous centroid. `constrained`: every cluster holds at most
/// ceil(n/k) points (greedy pass over the pairs sorted by distance).
/// @return {centroids float32 [k, e], assignment int64 [n] of the rows to those centroids (nearest, or
/// the capacity-respecting pass when constrained)}.
/// @param cancelled polled between iterations (may be empty). @throws TokenizerCancelled when it says so.
std::pair<at::Tensor, at::Tensor> kmeans(const at::Tensor& x, int64_t k, int64_t iterations, bool constrained,
                                         std::mt19937_64& rng, const std::function<bool()>& cancelled = {});

/// Trains, keeps the lowest-loss epoch's weights and encodes every item with them.
/// @throws TokenizerCancelled; std::invalid_argument naming the option for bad options or tables;
/// c10::Error for a checkpoint of another run or a non-finite loss.
TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& options,
                                     const TokenizerCallbacks& callbacks);

}  // namespace mmesid::train
