// LoRA linear layer, forward and backward, with the base weight frozen (PEFT layout and semantics):
//   y = x·Wᵀ + bias + scale · (x_lora·Aᵀ)·Bᵀ,   scale = lora_alpha / r
// x [rows, in], x_lora [rows, in] (optional), W [out, in], bias [out] (optional), A [r, in]
// (lora_A.weight), B [out, r] (lora_B.weight), y [rows, out]. All float32, row-major.
//
// LoRA dropout (PEFT `lora_dropout`; the paper trains with 0.05) acts on the low-rank path's input only:
// x_lora is that already-dropped-out input, drop(x). x_lora = nullptr means x_lora = x (no dropout), the
// plain LoRA linear; that path computes exactly what it did before x_lora existed, bit for bit. With
// x_lora given, the two inputs get separate gradients (grad_x through W only, grad_x_lora through the
// low-rank path), so a caller back-propagates grad_x_lora through its dropout mask itself.
//
// Fusion: the low-rank path is folded into the base GEMMs' accumulation (beta = 1) instead of extra
// passes over y or grad_x, so its cost is the rank-r GEMMs only (≈ 2·r/min(in,out) of the base FLOPs)
// plus one extra read of x (x_lora) and grad_y. With x_lora given, grad_x = grad_y·W has no low-rank
// term and is a plain GEMM (beta = 0); the low-rank expansion writes grad_x_lora in the same fused pass
// that accumulates grad_a from x_lora.
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

/// Forward: y = x·Wᵀ + bias + scale·(x_lora·Aᵀ)·Bᵀ.
/// @param x      [rows, in], the base path's input.
/// @param x_lora [rows, in] the low-rank path's input (drop(x)), or nullptr = x.
/// @param bias   [out] or nullptr. @param y out: [rows, out].
/// @param xa_out optional out: [rows, r] the intermediate x_lora·Aᵀ (lets a caller skip recomputing it
///        in the backward); nullptr to discard.
/// @throws ArgumentError on a dimension < 1 or a null required buffer.
void lora_linear_forward(const float* x, const float* x_lora, const float* weight, const float* bias,
                         const float* lora_a, const float* lora_b, const LoraShape& shape, float* y,
                         float* xa_out, int threads);

/// Backward of a scalar loss given grad_y = ∂loss/∂y [rows, out]. Let x̃ = x_lora, or x when x_lora is
/// nullptr, and v = grad_y·B [rows, r].
/// @param x           [rows, in]; needed only when x_lora is nullptr and grad_a (or grad_b without
///                    xa) is requested. May be nullptr otherwise.
/// @param x_lora      [rows, in] or nullptr (= x), as given to the forward.
/// @param xa          optional: [rows, r] x̃·Aᵀ saved by the forward; nullptr = recompute.
/// @param grad_x      out, optional: [rows, in] = grad_y·W + scale·v·A  when x_lora is nullptr,
///                                              = grad_y·W               when x_lora is given.
/// @param grad_x_lora out, optional: [rows, in] = scale·v·A; only with x_lora (the low-rank part of
///                    grad_x otherwise).
/// @param grad_a      out, optional: [r, in]    = scale·vᵀ·x̃.
/// @param grad_b      out, optional: [out, r]   = scale·grad_yᵀ·(x̃·Aᵀ).
/// @param grad_bias   out, optional: [out]      = Σ_rows grad_y.
/// @throws ArgumentError on a dimension < 1, a null buffer that a requested output needs, or
///         grad_x_lora requested without x_lora.
void lora_linear_backward(const float* x, const float* x_lora, const float* weight, const float* lora_a,
                          const float* lora_b, const float* grad_y, const float* xa, const LoraShape& shape,
                          float* grad_x, float* grad_x_lora, float* grad_a, float* grad_b, float* grad_bias,
                          int threads);

/// Naive references (triple loops, double accumulation), same contracts (xa is always recomputed).
void lora_linear_forward_reference(const float* x, const float* x_lora, const float* weight,
                                   const float* bias, const float* lora_a, const float* lora_b,
                                   const LoraShape& shape, float* y);
void lora_linear_backward_reference(const float* x, const float* x_lora, const float* weight,
                                    const float* lora_a, const float* lora_b, const float* grad_y,
                                    const LoraShape& shape, float* grad_x, float* grad_x_lora, float* grad_a,
                                    float* grad_b, float* grad_bias);

}  // namespace mmesid::kernels
