#include "ranking.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace mmesid::eval {
namespace {

int resolve_threads(int threads) {
  return threads > 0 ? threads : std::max(1, omp_get_num_procs());
}

std::string at(const char* name, int64_t index) {
  return std::string(name) + "[" + std::to_string(index) + "]";
}

// What went wrong for one user, found inside the parallel loop; the lowest user index is reported so the
// message does not depend on scheduling.
struct UserFault {
  int64_t user = std::numeric_limits<int64_t>::max();
  int kind = 0;  // 1: NaN score, 2: history item out of range
  int64_t where = 0;
  int64_t value = 0;
};

}  // namespace

void validate_ranking_batch(const RankingBatch& b) {
  if (b.batch < 0 || b.num_items < 1) {
    throw ArgumentError("batch", "batch >= 0 and numItems >= 1",
                        std::to_string(b.batch) + " users, " + std::to_string(b.num_items) + " items");
  }
  for (int64_t u = 0; u < b.batch; ++u) {
    const int32_t t = b.targets[u];
    if (t < 1 || t > b.num_items) {
      throw ArgumentError(at("options.targets", u), "an item id in [1, " + std::to_string(b.num_items) + "]",
                          std::to_string(t));
    }
  }
  if (b.history_offsets[0] != 0) {
    throw ArgumentError("options.historyOffsets[0]", "0", std::to_string(b.history_offsets[0]));
  }
  for (int64_t u = 0; u < b.batch; ++u) {
    if (b.history_offsets[u + 1] < b.history_offsets[u]) {
      throw ArgumentError(
          at("options.historyOffsets", u + 1), "non-decreasing offsets",
          std::to_string(b.history_offsets[u + 1]) + " after " + std::to_string(b.history_offsets[u]));
    }
  }
  if (b.history_offsets[b.batch] != b.history_length) {
    throw ArgumentError(at("options.historyOffsets", b.batch),
                        "the length of options.historyItems (" + std::to_string(b.history_length) + ")",
                        std::to_string(b.history_offsets[b.batch]));
  }
}

void rank_targets(const RankingBatch& b, int threads, int32_t* ranks) {
  validate_ranking_batch(b);
  const int64_t n = b.num_items;
  const int64_t stride = n + 1;
  UserFault fault;
#pragma omp parallel num_threads(resolve_threads(threads))
  {
    // seen[item] == u marks the items of user u already masked (histories may repeat items).
    std::vector<int64_t> seen(static_cast<size_t>(stride), -1);
    UserFault local;
#pragma omp for schedule(dynamic, 8)
    for (int64_t u = 0; u < b.batch; ++u) {
      if (u > local.user) continue;
      const float* row = b.scores + u * stride;
      const int32_t t = b.targets[u];
      const float st = row[t];
      // Two branch-free passes (vectorisable): ids below t win ties, ids above t must be strictly greater.
      int64_t beat = 0, nan = 0;
      for (int64_t j = 1; j < t; ++j) {
        beat += row[j] >= st;
        nan += row[j] != row[j];
      }
      for (int64_t j = t + 1; j <= n; ++j) {
        beat += row[j] > st;
        nan += row[j] != row[j];
      }
      if (nan > 0 || st != st) {
        int64_t j = 1;
        while (j <= n && row[j] == row[j]) ++j;
        local = {u, 1, j, 0};
        continue;
      }
      for (int32_t p = b.history_offsets[u]; p < b.history_offsets[u + 1]; ++p) {
        const int32_t h = b.history_items[p];
        if (h < 0 || h > n) {
          local = {u, 2, p, h};
          break;
        }
        if (h == 0 || h == t || seen[h] == u) continue;
        seen[h] = u;
        if (h < t ? row[h] >= st : row[h] > st) --beat;
      }
      ranks[u] = static_cast<int32_t>(beat);
    }
#pragma omp critical(mmesid_eval_fault)
    if (local.user < fault.user) fault = local;
  }
  if (fault.kind == 1) {
    throw ArgumentError(at("options.scores", fault.user * stride + fault.where), "a score that is not NaN",
                        "NaN (user " + std::to_string(fault.user) + " of the batch, item " +
                            std::to_string(fault.where) + ")");
  }
  if (fault.kind == 2) {
    throw ArgumentError(at("options.historyItems", fault.where),
                        "an item id in [0, " + std::to_string(n) + "]", std::to_string(fault.value));
  }
}

void accumulate_metrics(const int32_t* ranks, const int32_t* targets, int64_t batch,
                        const RankingConfig& config, double* sums) {
  const int64_t nk = static_cast<int64_t>(config.ks.size());
  for (int64_t u = 0; u < batch; ++u) {
    const int32_t rank = ranks[u];
    int groups[2] = {kGroupAll, -1};
    if (config.train_frequency) {
      groups[1] = config.train_frequency[targets[u]] <= config.cold_threshold ? kGroupCold : kGroupWarm;
    }
    const double ndcg = 1.0 / std::log2(static_cast<double>(rank) + 2.0);
    const double mrr = 1.0 / (static_cast<double>(rank) + 1.0);
    for (const int g : groups) {
      if (g < 0) continue;
      sums[g * group_stride(nk)] += 1.0;
      for (int64_t k = 0; k < nk; ++k) {
        if (rank >= config.ks[static_cast<size_t>(k)]) continue;
        sums[sums_index(g, kMetricHr, k, nk)] += 1.0;
        sums[sums_index(g, kMetricNdcg, k, nk)] += ndcg;
        sums[sums_index(g, kMetricMrr, k, nk)] += mrr;
      }
    }
  }
}

void evaluate_ranking(const RankingBatch& batch, const RankingConfig& config, int32_t* ranks, double* sums) {
  for (size_t k = 0; k < config.ks.size(); ++k) {
    if (config.ks[k] < 1)
      throw ArgumentError(at("options.ks", static_cast<int64_t>(k)), "an integer >= 1",
                          std::to_string(config.ks[k]));
  }
  rank_targets(batch, config.threads, ranks);
  std::fill(sums, sums + sums_length(static_cast<int64_t>(config.ks.size())), 0.0);
  accumulate_metrics(ranks, batch.targets, batch.batch, config, sums);
}

}  // namespace mmesid::eval
