// Optimized CPU MK-MMD (contract in mmd.h).
//
// z = [x; y] is centred once (distances and gradients are translation invariant, and centring keeps
// ‖z_p‖² + ‖z_q‖² − 2⟨z_p, z_q⟩ free of cancellation when the batch sits far from the origin). The
// 2n × 2n kernel matrix is walked in T × T tiles of the upper triangle, each tile never crossing the
// x/y boundary so its pair weight is one constant: Gram tile by sgemm, kernel values and gradient
// coefficients M_pq in place (vectorised exp), then — with gradients — grad_P −= M·Z_Q and
// grad_Q −= Mᵀ·Z_P by two more sgemm calls on the same tile while it is hot. The rowsum(M)⊙z term is
// applied once at the end. Tiles go to threads round-robin (static schedule: the same thread count gives
// the same assignment), each thread owns a private gradient accumulator (thread 0 accumulates straight
// into grad_x/grad_y), and accumulators, σ² and the loss are summed in a fixed order, so results repeat
// bitwise for a given thread count (the project's determinism rule; dynamic scheduling was ~10 % faster
// on a loaded machine but made the gradients' last bits depend on timing).
#include "mmd.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm.h"
#include "loss_math.h"

namespace mmesid::kernels {
namespace {

using simd::kLanes;
using simd::VecF;

constexpr const char* kWhat = "mmd_gaussian";

void validate(int64_t n, int64_t dim, const GaussianBandwidth& bandwidth) {
  require(n >= 2, kWhat, "n must be >= 2 (the estimator divides by n - 1), got " + std::to_string(n));
  require(dim >= 1, kWhat, "dim must be >= 1, got " + std::to_string(dim));
  require(!bandwidth.values.empty(), kWhat, "the bandwidth list is empty");
  for (double v : bandwidth.values) {
    require(v > 0, kWhat, std::string("bandwidth values must be positive, got ") + std::to_string(v));
  }
}

const float* row_of(const float* x, const float* y, int64_t n, int64_t dim, int64_t p) {
  return p < n ? x + p * dim : y + (p - n) * dim;
}

/// Σ_p ‖z_p − z̄‖² in double. When `zc` is given, also writes the centred rows (float) and their
/// squared norms (of the float rows, so they match the Gram tiles).
double centre(const float* x, const float* y, int64_t n, int64_t dim, int nthreads, float* zc,
              float* sq_norm) {
  const int64_t rows = 2 * n;
  std::vector<double> mean(static_cast<size_t>(dim), 0.0);
#pragma omp parallel num_threads(nthreads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = dim * t / nt, c1 = dim * (t + 1) / nt;
    for (int64_t p = 0; p < rows; ++p) {
      const float* z = row_of(x, y, n, dim, p);
      for (int64_t k = c0; k < c1; ++k) mean[k] += z[k];
    }
    for (int64_t k = c0; k < c1; ++k) mean[k] /= static_cast<double>(rows);
  }
  std::vector<double> row_sq(static_cast<size_t>(rows));  // summed in order: σ² is bitwise reproducible
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t p = 0; p < rows; ++p) {
    const float* z = row_of(x, y, n, dim, p);
    double sq = 0.0, sqf = 0.0;
    for (int64_t k = 0; k < dim; ++k) {
      const double c = static_cast<double>(z[k]) - mean[k];
      sq += c * c;
      if (zc) {
        const float cf = static_cast<float>(c);
        zc[p * dim + k] = cf;
        sqf += static_cast<double>(cf) * cf;
      }
    }
    if (sq_norm) sq_norm[p] = static_cast<float>(sqf);
    row_sq[p] = sq;
  }
  double total = 0.0;
  for (double v : row_sq) total += v;
  return total;
}

/// σ_s² for every kernel; throws on a zero mean pairwise distance in relative mode.
std::vector<double> sigma2_of(const GaussianBandwidth& bandwidth, double centred_sq_sum, int64_t n) {
  std::vector<double> out(bandwidth.values.size());
  if (bandwidth.relative) {
    const double mean = mmd_mean_pair_distance(centred_sq_sum, n);
    require(!(mean <= 0), kWhat,
            "the mean pairwise squared distance of the batch is zero (all rows equal): relative bandwidths "
            "are undefined");
    for (size_t s = 0; s < out.size(); ++s) out[s] = bandwidth.values[s] * mean;
  } else {
    for (size_t s = 0; s < out.size(); ++s) out[s] = bandwidth.values[s] * bandwidth.values[s];
  }
  return out;
}

/// A block of consecutive rows of z, all in x or all in y.
struct Tile {
  int64_t start;  // row in z
  int64_t rows;
};

struct ThreadState {
  std::vector<float> gram;    // T × ld tile, overwritten by M when gradients are on
  std::vector<float> colsum;  // Σ_p M_pq of the current tile
  std::vector<float> rowsum;  // [2n] Σ_q M_pq over this thread's tiles
  std::vector<float> grad;    // [2n, dim] private accumulator (threads > 0)
};

struct Problem {
  int64_t n, dim, ld;
  const float* zc;
  const float* sq_norm;
  const float* coef;
  int kernels;
  float* grad_x;
  float* grad_y;
};

float* grad_rows(const Problem& pb, ThreadState& st, int thread, int64_t start) {
  if (thread > 0) return st.grad.data() + start * pb.dim;
  return start < pb.n ? pb.grad_x + start * pb.dim : pb.grad_y + (start - pb.n) * pb.dim;
}

/// Kernel values (and M when `Grad`) of one tile; returns Σ over the tile of k (diagonal excluded).
template <bool Grad, bool Diagonal>
double tile_values(const Problem& pb, const Tile& ti, const Tile& tj, float weight, ThreadState& st) {
  const float* nrm_i = pb.sq_norm + ti.start;
  const float* nrm_j = pb.sq_norm + tj.start;
  float* colsum = st.colsum.data();
  if (Grad) std::fill(colsum, colsum + tj.rows, 0.f);
  const VecF minus_two = simd::broadcast(-2.f);
  const int64_t vec_end = tj.rows - tj.rows % kLanes;
  double total = 0.0;
  for (int64_t i = 0; i < ti.rows; ++i) {
    float* g = st.gram.data() + i * pb.ld;
    const VecF ni = simd::broadcast(nrm_i[i]);
    VecF acc_k{}, acc_m{};
    for (int64_t j = 0; j < vec_end; j += kLanes) {
      VecF d2 = simd::fmadd(simd::load(g + j), minus_two, ni + simd::load(nrm_j + j));
      d2 = d2 < VecF{} ? VecF{} : d2;
      VecF k, slope;
      mk_gaussian(d2, pb.coef, pb.kernels, simd::VecExp(), k, slope);
      if (Diagonal) {
        const auto on_diag = simd::iota(static_cast<int32_t>(j)) == static_cast<int32_t>(i);
        k = on_diag ? VecF{} : k;
        slope = on_diag ? VecF{} : slope;
      }
      acc_k += k;
      if (Grad) {
        const VecF m = mmd_grad_coefficient(weight, slope);
        simd::store(g + j, m);
        acc_m += m;
        simd::store(colsum + j, simd::load(colsum + j) + m);
      }
    }
    float tail_k = 0.f, tail_m = 0.f;
    for (int64_t j = vec_end; j < tj.rows; ++j) {
      float d2 = nrm_i[i] + nrm_j[j] - 2.f * g[j];
      d2 = d2 < 0.f ? 0.f : d2;
      float k, slope;
      mk_gaussian(d2, pb.coef, pb.kernels, ScalarExp(), k, slope);
      if (Diagonal && i == j) k = slope = 0.f;
      tail_k += k;
      if (Grad) {
        const float m = mmd_grad_coefficient(weight, slope);
        g[j] = m;
        tail_m += m;
        colsum[j] += m;
      }
    }
    total += static_cast<double>(simd::hsum(acc_k)) + tail_k;
    if (Grad) st.rowsum[ti.start + i] += simd::hsum(acc_m) + tail_m;
  }
  return total;
}

/// Processes one tile pair; returns its loss contribution.
double process_pair(const Problem& pb, const Tile& ti, const Tile& tj, bool diagonal, bool grad, int thread,
                    ThreadState& st) {
  const float* zi = pb.zc + ti.start * pb.dim;
  const float* zj = pb.zc + tj.start * pb.dim;
  sgemm(false, true, ti.rows, tj.rows, pb.dim, 1.f, zi, pb.dim, zj, pb.dim, 0.f, st.gram.data(), pb.ld);
  const bool same_set = (ti.start < pb.n) == (tj.start < pb.n);
  const double w = same_set ? mmd_within_weight(pb.n) : mmd_cross_weight(pb.n);
  const float wf = static_cast<float>(w);
  double sum_k;
  if (grad) {
    sum_k =
        diagonal ? tile_values<true, true>(pb, ti, tj, wf, st) : tile_values<true, false>(pb, ti, tj, wf, st);
  } else {
    sum_k = diagonal ? tile_values<false, true>(pb, ti, tj, wf, st)
                     : tile_values<false, false>(pb, ti, tj, wf, st);
  }
  const double loss = (diagonal ? 1.0 : 2.0) * w * sum_k;
  if (!grad) return loss;
  sgemm(false, false, ti.rows, pb.dim, tj.rows, -1.f, st.gram.data(), pb.ld, zj, pb.dim, 1.f,
        grad_rows(pb, st, thread, ti.start), pb.dim);
  if (diagonal) return loss;
  sgemm(true, false, tj.rows, pb.dim, ti.rows, -1.f, st.gram.data(), pb.ld, zi, pb.dim, 1.f,
        grad_rows(pb, st, thread, tj.start), pb.dim);
  for (int64_t j = 0; j < tj.rows; ++j) st.rowsum[tj.start + j] += st.colsum[j];
  return loss;
}

int64_t tile_size(int64_t n, int64_t dim) {
  // Large d: big tiles keep sgemm near peak. Small d: the tile (and its M) stays in L2 while the
  // exp-heavy element pass and the two backward GEMMs reuse it.
  const int64_t t = dim >= 512 ? 256 : 128;
  return std::min(t, n);
}

}  // namespace

void mmd_gaussian_sigma2(const float* x, const float* y, int64_t n, int64_t dim,
                         const GaussianBandwidth& bandwidth, double* sigma2_out, int threads) {
  validate(n, dim, bandwidth);
  ScopedThreads guard(threads);
  const double sq_sum = centre(x, y, n, dim, guard.count(), nullptr, nullptr);
  const std::vector<double> s2 = sigma2_of(bandwidth, sq_sum, n);
  std::copy(s2.begin(), s2.end(), sigma2_out);
}

double mmd_gaussian(const float* x, const float* y, int64_t n, int64_t dim,
                    const GaussianBandwidth& bandwidth, float* grad_x, float* grad_y, int threads) {
  validate(n, dim, bandwidth);
  require((grad_x == nullptr) == (grad_y == nullptr), kWhat,
          "grad_x and grad_y must be both given or both null");
  ScopedThreads guard(threads);
  const int nthreads = guard.count();
  const bool grad = grad_x != nullptr;
  const int64_t rows = 2 * n;

  std::vector<float> zc(static_cast<size_t>(rows * dim)), sq_norm(static_cast<size_t>(rows));
  const double sq_sum = centre(x, y, n, dim, nthreads, zc.data(), sq_norm.data());
  const std::vector<double> s2 = sigma2_of(bandwidth, sq_sum, n);
  std::vector<float> coef(s2.size());
  for (size_t s = 0; s < s2.size(); ++s) coef[s] = static_cast<float>(mmd_kernel_coefficient(s2[s]));

  const int64_t t = tile_size(n, dim);
  const int64_t ld = (t + kLanes - 1) / kLanes * kLanes;
  std::vector<Tile> tiles;
  for (int64_t set = 0; set < 2; ++set) {
    for (int64_t s = 0; s < n; s += t) tiles.push_back({set * n + s, std::min(t, n - s)});
  }
  std::vector<std::pair<int, int>> pairs;
  for (size_t i = 0; i < tiles.size(); ++i) {
    for (size_t j = i + 1; j < tiles.size(); ++j)
      pairs.emplace_back(static_cast<int>(i), static_cast<int>(j));
  }
  for (size_t i = 0; i < tiles.size(); ++i) pairs.emplace_back(static_cast<int>(i), static_cast<int>(i));

  if (grad) {
    std::fill(grad_x, grad_x + n * dim, 0.f);
    std::fill(grad_y, grad_y + n * dim, 0.f);
  }
  const Problem pb{n,      dim,   ld, zc.data(), sq_norm.data(), coef.data(), static_cast<int>(coef.size()),
                   grad_x, grad_y};
  std::vector<ThreadState> states(static_cast<size_t>(nthreads));
  std::vector<double> pair_loss(
      pairs.size());  // summed in a fixed order: the loss does not depend on scheduling
  int used = 1;
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    ThreadState& st = states[tid];
    st.gram.resize(static_cast<size_t>(t * ld));
    if (grad) {
      st.colsum.resize(static_cast<size_t>(ld));
      st.rowsum.assign(static_cast<size_t>(rows), 0.f);
      if (tid > 0) st.grad.assign(static_cast<size_t>(rows * dim), 0.f);
    }
#pragma omp for schedule(static, 1)
    for (int64_t p = 0; p < static_cast<int64_t>(pairs.size()); ++p) {
      const int i = pairs[p].first, j = pairs[p].second;
      pair_loss[p] = process_pair(pb, tiles[i], tiles[j], i == j, grad, tid, st);
    }
  }
  double loss = 0.0;
  for (double v : pair_loss) loss += v;
  loss += mmd_constant(n);
  if (!grad) return loss;

#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t p = 0; p < rows; ++p) {
    float* out = p < n ? grad_x + p * dim : grad_y + (p - n) * dim;
    float rs = states[0].rowsum[p];
    for (int tid = 1; tid < used; ++tid) rs += states[tid].rowsum[p];
    const float* z = zc.data() + p * dim;
    for (int tid = 1; tid < used; ++tid) {
      const float* src = states[tid].grad.data() + p * dim;
      for (int64_t k = 0; k < dim; ++k) out[k] += src[k];
    }
    for (int64_t k = 0; k < dim; ++k) out[k] += rs * z[k];
  }
  return loss;
}

}  // namespace mmesid::kernels
