// Naive double-precision MK-MMD (contract in mmd.h): explicit loops over all ordered pairs of
// z = [x; y], distances as Σ (u_k − v_k)², σ² from the explicit mean over all (2n)² pairs, the
// estimator's weight matrix written out case by case. Independent of loss_math.h on purpose.
#include <cmath>
#include <string>
#include <vector>

#include "../mmd.h"

namespace mmesid::kernels {

double mmd_gaussian_reference(const float* x, const float* y, int64_t n, int64_t dim,
                              const GaussianBandwidth& bandwidth, float* grad_x, float* grad_y) {
  const char* what = "mmd_gaussian";
  require(n >= 2, what, "n must be >= 2 (the estimator divides by n - 1), got " + std::to_string(n));
  require(dim >= 1, what, "dim must be >= 1, got " + std::to_string(dim));
  require(!bandwidth.values.empty(), what, "the bandwidth list is empty");
  for (double v : bandwidth.values) {
    require(v > 0, what, std::string("bandwidth values must be positive, got ") + std::to_string(v));
  }
  require((grad_x == nullptr) == (grad_y == nullptr), what,
          "grad_x and grad_y must be both given or both null");

  const int64_t rows = 2 * n;
  auto z = [&](int64_t p) { return p < n ? x + p * dim : y + (p - n) * dim; };
  auto dist2 = [&](int64_t p, int64_t q) {
    const float* u = z(p);
    const float* v = z(q);
    double s = 0.0;
    for (int64_t k = 0; k < dim; ++k) {
      const double diff = static_cast<double>(u[k]) - static_cast<double>(v[k]);
      s += diff * diff;
    }
    return s;
  };

  std::vector<double> sigma2(bandwidth.values.size());
  if (bandwidth.relative) {
    double total = 0.0;
    for (int64_t p = 0; p < rows; ++p) {
      for (int64_t q = 0; q < rows; ++q) total += dist2(p, q);
    }
    const double mean = total / (static_cast<double>(rows) * static_cast<double>(rows));
    require(!(mean <= 0), what,
            "the mean pairwise squared distance of the batch is zero (all rows equal): relative bandwidths "
            "are undefined");
    for (size_t s = 0; s < sigma2.size(); ++s) sigma2[s] = bandwidth.values[s] * mean;
  } else {
    for (size_t s = 0; s < sigma2.size(); ++s) sigma2[s] = bandwidth.values[s] * bandwidth.values[s];
  }

  const double nd = static_cast<double>(n);
  const bool grad = grad_x != nullptr;
  std::vector<double> g(grad ? static_cast<size_t>(rows * dim) : 0, 0.0);
  double loss = 0.0;
  for (int64_t p = 0; p < rows; ++p) {
    for (int64_t q = 0; q < rows; ++q) {
      double w;
      if (p == q) {
        w = 0.0;
      } else if ((p < n) == (q < n)) {
        w = 1.0 / (nd * (nd - 1.0));
      } else {
        w = -1.0 / (nd * nd);
      }
      if (w == 0.0) continue;
      const double d2 = dist2(p, q);
      double k = 0.0, dk = 0.0;
      for (double s2 : sigma2) {
        const double e = std::exp(-d2 / (2.0 * s2));
        k += e;
        dk += -e / (2.0 * s2);
      }
      loss += w * k;
      if (grad) {
        // w·k(z_p, z_q) depends on z_p through d2: ∂/∂z_p = w·dk·2(z_p − z_q); likewise ∂/∂z_q.
        const float* u = z(p);
        const float* v = z(q);
        for (int64_t c = 0; c < dim; ++c) {
          const double diff = static_cast<double>(u[c]) - static_cast<double>(v[c]);
          g[p * dim + c] += w * dk * 2.0 * diff;
          g[q * dim + c] -= w * dk * 2.0 * diff;
        }
      }
    }
  }
  loss += 2.0 / (nd - 1.0);
  if (grad) {
    for (int64_t p = 0; p < rows; ++p) {
      float* out = p < n ? grad_x + p * dim : grad_y + (p - n) * dim;
      for (int64_t c = 0; c < dim; ++c) out[c] = static_cast<float>(g[p * dim + c]);
    }
  }
  return loss;
}

}  // namespace mmesid::kernels
