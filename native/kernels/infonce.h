// InfoNCE between paired batches a [n, d] and b [n, d], forward and backward: the cross-modal
// alignment loss of the MM-RQ-VAE tokenizer (quantized collaborative vs quantized text/visual).
//
//   â_i = a_i / max(‖a_i‖, 1e-12),  b̂_j likewise,  s_ij = ⟨â_i, b̂_j⟩ / τ
//   loss(a→b) = (1/n) Σ_i [ logsumexp_j s_ij − s_ii ]
//   symmetric: ½ · (loss(a→b) + loss(b→a)), the latter over columns.
// Positives are the diagonal. Gradients flow through the normalisation.
//
// Memory: O(n·d) plus O(n) row/column statistics and, per thread, one row panel of T × n similarities
// (T <= 256, at most ~16 MiB; never the n × n matrix). Panels are produced by GEMM and consumed at once.
// a→b needs one pass (a panel holds whole rows, so its log-sum-exps are exact and dS is formed in
// place: 3 GEMMs of n²·d, the minimum). Symmetric gets the column log-sum-exps online (streaming) in a
// first pass and recomputes the panels for the backward, flash-attention style (4 GEMMs).
#pragma once

#include <cstdint>

#include "common.h"

namespace mmesid::kernels {

/// Optimized multi-threaded CPU InfoNCE.
/// @param a, b         [n, dim] float32 each, row-major; n >= 1, dim >= 1.
/// @param temperature  τ > 0.
/// @param symmetric    false: a→b only; true: mean of a→b and b→a.
/// @param grad_a, grad_b out, optional (both or neither): [n, dim] ∂loss/∂a, ∂loss/∂b.
/// @return the loss (accumulated in double).
/// @throws std::invalid_argument on bad sizes or τ <= 0.
double info_nce(const float* a, const float* b, int64_t n, int64_t dim, double temperature, bool symmetric,
                float* grad_a, float* grad_b, int threads);

/// Naive double-precision reference with the same contract.
double info_nce_reference(const float* a, const float* b, int64_t n, int64_t dim, double temperature,
                          bool symmetric, float* grad_a, float* grad_b);

}  // namespace mmesid::kernels
