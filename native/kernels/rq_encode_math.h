// Scalar maths of residual-quantization encode shared by the CPU kernel, its reference and the CUDA
// twin: the candidate ordering rule of rq_encode.h, insertion into a sorted top-B list, beam-count
// bookkeeping and the running-error update. Everything here is MMESID_HD so the CUDA twin uses the
// very same formulas that the CPU tests exercise.
#pragma once

#include <cstdint>

#include "common.h"
#include "rq_encode.h"

namespace mmesid::kernels {

/// True when candidate a = (err_a, parent_a, code_a) ranks strictly before candidate b.
/// Lower squared error first; NaN errors rank after every number (so a NaN never displaces a real
/// candidate); exact ties — including +0/−0, equal infinities and NaN against NaN — go to the lower
/// (parent beam rank, code) pair. Distinct (parent, code) pairs are never equivalent, so this is a
/// strict total order and every implementation picks the same winners from the same scores.
template <typename T>
MMESID_HD bool rq_candidate_before(T err_a, int32_t parent_a, int32_t code_a, T err_b, int32_t parent_b,
                                   int32_t code_b) {
  const bool nan_a = !(err_a == err_a);
  const bool nan_b = !(err_b == err_b);
  if (nan_a != nan_b) return nan_b;
  if (!nan_a && err_a != err_b) return err_a < err_b;
  if (parent_a != parent_b) return parent_a < parent_b;
  return code_a < code_b;
}

/// Inserts candidate (err, parent, code) into the list errs/parents/codes, which holds `count`
/// entries sorted by rq_candidate_before and has room for `capacity` (>= 1). Keeps the best
/// `capacity` entries; a candidate that does not beat the last entry of a full list is dropped.
/// Returns the new count (min(count + 1, capacity)). Cost: O(log count) compares + O(count) moves.
template <typename T>
MMESID_HD int rq_topk_insert(T* errs, int32_t* parents, int32_t* codes, int count, int capacity, T err,
                             int32_t parent, int32_t code) {
  if (count >= capacity) {
    if (!rq_candidate_before(err, parent, code, errs[capacity - 1], parents[capacity - 1],
                             codes[capacity - 1])) {
      return capacity;
    }
    count = capacity - 1;
  }
  int lo = 0, hi = count;  // first position whose entry ranks after the candidate
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (rq_candidate_before(err, parent, code, errs[mid], parents[mid], codes[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  for (int i = count; i > lo; --i) {
    errs[i] = errs[i - 1];
    parents[i] = parents[i - 1];
    codes[i] = codes[i - 1];
  }
  errs[lo] = err;
  parents[lo] = parent;
  codes[lo] = code;
  return count + 1;
}

/// Squared error of beam + codeword c from the beam's own squared error and inner products:
/// ‖r − c‖² = ‖r‖² + ‖c‖² − 2⟨r, c⟩ with r = x − s_beam and ⟨r, c⟩ = ⟨x, c⟩ − ⟨s_beam, c⟩.
template <typename T>
MMESID_HD T rq_extended_error(T beam_err, T code_sq_norm, T residual_dot_code) {
  return beam_err + code_sq_norm - T(2) * residual_dot_code;
}

/// Number of partial sequences kept after a level that starts with `current` beams: every
/// (beam, code) candidate is distinct, so it is min(beam, current · K) (saturating, no overflow).
MMESID_HD int64_t rq_next_beam_count(int64_t current, int64_t codebook_size, int64_t beam) {
  if (current >= beam || current > beam / codebook_size) return beam;
  return current * codebook_size;
}

/// K^L, saturated at `cap` (so it never overflows): the largest valid beam is min(K^L, INT_MAX).
MMESID_HD int64_t rq_max_beam(int64_t codebook_size, int64_t levels, int64_t cap) {
  int64_t total = 1;
  for (int64_t l = 0; l < levels; ++l) {
    if (total > cap / codebook_size) return cap;
    total *= codebook_size;
  }
  return total < cap ? total : cap;
}

/// Precondition checks of rq_encode.h: throws ArgumentError (a std::invalid_argument naming the
/// argument, e.g. "Expected an integer in [1, K^L = 64] for beam but received 65"). Host only.
inline void rq_check_arguments(const char* what, const float* x, const float* codebooks,
                               const RqEncodeShape& shape, const int32_t* codes) {
  const auto check = [what](bool ok, const char* argument, const std::string& expected, int64_t received) {
    if (!ok) {
      throw ArgumentError(std::string(what) + ": " + argument, expected, std::to_string(received));
    }
  };
  check(shape.n >= 1, "n", "an integer >= 1", shape.n);
  check(shape.dim >= 1, "dim", "an integer >= 1", shape.dim);
  check(shape.levels >= 1, "levels", "an integer >= 1", shape.levels);
  check(shape.codebook_size >= 1 && shape.codebook_size <= INT32_MAX, "codebook_size",
        "an integer in [1, 2^31 - 1]", shape.codebook_size);
  const int64_t max_beam = rq_max_beam(shape.codebook_size, shape.levels, INT32_MAX);
  check(shape.beam >= 1 && shape.beam <= max_beam, "beam",
        "an integer in [1, K^L = " + std::to_string(max_beam) + "]", shape.beam);
  require(x != nullptr && codebooks != nullptr && codes != nullptr, what,
          "x, codebooks and codes must not be null");
}

}  // namespace mmesid::kernels
