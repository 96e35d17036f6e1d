// Optimized CPU InfoNCE (contract in infonce.h).
//
// Rows are normalised once (Â, B̂: O(n·d) copies). The similarity matrix is walked in row panels of
// T rows × all n columns (T <= 256, and T·n <= 4M floats per thread unless that leaves under 8 rows),
// each produced by one sgemm and consumed at once:
//   a→b:       one pass. A panel holds whole rows, so its log-sum-exps are exact; the softmax becomes
//              dS in place and two more sgemm calls give dÂ_P = dS·B̂/τ (rows owned by the panel) and
//              dB̂ += dSᵀ·Â_P/τ (a per-thread accumulator). 3 GEMMs of n²d, the minimum.
//   symmetric: pass 1 gets exact row log-sum-exps per panel and the column ones online (per-thread
//              running max/sum, merged at the end); pass 2 forms dS from both softmaxes and runs the
//              same two gradient GEMMs. When n <= d the n × n similarities take no more memory than one
//              input, so pass 1 keeps them and pass 2 reads them back (3 GEMMs of n²d); otherwise pass 2
//              recomputes its panels (4 GEMMs).
// Finally the normalisation backward g − â(â·g), scaled by 1/max(‖a‖, eps), turns dÂ, dB̂ into grads.
// Panels go to threads round-robin (static schedule) and per-thread accumulators and statistics are
// merged in thread order, so losses and gradients repeat bitwise for a given thread count.
#include "infonce.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gemm.h"
#include "loss_math.h"

namespace mmesid::kernels {
namespace {

using simd::kLanes;
using simd::VecF;

constexpr const char* kWhat = "info_nce";
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// Row-normalised copy of `src` plus, per row, 1/max(‖row‖, eps) and whether the backward projects.
void normalise_rows(const float* src, int64_t n, int64_t dim, int nthreads, float* dst, float* inv_norm,
                    uint8_t* projects) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* r = src + i * dim;
    double sq = 0.0;
    for (int64_t k = 0; k < dim; ++k) sq += static_cast<double>(r[k]) * r[k];
    const double norm = std::sqrt(sq);
    const double inv = normalize_inverse(norm);
    inv_norm[i] = static_cast<float>(inv);
    projects[i] = normalize_projects(norm) ? 1 : 0;
    for (int64_t k = 0; k < dim; ++k) dst[i * dim + k] = static_cast<float>(r[k] * inv);
  }
}

/// In place: g ← (g − â(â·g))·inv (or g·inv when the norm was clamped), optionally adding `extra`
/// accumulators to g first.
void normalise_backward(float* g, const float* unit, const float* inv_norm, const uint8_t* projects,
                        int64_t n, int64_t dim, int nthreads, const std::vector<const float*>& extra) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float* gi = g + i * dim;
    for (const float* e : extra) {
      const float* ei = e + i * dim;
      for (int64_t k = 0; k < dim; ++k) gi[k] += ei[k];
    }
    const float* u = unit + i * dim;
    double dot = 0.0;
    if (projects[i]) {
      for (int64_t k = 0; k < dim; ++k) dot += static_cast<double>(u[k]) * gi[k];
    }
    const float proj = static_cast<float>(dot), inv = inv_norm[i];
    for (int64_t k = 0; k < dim; ++k) gi[k] = (gi[k] - u[k] * proj) * inv;
  }
}

struct Problem {
  int64_t n, dim, ld;
  const float* ah;
  const float* bh;
  float inv_tau;
  float w_row, w_col;
};

struct ThreadState {
  std::vector<float> panel;      // T × ld similarities, then dS
  std::vector<float> col_max;    // [ld] running column max (symmetric pass 1)
  std::vector<float> col_sum;    // [ld] Σ exp(s − col_max)
  std::vector<float> panel_max;  // [ld] column max within the panel
  std::vector<float> grad_b;     // [n, dim] private dB̂ accumulator (threads > 0)
};

/// S_P = Â_P B̂ᵀ/τ into the panel, padding columns set to −inf so whole vectors can be swept.
void similarity_panel(const Problem& pb, int64_t i0, int64_t rows, float* panel) {
  sgemm(false, true, rows, pb.n, pb.dim, pb.inv_tau, pb.ah + i0 * pb.dim, pb.dim, pb.bh, pb.dim, 0.f, panel,
        pb.ld);
  for (int64_t i = 0; i < rows; ++i) std::fill(panel + i * pb.ld + pb.n, panel + (i + 1) * pb.ld, kNegInf);
}

float row_max(const float* r, int64_t ld) {
  VecF m = simd::broadcast(kNegInf);
  for (int64_t j = 0; j < ld; j += kLanes) m = simd::max_keep_nan(simd::load(r + j), m);
  return simd::hmax(m);
}

/// Σ_j exp(r_j − shift); with `store`, r_j ← exp(r_j − shift).
template <bool Store>
float row_exp_sum(float* r, int64_t ld, float shift) {
  const VecF sh = simd::broadcast(shift);
  VecF acc{};
  for (int64_t j = 0; j < ld; j += kLanes) {
    const VecF e = simd::exp(simd::load(r + j) - sh);
    if (Store) simd::store(r + j, e);
    acc += e;
  }
  return simd::hsum(acc);
}

/// dÂ_P = dS·B̂/τ (owned rows) and dB̂ += dSᵀ·Â_P/τ.
void gradient_gemms(const Problem& pb, int64_t i0, int64_t rows, const float* ds, float* grad_a_hat,
                    float* grad_b_hat) {
  sgemm(false, false, rows, pb.dim, pb.n, pb.inv_tau, ds, pb.ld, pb.bh, pb.dim, 0.f, grad_a_hat + i0 * pb.dim,
        pb.dim);
  sgemm(true, false, pb.n, pb.dim, rows, pb.inv_tau, ds, pb.ld, pb.ah + i0 * pb.dim, pb.dim, 1.f, grad_b_hat,
        pb.dim);
}

/// a→b panel: exact row log-sum-exps, loss, and (with gradients) dS and the two gradient GEMMs.
void panel_a_to_b(const Problem& pb, int64_t i0, int64_t rows, ThreadState& st, double* row_loss,
                  float* grad_a_hat, float* grad_b_hat) {
  float* panel = st.panel.data();
  similarity_panel(pb, i0, rows, panel);
  const bool grad = grad_a_hat != nullptr;
  for (int64_t i = 0; i < rows; ++i) {
    float* r = panel + i * pb.ld;
    const float positive = r[i0 + i];
    const float m = row_max(r, pb.ld);
    const float sum = grad ? row_exp_sum<true>(r, pb.ld, m) : row_exp_sum<false>(r, pb.ld, m);
    row_loss[i0 + i] = static_cast<double>(m) + std::log(static_cast<double>(sum)) - positive;
    if (!grad) continue;
    const VecF scale = simd::broadcast(pb.w_row / sum);
    for (int64_t j = 0; j < pb.ld; j += kLanes) simd::store(r + j, simd::load(r + j) * scale);
    r[i0 + i] -= info_nce_diagonal_term(pb.w_row, 0.f);
  }
  if (grad) gradient_gemms(pb, i0, rows, panel, grad_a_hat, grad_b_hat);
}

/// Symmetric pass 1: exact row log-sum-exps and diagonal into lse_row/positive, online column stats.
void panel_stats(const Problem& pb, int64_t i0, int64_t rows, ThreadState& st, double* lse_row,
                 double* positive, float* cache) {
  float* panel = cache ? cache + i0 * pb.ld : st.panel.data();
  similarity_panel(pb, i0, rows, panel);
  float* pmax = st.panel_max.data();
  std::fill(pmax, pmax + pb.ld, kNegInf);
  for (int64_t i = 0; i < rows; ++i) {
    float* r = panel + i * pb.ld;
    positive[i0 + i] = r[i0 + i];
    const float m = row_max(r, pb.ld);
    const float sum = row_exp_sum<false>(r, pb.ld, m);
    lse_row[i0 + i] = static_cast<double>(m) + std::log(static_cast<double>(sum));
    for (int64_t j = 0; j < pb.ld; j += kLanes)
      simd::store(pmax + j, simd::max_keep_nan(simd::load(r + j), simd::load(pmax + j)));
  }
  float* cmax = st.col_max.data();
  float* csum = st.col_sum.data();
  for (int64_t j = 0; j < pb.ld; j += kLanes) {
    const VecF old_max = simd::load(cmax + j);
    const VecF new_max = simd::max_keep_nan(simd::load(pmax + j), old_max);
    // The first panel meets old_max = −inf and csum = 0; keep 0·exp(−inf) = 0 (padding lanes may NaN:
    // unused).
    simd::store(csum + j, simd::load(csum + j) * simd::exp(old_max - new_max));
    simd::store(cmax + j, new_max);
  }
  for (int64_t i = 0; i < rows; ++i) {
    const float* r = panel + i * pb.ld;
    for (int64_t j = 0; j < pb.ld; j += kLanes) {
      simd::store(csum + j, simd::load(csum + j) + simd::exp(simd::load(r + j) - simd::load(cmax + j)));
    }
  }
}

/// Symmetric pass 2: the panel (from `cache` when pass 1 kept it, else recomputed), dS from both
/// softmaxes, gradient GEMMs.
void panel_backward(const Problem& pb, int64_t i0, int64_t rows, ThreadState& st, const double* lse_row,
                    const float* lse_col, float* grad_a_hat, float* grad_b_hat, float* cache) {
  float* panel = cache ? cache + i0 * pb.ld : st.panel.data();
  if (!cache) similarity_panel(pb, i0, rows, panel);
  for (int64_t i = 0; i < rows; ++i) {
    float* r = panel + i * pb.ld;
    const VecF lr = simd::broadcast(static_cast<float>(lse_row[i0 + i]));
    for (int64_t j = 0; j < pb.ld; j += kLanes) {
      simd::store(r + j, info_nce_dscore(simd::load(r + j), lr, simd::load(lse_col + j), pb.w_row, pb.w_col,
                                         simd::VecExp()));
    }
    r[i0 + i] -= info_nce_diagonal_term(pb.w_row, pb.w_col);
  }
  gradient_gemms(pb, i0, rows, panel, grad_a_hat, grad_b_hat);
}

/// Rows per panel: up to 256 (large d, GEMM efficiency) or 64 (small d, the panel stays in L2), at
/// most kPanelBudget floats per panel, and few enough that every thread gets a panel.
int64_t panel_rows(int64_t n, int64_t dim, int nthreads) {
  constexpr int64_t kPanelBudget = int64_t{1} << 22;  // 16 MiB of similarities per thread
  int64_t t = dim >= 512 ? 256 : 64;
  t = std::min(t, std::max<int64_t>(8, kPanelBudget / n));
  t = std::min(t, (n + nthreads - 1) / nthreads);
  return std::max<int64_t>(1, t);
}

}  // namespace

double info_nce(const float* a, const float* b, int64_t n, int64_t dim, double temperature, bool symmetric,
                float* grad_a, float* grad_b, int threads) {
  require(n >= 1, kWhat, "n must be >= 1, got " + std::to_string(n));
  require(dim >= 1, kWhat, "dim must be >= 1, got " + std::to_string(dim));
  require(temperature > 0, kWhat, "temperature must be > 0, got " + std::to_string(temperature));
  require((grad_a == nullptr) == (grad_b == nullptr), kWhat,
          "grad_a and grad_b must be both given or both null");
  ScopedThreads guard(threads);
  const int nthreads = guard.count();
  const bool grad = grad_a != nullptr;

  std::vector<float> ah(static_cast<size_t>(n * dim)), bh(static_cast<size_t>(n * dim));
  std::vector<float> inv_a(static_cast<size_t>(n)), inv_b(static_cast<size_t>(n));
  std::vector<uint8_t> proj_a(static_cast<size_t>(n)), proj_b(static_cast<size_t>(n));
  normalise_rows(a, n, dim, nthreads, ah.data(), inv_a.data(), proj_a.data());
  normalise_rows(b, n, dim, nthreads, bh.data(), inv_b.data(), proj_b.data());

  double w_row, w_col;
  info_nce_weights(n, symmetric, w_row, w_col);
  const int64_t ld = (n + kLanes - 1) / kLanes * kLanes;
  const Problem pb{n,
                   dim,
                   ld,
                   ah.data(),
                   bh.data(),
                   static_cast<float>(1.0 / temperature),
                   static_cast<float>(w_row),
                   static_cast<float>(w_col)};
  const int64_t t = panel_rows(n, dim, nthreads);
  const int64_t panels = (n + t - 1) / t;
  if (grad) std::fill(grad_b, grad_b + n * dim, 0.f);

  std::vector<ThreadState> states(static_cast<size_t>(nthreads));
  // Symmetric with gradients: keep pass 1's similarities for pass 2 (3 GEMMs instead of 4) when they
  // take no more memory than one input (n·ld <= n·d), so the workspace stays O(n·d).
  std::vector<float> cache_store;
  if (symmetric && grad && ld <= dim) cache_store.resize(static_cast<size_t>(n * ld));
  float* cache = cache_store.empty() ? nullptr : cache_store.data();
  std::vector<double> lse_row, lse_col, positive, row_loss;
  std::vector<float> lse_col_f;  // padded to ld with zeros for the vector sweeps
  if (!symmetric) row_loss.resize(static_cast<size_t>(n));
  if (symmetric) {
    lse_row.resize(static_cast<size_t>(n));
    lse_col.resize(static_cast<size_t>(n));
    lse_col_f.assign(static_cast<size_t>(ld), 0.f);
    positive.resize(static_cast<size_t>(n));
  }
  int used = 1;
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    ThreadState& st = states[tid];
    st.panel.resize(static_cast<size_t>(t * ld));
    float* grad_b_hat = nullptr;
    if (grad) {
      if (tid > 0) st.grad_b.assign(static_cast<size_t>(n * dim), 0.f);
      grad_b_hat = tid > 0 ? st.grad_b.data() : grad_b;
    }
    if (!symmetric) {
#pragma omp for schedule(static, 1)
      for (int64_t p = 0; p < panels; ++p) {
        panel_a_to_b(pb, p * t, std::min(t, n - p * t), st, row_loss.data(), grad_a, grad_b_hat);
      }
    } else {
      st.panel_max.resize(static_cast<size_t>(ld));
      st.col_max.assign(static_cast<size_t>(ld), kNegInf);
      st.col_sum.assign(static_cast<size_t>(ld), 0.f);
#pragma omp for schedule(static, 1)
      for (int64_t p = 0; p < panels; ++p) {
        panel_stats(pb, p * t, std::min(t, n - p * t), st, lse_row.data(), positive.data(), cache);
      }
      // implicit barrier: every thread's column stats are final
#pragma omp for schedule(static)
      for (int64_t j = 0; j < n; ++j) {
        LseAccumulator<double> acc;
        for (int k = 0; k < used; ++k) acc.merge(states[k].col_max[j], states[k].col_sum[j]);
        lse_col[j] = acc.value();
        lse_col_f[j] = static_cast<float>(lse_col[j]);
      }
      if (grad) {
#pragma omp for schedule(static, 1)
        for (int64_t p = 0; p < panels; ++p) {
          panel_backward(pb, p * t, std::min(t, n - p * t), st, lse_row.data(), lse_col_f.data(), grad_a,
                         grad_b_hat, cache);
        }
      }
    }
  }

  double loss = 0.0;
  if (!symmetric) {
    for (double v : row_loss) loss += v;
    loss *= w_row;
  } else {
    double row_part = 0.0, col_part = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      row_part += lse_row[i] - positive[i];
      col_part += lse_col[i] - positive[i];
    }
    loss = w_row * row_part + w_col * col_part;
  }
  if (!grad) return loss;

  std::vector<const float*> extra;
  for (int k = 1; k < used; ++k) extra.push_back(states[k].grad_b.data());
  normalise_backward(grad_a, ah.data(), inv_a.data(), proj_a.data(), n, dim, nthreads, {});
  normalise_backward(grad_b, bh.data(), inv_b.data(), proj_b.data(), n, dim, nthreads, extra);
  return loss;
}

}  // namespace mmesid::kernels
