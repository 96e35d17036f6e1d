// Scalar maths shared by the MK-MMD and InfoNCE kernels (CPU optimized, CUDA twins; the double
// references stay independent of it on purpose). Everything here is MMESID_HD so the same formula runs
// in both places and the CPU tests cover it. The CPU-only part at the bottom (a vectorised exp on GCC
// vector extensions) is hidden from nvcc.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#include "common.h"

namespace mmesid::kernels {

/// F.normalize's eps: rows are divided by max(‖row‖, kNormEps).
constexpr double kNormEps = 1e-12;

// ------------------------------------------------------------------ elementary functions

/// exp/log by overload for float and double, host and device.
MMESID_HD float hd_exp(float x) {
  return ::expf(x);
}
MMESID_HD double hd_exp(double x) {
  return ::exp(x);
}
MMESID_HD float hd_log(float x) {
  return ::logf(x);
}
MMESID_HD double hd_log(double x) {
  return ::log(x);
}

/// Default exp functor for the templates below (the CPU vector path passes its own).
struct ScalarExp {
  template <typename T>
  MMESID_HD T operator()(T x) const {
    return hd_exp(x);
  }
};

// ------------------------------------------------------------------ MK-MMD

/// Weight of the ordered pair (x_i, x_j) or (y_i, y_j), i ≠ j, in the estimator: 1 / (n(n−1)).
MMESID_HD double mmd_within_weight(int64_t n) {
  return 1.0 / (static_cast<double>(n) * static_cast<double>(n - 1));
}

/// Weight of the ordered pair (x_i, y_j) or (y_j, x_i), any i, j: −1 / n².
MMESID_HD double mmd_cross_weight(int64_t n) {
  return -1.0 / (static_cast<double>(n) * static_cast<double>(n));
}

/// The estimator's constant term 2 / (n − 1).
MMESID_HD double mmd_constant(int64_t n) {
  return 2.0 / static_cast<double>(n - 1);
}

/// Weight of the ordered pair (z_p, z_q) of z = [x; y] (indices in [0, 2n)): 0 on the diagonal,
/// mmd_within_weight inside a set, mmd_cross_weight across sets. loss = Σ_{p,q} w_pq k(z_p, z_q) + 2/(n−1).
MMESID_HD double mmd_pair_weight(int64_t p, int64_t q, int64_t n) {
  if (p == q) return 0.0;
  return ((p < n) == (q < n)) ? mmd_within_weight(n) : mmd_cross_weight(n);
}

/// Multi-kernel Gaussian from a squared distance: value = Σ_s exp(c_s · dist2) and slope = ∂value/∂dist2
/// = Σ_s c_s · exp(c_s · dist2), with c_s = −1 / (2σ_s²) (see mmd_kernel_coefficient). T is float,
/// double, or a CPU vector type; `exp_fn` maps T to T.
template <typename T, typename C, typename Exp>
MMESID_HD void mk_gaussian(T dist2, const C* coef, int count, Exp exp_fn, T& value, T& slope) {
  T v{};
  T sl{};
  for (int s = 0; s < count; ++s) {
    const T e = exp_fn(dist2 * coef[s]);
    v += e;
    sl += e * coef[s];
  }
  value = v;
  slope = sl;
}

/// c_s = −1 / (2σ²) for one kernel of bandwidth σ².
MMESID_HD double mmd_kernel_coefficient(double sigma2) {
  return -0.5 / sigma2;
}

/// Gradient coefficient of an ordered pair: with M_pq = mmd_grad_coefficient(w_pq, slope_pq),
/// ∂loss/∂z_p = Σ_q M_pq (z_p − z_q) (both orders of each pair, σ constant).
template <typename T, typename W>
MMESID_HD T mmd_grad_coefficient(W weight, T slope) {
  return slope * (static_cast<W>(4) * weight);
}

/// Mean over all (2n)² ordered pairs of squared distances from Σ_p ‖z_p − z̄‖² (the centred form of
/// (2/N)Σ‖z‖² − 2‖z̄‖², identical in exact arithmetic and free of its cancellation).
MMESID_HD double mmd_mean_pair_distance(double centred_sq_sum, int64_t n) {
  return 2.0 * centred_sq_sum / static_cast<double>(2 * n);
}

// ------------------------------------------------------------------ online log-sum-exp

/// Streaming log-sum-exp: the running max and Σ exp(x − max). Merge blocks with merge(), single
/// values with add(). Empty = (−inf, 0); value() of an empty accumulator is −inf. NaN propagates.
template <typename T>
struct LseAccumulator {
  T max = -static_cast<T>(INFINITY);
  T sum = 0;

  /// Merges a block summarised as (block_max, Σ exp(x − block_max)).
  template <typename Exp = ScalarExp>
  MMESID_HD void merge(T block_max, T block_sum, Exp exp_fn = Exp()) {
    if (block_max == -static_cast<T>(INFINITY)) return;  // empty block (also keeps −inf − −inf out)
    if (block_max > max) {
      sum = sum * exp_fn(max - block_max) + block_sum;
      max = block_max;
    } else {
      sum += block_sum * exp_fn(block_max - max);
    }
  }

  template <typename Exp = ScalarExp>
  MMESID_HD void add(T x, Exp exp_fn = Exp()) {
    merge(x, static_cast<T>(1), exp_fn);
  }

  MMESID_HD T value() const { return max + hd_log(sum); }
};

// ------------------------------------------------------------------ InfoNCE

/// 1 / max(norm, eps): the row scale of F.normalize.
MMESID_HD double normalize_inverse(double norm) {
  return 1.0 / (norm >= kNormEps ? norm : kNormEps);
}

/// Whether the normalisation backward projects out the row direction: true when the norm is not
/// clamped (torch's clamp_min passes the gradient through at equality). Backward of â = a / max(‖a‖, eps):
///   ∂a = (g − â (â·g)) / ‖a‖  when ‖a‖ >= eps,   g / eps  otherwise.
MMESID_HD bool normalize_projects(double norm) {
  return norm >= kNormEps;
}

/// Weights of the two softmax directions: a→b alone has (1/n, 0), symmetric (1/(2n), 1/(2n)).
MMESID_HD void info_nce_weights(int64_t n, bool symmetric, double& w_row, double& w_col) {
  const double inv_n = 1.0 / static_cast<double>(n);
  w_row = symmetric ? 0.5 * inv_n : inv_n;
  w_col = symmetric ? 0.5 * inv_n : 0.0;
}

/// ∂loss/∂s_ij for the similarity s (already divided by τ), off the diagonal: w_row·softmax_row(s) +
/// w_col·softmax_col(s) with the rows' and columns' log-sum-exp. A direction whose weight is 0 is
/// skipped (its lse is not read: the a→b loss never computes column statistics). On the diagonal
/// subtract info_nce_diagonal_term(w_row, w_col). T may be a CPU vector type.
template <typename T, typename W, typename Exp = ScalarExp>
MMESID_HD T info_nce_dscore(T s, T lse_row, T lse_col, W w_row, W w_col, Exp exp_fn = Exp()) {
  T g{};
  if (w_row != static_cast<W>(0)) g += exp_fn(s - lse_row) * w_row;
  if (w_col != static_cast<W>(0)) g += exp_fn(s - lse_col) * w_col;
  return g;
}

/// The positives' extra term: ∂loss/∂s_ii = info_nce_dscore(...) − (w_row + w_col).
template <typename W>
MMESID_HD W info_nce_diagonal_term(W w_row, W w_col) {
  return w_row + w_col;
}

}  // namespace mmesid::kernels

// ------------------------------------------------------------------ CPU vector helpers
#if !defined(__CUDACC__)
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mmesid::kernels::simd {

#if defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float VecF __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VecI __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline VecF broadcast(float v) {
  return VecF{} + v;
}
inline VecF load(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, VecF v) {
  std::memcpy(p, &v, sizeof v);
}

/// a·b + c, fused when the target has FMA.
inline VecF fmadd(VecF a, VecF b, VecF c) {
#if defined(__FMA__) && defined(__AVX__)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

/// Lane-wise max that keeps a NaN in `a`.
inline VecF max_keep_nan(VecF a, VecF b) {
  return a < b ? b : a;
}

inline float hsum(VecF v) {
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}
inline float hmax(VecF v) {
  float m = v[0];
  for (int l = 1; l < kLanes; ++l) m = m < v[l] ? v[l] : m;
  return m;
}

/// Vectorised expf: x = n·ln2 + r (Cody–Waite, |r| <= ln2/2), e^r by its degree-7 Taylor polynomial
/// (truncation < 0.15 ulp), 2^n applied in two halves so results down to the subnormal range and up
/// to FLT_MAX stay exact in exponent. About 2 ulp from the correctly rounded value; exp(−inf) = 0,
/// exp(+inf) = inf, NaN stays NaN.
inline VecF exp(VecF x) {
  const VecF magic = broadcast(12582912.0f);  // 1.5·2^23: adding it rounds to an integer
  VecF xc = x < broadcast(-104.0f) ? broadcast(-104.0f) : x;
  xc = xc > broadcast(89.0f) ? broadcast(89.0f) : xc;
  const VecF t = fmadd(xc, broadcast(1.44269504088896341f), magic);
  const VecF nf = t - magic;
  VecF r = fmadd(nf, broadcast(-0.693145751953125f), xc);
  r = fmadd(nf, broadcast(-1.428606765330187e-06f), r);
  VecF p = broadcast(1.0f / 5040.0f);
  p = fmadd(p, r, broadcast(1.0f / 720.0f));
  p = fmadd(p, r, broadcast(1.0f / 120.0f));
  p = fmadd(p, r, broadcast(1.0f / 24.0f));
  p = fmadd(p, r, broadcast(1.0f / 6.0f));
  p = fmadd(p, r, broadcast(0.5f));
  p = fmadd(p, r, broadcast(1.0f));
  p = fmadd(p, r, broadcast(1.0f));
  const VecI n = (VecI)t - (VecI)magic;
  const VecI n1 = n >> 1;
  const VecI n2 = n - n1;
  const VecI b1 = (n1 + 127) << 23;
  const VecI b2 = (n2 + 127) << 23;
  const VecF result = p * (VecF)b1 * (VecF)b2;
  return x != x ? x : result;
}

/// Functor form of simd::exp for the MMESID_HD templates.
struct VecExp {
  VecF operator()(VecF x) const { return exp(x); }
};

/// {base, base + 1, ..., base + kLanes − 1} (lane masks on diagonals).
inline VecI iota(int32_t base) {
  VecI v;
  for (int l = 0; l < kLanes; ++l) v[l] = base + l;
  return v;
}

}  // namespace mmesid::kernels::simd
#endif
