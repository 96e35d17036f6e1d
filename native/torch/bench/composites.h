// libtorch eager composites of the kernels' maths, written the way a PyTorch user would write them.
// They are the same-run baselines of `npm run bench` (never used by the library itself). Each runs once
// on tensors viewing caller memory; timing is done by the caller around the call.
#pragma once

#include <cstdint>
#include <vector>

namespace mmesid::torch_bench {

/// Greedy RQ encode: per level dist = ‖r‖² − 2·r·Cᵀ + ‖c‖², argmin, gather, subtract.
/// x [n, d], codebooks [L, K, d] -> codes [n, L] written to `codes`.
void rq_greedy(const float* x, const float* codebooks, int64_t n, int64_t dim, int64_t levels, int64_t size,
               int32_t* codes);

/// MK-MMD in matmul form (cdist² via norms and x·yᵀ), σ² = α·mean(d²) detached; forward + autograd
/// backward. Returns the loss; writes grads.
double mmd_forward_backward(const float* x, const float* y, int64_t n, int64_t dim,
                            const std::vector<double>& alphas, float* grad_x, float* grad_y);

/// InfoNCE (F.normalize, â·b̂ᵀ/τ, cross_entropy against the diagonal; symmetric averages both
/// directions); forward + autograd backward.
double info_nce_forward_backward(const float* a, const float* b, int64_t n, int64_t dim, double temperature,
                                 bool symmetric, float* grad_a, float* grad_b);

/// Frozen base linear y = x·Wᵀ: forward, then autograd backward for x only with grad_y.
void linear_forward_backward(const float* x, const float* weight, const float* grad_y, int64_t rows,
                             int64_t in_dim, int64_t out_dim, float* grad_x);

/// PEFT LoRA y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ: forward, then autograd backward for x, A, B.
void lora_forward_backward(const float* x, const float* weight, const float* lora_a, const float* lora_b,
                           const float* grad_y, int64_t rows, int64_t in_dim, int64_t out_dim, int64_t rank,
                           double scale, float* grad_x, float* grad_a, float* grad_b);

}  // namespace mmesid::torch_bench
