// libtorch entry points for the mmesid kernels (native/kernels/): residual-quantization encode and
// the three differentiable ops with custom backward passes (Gaussian MK-MMD, InfoNCE, LoRA linear).
//
// Common contract of every function here:
// - Tensors: float32 (int32 for codes), strided, all on ONE device. Any strides are accepted
//   (inputs are made contiguous internally, which copies non-contiguous ones). Other dtypes are
//   rejected, never converted, so a bf16/f64 caller gets an error instead of a silent copy of a
//   large weight.
// - Devices: CPU tensors run the optimized CPU kernels (mmesid::kernels::*) with
//   threads = at::get_num_threads(). CUDA tensors run the CUDA twins (mmesid::kernels::cuda::*)
//   when this library is compiled with MMESID_WITH_CUDA, on the legacy default stream (stream
//   nullptr, also PyTorch's default current stream; callers that switch streams must synchronise)
//   with the tensors' device made current. Without MMESID_WITH_CUDA, CUDA tensors are rejected.
// - Autograd: each differentiable op is a torch::autograd::Function subclass (one graph node). They
//   are once-differentiable, like Python's @once_differentiable: the backward is not differentiable
//   itself; with create_graph = true the returned gradients require grad, but back-propagating
//   through them throws std::runtime_error("<op> is once-differentiable: ...") rather than
//   silently yielding wrong second derivatives.
// - Errors: c10::Error (TORCH_CHECK) naming the op, the argument, what was expected and what was
//   received, e.g. "mmd_gaussian: expected a float32 tensor for y but received Double".
//   Preconditions only the kernels check (beam > K^L, a relative-mode MMD batch of identical rows)
//   surface as the kernels' own exceptions, unchanged so the addon can map them:
//   std::invalid_argument (mmesid::kernels::ArgumentError) from the CPU kernels, std::runtime_error
//   from the CUDA twins. Raised during a backward pass, they reach the caller of backward().
//
// torch::Tensor is an alias of at::Tensor. This header spells at::Tensor so that including it does
// not drag <torch/types.h> (and with it <ATen/ATen.h>, every operator declaration) into every TU.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <tuple>

#include "../../kernels/mmd.h"

namespace mmesid::torch_ops {

/// Residual-quantization encode (kernels/rq_encode.h): for each item, the L codes chosen greedily
/// (beam = 1) or by beam search of width `beam` against the L codebooks.
/// Not differentiable: the outputs never require grad and no graph is recorded.
/// @param x          [n, d] float32 items (n = 0 gives empty outputs).
/// @param codebooks  [L, K, d] float32, same device as x; L, K, d >= 1, K <= 2^31 − 1.
/// @param beam       beam width, 1 <= beam <= min(K^L, 2^31 − 1); 1 = greedy.
/// @param with_error also return the squared reconstruction error of each item.
/// @return {codes [n, L] int32 in [0, K), sq_error [n] float32 (‖x_i − Σ_l C_l[code_il]‖²) when
///         with_error, else an undefined tensor}, both on x's device.
/// @throws c10::Error on a wrong dtype, rank, size mismatch, device, or beam;
///         std::invalid_argument from the kernel when beam > K^L.
std::tuple<at::Tensor, at::Tensor> rq_encode(const at::Tensor& x, const at::Tensor& codebooks, int64_t beam,
                                             bool with_error);

/// Gaussian-kernel multi-kernel MMD between equal-size batches (kernels/mmd.h; the unbiased
/// transfer-learning-library estimate plus 2/(n − 1)).
/// Differentiable w.r.t. x and y; the bandwidths σ (relative mode: derived from the batch) are
/// constants of the backward, as in the library (which detaches them).
/// Memory: when grad mode is on and x or y requires grad, the forward runs the kernel's fused
/// forward+backward tile pass and saves ∂loss/∂x and ∂loss/∂y ([n, d] each); the backward only
/// scales them by the incoming gradient. Otherwise nothing is saved and only the forward is
/// computed.
/// @param x, y       [n, d] float32 each, same device, n >= 2, d >= 1.
/// @param bandwidth  non-empty list of positive α (relative mode) or σ (fixed mode).
/// @return scalar (0-dim) float32 loss on x's device.
/// @throws c10::Error on a wrong dtype, rank, shape mismatch, device, n < 2 or a bad bandwidth
///         list; std::invalid_argument from the kernel for a relative-mode batch whose mean
///         pairwise distance is zero (σ would be 0).
at::Tensor mmd_gaussian(const at::Tensor& x, const at::Tensor& y,
                        const kernels::GaussianBandwidth& bandwidth);

/// InfoNCE between paired batches with cosine similarity / temperature, positives on the diagonal
/// (kernels/infonce.h). Differentiable w.r.t. a and b (through the L2 normalisation).
/// Memory: as mmd_gaussian — gradients are computed in the forward's tile pass and saved ([n, d]
/// each) when grad mode is on and a or b requires grad; the backward scales them by the incoming
/// gradient.
/// @param a, b        [n, d] float32 each, same device, n >= 1, d >= 1.
/// @param temperature τ > 0 (finite).
/// @param symmetric   false: loss(a→b) only; true: mean of loss(a→b) and loss(b→a).
/// @return scalar (0-dim) float32 loss on a's device.
/// @throws c10::Error on a wrong dtype, rank, shape mismatch, device, or τ <= 0 / non-finite.
at::Tensor info_nce(const at::Tensor& a, const at::Tensor& b, double temperature, bool symmetric);

/// LoRA linear with a frozen base weight (kernels/lora.h, PEFT layout):
///   y = x·Wᵀ + bias + scale · (x_lora·Aᵀ)·Bᵀ,   x_lora = x when not given
/// @param x       [..., in] float32, any number of leading dims (none, i.e. a 1-D x, included);
///                zero rows give an empty y. Receives a gradient: grad_y·W, plus the low-rank path's
///                scale·(grad_y·B)·A only when x_lora is not given.
/// @param weight  [out, in] float32, the frozen base weight. It NEVER receives a gradient, even
///                when it requires grad (it is detached before entering the graph); if it is the
///                only input requiring grad, y does not require grad.
/// @param bias    [out] float32 or nullopt / undefined. Receives a gradient when it requires grad.
/// @param lora_a  [r, in] float32 (lora_A.weight), r >= 1. Receives a gradient.
/// @param lora_b  [out, r] float32 (lora_B.weight). Receives a gradient.
/// @param scale   lora_alpha / r.
/// @param x_lora  LoRA dropout: the low-rank path's input, normally dropout(x) (PEFT's lora_dropout),
///                or nullopt / undefined = x (no dropout; the result is then exactly that of the call
///                without x_lora). Same shape, dtype (float32) and device as x. Receives its own
///                gradient scale·(grad_y·B)·A, which autograd carries back through the dropout mask.
/// @return y [..., out] float32 on x's device.
/// Memory: when a gradient is needed the forward saves the low-rank path's input (x_lora when given,
/// else x; contiguous [rows, in] form), references to W, A, B (copies only when they were not
/// contiguous) and x_lora·Aᵀ [rows, r], so the backward does not recompute it. Only the gradients that
/// are needed are computed.
/// @throws c10::Error on a wrong dtype, rank, size mismatch (x_lora: any shape but x's), device or
///         non-finite scale.
at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                       const at::Tensor& lora_a, const at::Tensor& lora_b, double scale,
                       const c10::optional<at::Tensor>& x_lora = c10::nullopt);

}  // namespace mmesid::torch_ops
