// Naive double-precision InfoNCE (contract in infonce.h): explicit normalisation, the full similarity
// matrix, log-softmax over rows (and columns), the chain rule through F.normalize written out.
// Independent of loss_math.h on purpose.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../infonce.h"

namespace mmesid::kernels {
namespace {

struct Normalised {
  std::vector<double> unit;  // [n, dim]
  std::vector<double> norm;  // [n]
};

Normalised normalise(const float* v, int64_t n, int64_t dim) {
  Normalised out{std::vector<double>(static_cast<size_t>(n * dim)),
                 std::vector<double>(static_cast<size_t>(n))};
  for (int64_t i = 0; i < n; ++i) {
    double sq = 0.0;
    for (int64_t k = 0; k < dim; ++k) sq += static_cast<double>(v[i * dim + k]) * v[i * dim + k];
    out.norm[i] = std::sqrt(sq);
    const double denom = std::max(out.norm[i], 1e-12);
    for (int64_t k = 0; k < dim; ++k) out.unit[i * dim + k] = v[i * dim + k] / denom;
  }
  return out;
}

// ∂/∂v of v / max(‖v‖, eps) applied to g (torch: clamp_min passes the gradient at equality).
void normalise_backward(const Normalised& nv, const std::vector<double>& g, int64_t n, int64_t dim,
                        float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double* u = &nv.unit[i * dim];
    const double* gi = &g[i * dim];
    if (nv.norm[i] >= 1e-12) {
      double dot = 0.0;
      for (int64_t k = 0; k < dim; ++k) dot += u[k] * gi[k];
      for (int64_t k = 0; k < dim; ++k)
        out[i * dim + k] = static_cast<float>((gi[k] - u[k] * dot) / nv.norm[i]);
    } else {
      for (int64_t k = 0; k < dim; ++k) out[i * dim + k] = static_cast<float>(gi[k] / 1e-12);
    }
  }
}

}  // namespace

double info_nce_reference(const float* a, const float* b, int64_t n, int64_t dim, double temperature,
                          bool symmetric, float* grad_a, float* grad_b) {
  const char* what = "info_nce";
  require(n >= 1, what, "n must be >= 1, got " + std::to_string(n));
  require(dim >= 1, what, "dim must be >= 1, got " + std::to_string(dim));
  require(temperature > 0, what, "temperature must be > 0, got " + std::to_string(temperature));
  require((grad_a == nullptr) == (grad_b == nullptr), what,
          "grad_a and grad_b must be both given or both null");

  const Normalised na = normalise(a, n, dim), nb = normalise(b, n, dim);
  std::vector<double> s(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (int64_t k = 0; k < dim; ++k) dot += na.unit[i * dim + k] * nb.unit[j * dim + k];
      s[i * n + j] = dot / temperature;
    }
  }
  std::vector<double> lse_row(static_cast<size_t>(n)), lse_col(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, s[i * n + j]);
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(s[i * n + j] - m);
    lse_row[i] = m + std::log(sum);
  }
  for (int64_t j = 0; j < n; ++j) {
    double m = -INFINITY;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, s[i * n + j]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(s[i * n + j] - m);
    lse_col[j] = m + std::log(sum);
  }
  double ab = 0.0, ba = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    ab += lse_row[i] - s[i * n + i];
    ba += lse_col[i] - s[i * n + i];
  }
  const double nd = static_cast<double>(n);
  const double loss = symmetric ? 0.5 * (ab / nd + ba / nd) : ab / nd;
  if (grad_a == nullptr) return loss;

  // ∂loss/∂s_ij, then ∂/∂â = ∂S·B̂/τ and ∂/∂b̂ = ∂Sᵀ·Â/τ.
  const double w = symmetric ? 0.5 / nd : 1.0 / nd;
  std::vector<double> ga(static_cast<size_t>(n * dim), 0.0), gb(static_cast<size_t>(n * dim), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ds = w * std::exp(s[i * n + j] - lse_row[i]);
      if (symmetric) ds += w * std::exp(s[i * n + j] - lse_col[j]);
      if (i == j) ds -= symmetric ? 2.0 * w : w;
      ds /= temperature;
      for (int64_t k = 0; k < dim; ++k) {
        ga[i * dim + k] += ds * nb.unit[j * dim + k];
        gb[j * dim + k] += ds * na.unit[i * dim + k];
      }
    }
  }
  normalise_backward(na, ga, n, dim, grad_a);
  normalise_backward(nb, gb, n, dim, grad_b);
  return loss;
}

}  // namespace mmesid::kernels
