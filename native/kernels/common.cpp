#include "common.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <thread>

namespace mmesid::kernels {

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

ScopedThreads::ScopedThreads(int threads)
    : previous_(omp_get_max_threads()), count_(resolve_threads(threads)) {
  omp_set_num_threads(count_);
}

ScopedThreads::~ScopedThreads() {
  omp_set_num_threads(previous_);
}

int64_t first_non_finite(const float* data, int64_t count, int threads) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  int64_t first = -1;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads)) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kBlock, end = std::min(count, begin + kBlock);
    bool bad = false;
    // Branch-free test over the block (vectorises); the exact index is searched only on failure.
#pragma omp simd reduction(| : bad)
    for (int64_t i = begin; i < end; ++i) bad |= !(std::fabs(data[i]) <= 3.402823466e+38f);
    if (!bad) continue;
    for (int64_t i = begin; i < end; ++i) {
      if (!std::isfinite(data[i])) {
#pragma omp critical(mmesid_first_non_finite)
        if (first < 0 || i < first) first = i;
        break;
      }
    }
  }
  return first;
}

void require_finite(const float* data, int64_t count, int64_t row_width, const char* argument, int threads) {
  const int64_t i = first_non_finite(data, count, threads);
  if (i < 0) return;
  const float v = data[i];
  std::string what = std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
  what += " at index " + std::to_string(i);
  if (row_width > 0)
    what += " (row " + std::to_string(i / row_width) + ", column " + std::to_string(i % row_width) + ")";
  throw ArgumentError(argument, "finite values", what);
}

}  // namespace mmesid::kernels
