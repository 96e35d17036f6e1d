// LoRA linear layer, forward and backward, with the base weight frozen (PEFT layout and semantics):
//   y = x·Wᵀ + bias + scale · (x·Aᵀ)·Bᵀ,   scale = lora_alpha / r
// x [rows, in], W [out, in], bias [out] (optional), A [r, in] (lora_A.weight), B [out, r]
// (lora_B.weight), y [rows, out]. All float32, row-major.
//
// Fusion: the low-rank path is folded into the base GEMMs' accumulation (beta = 1) instead of extra
// passes over y or grad_x, so its cost is the rank-r GEMMs only (≈ 2·r/min(in,out) of the base FLOPs)
// plus one extra read of x and grad_y.
#pragma once

#include <cstdint>

#include "common.h"

namespace mmesid::kernels {

/// Shapes and scale of one LoRA linear.
struct LoraShape {
  int64_t rows = 0;     ///< tokens (rows of x), >= 1
  int64_t in_dim = 0;   ///< input features, >= 1
  int64_t out_dim = 0;  ///< output features, >= 1
  int64_t rank = 0;     ///< r, >= 1
  float scale = 1.0f;   ///< lora_alpha / r
};

/// Forward. @param bias [out] or nullptr. @param y out: [rows, out].
/// @param xa_out optional out: [rows, r] the intermediate x·Aᵀ (lets a caller skip recomputing it in
///        the backward); nullptr to discard.
void lora_linear_forward(const float* x, const float* weight, const float* bias, const float* lora_a,
                         const float* lora_b, const LoraShape& shape, float* y, float* xa_out, int threads);

/// Backward of a scalar loss given grad_y = ∂loss/∂y [rows, out].
/// @param xa       optional: [rows, r] x·Aᵀ saved by the forward; nullptr = recompute.
/// @param grad_x   out, optional: [rows, in]  = grad_y·W + scale·(grad_y·B)·A.
/// @param grad_a   out, optional: [r, in]     = scale·(grad_y·B)ᵀ·x.
/// @param grad_b   out, optional: [out, r]    = scale·grad_yᵀ·(x·Aᵀ).
/// @param grad_bias out, optional: [out]      = Σ_rows grad_y.
void lora_linear_backward(const float* x, const float* weight, const float* lora_a, const float* lora_b,
                          const float* grad_y, const float* xa, const LoraShape& shape, float* grad_x,
                          float* grad_a, float* grad_b, float* grad_bias, int threads);

/// Naive references (triple loops, double accumulation), same contracts.
void lora_linear_forward_reference(const float* x, const float* weight, const float* bias,
                                   const float* lora_a, const float* lora_b, const LoraShape& shape,
                                   float* y);
void lora_linear_backward_reference(const float* x, const float* weight, const float* lora_a,
                                    const float* lora_b, const float* grad_y, const LoraShape& shape,
                                    float* grad_x, float* grad_a, float* grad_b, float* grad_bias);

}  // namespace mmesid::kernels
