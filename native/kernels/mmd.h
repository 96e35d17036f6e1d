// Gaussian-kernel (multi-kernel) maximum mean discrepancy between two equal-size batches, forward and
// backward: the reconstruction loss of the MM-RQ-VAE tokenizer.
//
// Estimator (the transfer-learning-library MK-MMD the MME-SID authors use): with z = [x; y] (2n rows)
// and k(u, v) = Σ_s exp(−‖u − v‖² / (2 σ_s²)),
//   loss = Σ_{i≠j} k(x_i, x_j) / (n(n−1)) + Σ_{i≠j} k(y_i, y_j) / (n(n−1))
//          − 2 Σ_{i,j} k(x_i, y_j) / n² + 2 / (n − 1).
// Bandwidths: relative mode σ_s² = α_s · mean over all (2n)² ordered pairs (diagonal included) of
// ‖z_i − z_j‖², obtained in closed form as (2/N)·Σ‖z_i‖² − 2‖z̄‖² (N = 2n); fixed mode σ_s given.
// In both modes σ is a constant of the backward pass (the library detaches it).
//
// Memory: O(n·d). The 2n × 2n kernel matrix is never stored; it is produced tile by tile (Gram tiles
// through GEMM, distances from cached squared norms) and consumed at once. When gradients are asked
// for, forward and backward share the same tile pass.
#pragma once

#include <cstdint>
#include <vector>

#include "common.h"

namespace mmesid::kernels {

/// Bandwidths of the Gaussian kernels.
struct GaussianBandwidth {
  /// Relative mode: the α_s (σ_s² = α_s · mean pairwise squared distance). Fixed mode: the σ_s.
  std::vector<double> values;
  /// true: `values` are α (relative mode, the library default α = {0.5}); false: `values` are σ.
  bool relative = true;
};

/// Optimized multi-threaded CPU MK-MMD.
/// @param x, y    [n, dim] float32 each, row-major; n >= 2 (the estimator divides by n − 1).
/// @param grad_x  out, optional: [n, dim] float32, ∂loss/∂x (σ held constant). nullptr = forward only.
/// @param grad_y  out, optional: [n, dim] float32, ∂loss/∂y. Must be null exactly when grad_x is.
/// @return the loss (accumulated in double).
/// @throws std::invalid_argument on n < 2, dim < 1, an empty or non-positive bandwidth list, or a
///         relative-mode batch whose mean pairwise distance is zero (σ would be 0).
double mmd_gaussian(const float* x, const float* y, int64_t n, int64_t dim,
                    const GaussianBandwidth& bandwidth, float* grad_x, float* grad_y, int threads);

/// Naive reference: explicit double-precision loops over all pairs, distances as Σ (u_k − v_k)².
double mmd_gaussian_reference(const float* x, const float* y, int64_t n, int64_t dim,
                              const GaussianBandwidth& bandwidth, float* grad_x, float* grad_y);

/// σ² per kernel for a batch, as the loss uses them (exposed for tests and diagnostics).
/// @param sigma2_out [bandwidth.values.size()] doubles.
void mmd_gaussian_sigma2(const float* x, const float* y, int64_t n, int64_t dim,
                         const GaussianBandwidth& bandwidth, double* sigma2_out, int threads);

}  // namespace mmesid::kernels
