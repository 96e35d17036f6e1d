// Full-ranking evaluation of next-item recommendation (the official MME-SID protocol): every item
// 1..num_items is ranked against the user's target, the user's history items are masked, and HR@K,
// nDCG@K and MRR@K are accumulated per K, overall and split cold/warm by the target's training
// frequency. Pure C++17 + OpenMP; no allocation proportional to more than one batch.
//
// Conventions (all buffers are owned by the caller, row-major, densely packed):
//   scores           float32 [batch, num_items + 1]; column 0 is the padding item and is never ranked.
//                    ±Infinity are ordinary values (e.g. a caller's own mask); NaN is rejected.
//   targets          int32 [batch], each in [1, num_items].
//   history_offsets  int32 [batch + 1], CSR row pointers: offsets[0] = 0, non-decreasing,
//                    offsets[batch] = length of history_items.
//   history_items    int32 [offsets[batch]], each in [0, num_items]; 0 (padding) is ignored, repeats
//                    are masked once.
//   train_frequency  optional int32 [num_items + 1]: the item's count in the training split; enables the
//                    cold/warm split (cold: frequency <= cold_threshold).
//
// Rank of a target t with score s_t: the number of unmasked items j in 1..num_items, j != t, that beat
// it, where j beats t when s_j > s_t, or s_j == s_t and j < t (ties go to the LOWER item id, so a target
// tied with lower ids ranks after them: ties are never resolved in the target's favour). Masked items
// are the user's history items other than t itself: when the target also occurs in the history it is
// still ranked (it is the item being evaluated), never masked.
//
// Metrics of one user for a cut-off K (0 when rank >= K): HR = 1, nDCG = 1 / log2(rank + 2),
// MRR = 1 / (rank + 1). Ranks are computed in parallel; the sums are then reduced serially in user order
// in double precision, so results are bit-identical for any thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common.h"

namespace mmesid::eval {

/// Precondition failures name the argument, the expectation and the value (the addon turns them into
/// the TypeScript InvalidArgumentError); the same type the kernels throw.
using ArgumentError = mmesid::kernels::ArgumentError;

/// One batch of users to rank (see the conventions above for shapes and ranges).
struct RankingBatch {
  const float* scores = nullptr;
  int64_t batch = 0;
  int64_t num_items = 0;
  const int32_t* targets = nullptr;
  const int32_t* history_offsets = nullptr;
  const int32_t* history_items = nullptr;
  int64_t history_length = 0;
};

/// What to accumulate.
struct RankingConfig {
  /// Cut-offs K (each >= 1), in output order.
  std::vector<int32_t> ks;
  /// Optional int32 [num_items + 1]; nullptr disables the cold/warm groups (their sums stay 0).
  const int32_t* train_frequency = nullptr;
  /// A target is cold when train_frequency[target] <= cold_threshold.
  int64_t cold_threshold = 5;
  /// Threads for the ranking (0 = all hardware threads).
  int threads = 0;
};

/// Groups of the sums buffer, in order.
enum RankingGroup : int { kGroupAll = 0, kGroupCold = 1, kGroupWarm = 2, kGroupCount = 3 };
/// Metrics of the sums buffer, in order.
enum RankingMetric : int { kMetricHr = 0, kMetricNdcg = 1, kMetricMrr = 2, kMetricCount = 3 };

/// Doubles per group in the sums buffer: [users, HR@k for every k, nDCG@k for every k, MRR@k ...].
inline int64_t group_stride(int64_t num_ks) {
  return 1 + kMetricCount * num_ks;
}
/// Length of the sums buffer: kGroupCount * group_stride(num_ks).
inline int64_t sums_length(int64_t num_ks) {
  return kGroupCount * group_stride(num_ks);
}
/// Index of metric m at cut-off index k of group g in the sums buffer.
inline int64_t sums_index(int group, int metric, int64_t k, int64_t num_ks) {
  return group * group_stride(num_ks) + 1 + metric * num_ks + k;
}

/// Checks the targets and the history offsets of `batch` (history items and scores are checked while
/// ranking). @throws ArgumentError naming the first violation.
void validate_ranking_batch(const RankingBatch& batch);

/// Writes ranks[u] (int32 [batch]) for every user. @throws ArgumentError on NaN scores or bad indices.
void rank_targets(const RankingBatch& batch, int threads, int32_t* ranks);

/// Adds the metrics of `ranks` to `sums` (double [sums_length(ks.size())]; not cleared first), serially
/// in user order.
void accumulate_metrics(const int32_t* ranks, const int32_t* targets, int64_t batch,
                        const RankingConfig& config, double* sums);

/// rank_targets + accumulate_metrics into zero-initialised `sums`.
/// @throws ArgumentError on NaN scores, bad indices or a K < 1.
void evaluate_ranking(const RankingBatch& batch, const RankingConfig& config, int32_t* ranks, double* sums);

}  // namespace mmesid::eval
