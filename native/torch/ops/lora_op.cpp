// Only Tensor methods and explicitly included per-op headers (ATen/ops/*.h): keeps this TU off
// ATen/Functions.h, which roughly doubles compile time.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <initializer_list>
#include <vector>

#include "../../kernels/lora.h"
#include "kernel_ops.h"
#include "op_autograd.h"

#ifdef MMESID_WITH_CUDA
#include <c10/core/DeviceGuard.h>

#include "../../kernels/cuda/kernels_cuda.h"
#endif

namespace mmesid::torch_ops {
namespace {

constexpr const char* kOp = "lora_linear";

float* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

// Works on a 2-D x [rows, in] (and x_lora, same shape); the public function reshapes around it
// (autograd handles those views). Saved for the backward: the low-rank path's input (x_lora when
// given, else x; the backward never needs x itself when x_lora is given, as grad_x = grad_y·W), W, A,
// B (contiguous forms; references unless a copy was needed) and that input·Aᵀ [rows, r] from the forward.
// The weight arrives detached, so it has no edge in the graph.
struct LoraLinearFunction : torch::autograd::Function<LoraLinearFunction> {
  static at::Tensor forward(detail::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, const at::Tensor& lora_a,
                            const at::Tensor& lora_b, const c10::optional<at::Tensor>& x_lora, double scale,
                            bool want_grad) {
    const auto backend = detail::backend_for(x, kOp);
    const at::Tensor xc = x.contiguous();
    const at::Tensor wc = weight.contiguous();
    const at::Tensor ac = lora_a.contiguous();
    const at::Tensor bc = lora_b.contiguous();
    const bool has_bias = bias.has_value() && bias->defined();
    const at::Tensor biasc = has_bias ? bias->contiguous() : at::Tensor();
    const bool has_x_lora = x_lora.has_value() && x_lora->defined();
    const at::Tensor xlc = has_x_lora ? x_lora->contiguous() : at::Tensor();
    kernels::LoraShape shape;
    shape.rows = xc.size(0);
    shape.in_dim = xc.size(1);
    shape.out_dim = wc.size(0);
    shape.rank = ac.size(0);
    shape.scale = static_cast<float>(scale);

    at::Tensor y = at::empty({shape.rows, shape.out_dim}, xc.options());
    at::Tensor xa = want_grad ? at::empty({shape.rows, shape.rank}, xc.options()) : at::Tensor();
#ifdef MMESID_WITH_CUDA
    if (shape.rows > 0 && backend == detail::Backend::Cuda) {
      const c10::DeviceGuard guard(x.device());
      kernels::cuda::lora_linear_forward(xc.data_ptr<float>(), data_or_null(xlc), wc.data_ptr<float>(),
                                         data_or_null(biasc), ac.data_ptr<float>(), bc.data_ptr<float>(),
                                         shape, y.data_ptr<float>(), data_or_null(xa), nullptr);
    }
#endif
    if (shape.rows > 0 && backend == detail::Backend::Cpu) {
      kernels::lora_linear_forward(xc.data_ptr<float>(), data_or_null(xlc), wc.data_ptr<float>(),
                                   data_or_null(biasc), ac.data_ptr<float>(), bc.data_ptr<float>(), shape,
                                   y.data_ptr<float>(), data_or_null(xa), detail::cpu_threads());
    }
    if (want_grad) {
      ctx->save_for_backward({has_x_lora ? xlc : xc, wc, ac, bc, xa});
      ctx->saved_data["has_bias"] = has_bias;
      ctx->saved_data["has_x_lora"] = has_x_lora;
      ctx->saved_data["scale"] = scale;
    }
    return y;
  }

  static detail::variable_list backward(detail::AutogradContext* ctx, detail::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    TORCH_CHECK(saved.size() == 5, kOp,
                ": internal error: backward without the tensors saved by the forward");
    const at::Tensor& x = saved[0];  // the low-rank path's input: x_lora when given, else x
    const at::Tensor& w = saved[1];
    const at::Tensor& a = saved[2];
    const at::Tensor& b = saved[3];
    const at::Tensor& xa = saved[4];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const bool has_x_lora = ctx->saved_data["has_x_lora"].toBool();
    kernels::LoraShape shape;
    shape.rows = x.size(0);
    shape.in_dim = x.size(1);
    shape.out_dim = w.size(0);
    shape.rank = a.size(0);
    shape.scale = static_cast<float>(ctx->saved_data["scale"].toDouble());

    // needs_input_grad counts graph edges: x, weight, [bias,] lora_a, lora_b[, x_lora].
    const size_t edge_a = has_bias ? 3 : 2;
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_bias = has_bias && ctx->needs_input_grad(2);
    const bool need_a = ctx->needs_input_grad(edge_a);
    const bool need_b = ctx->needs_input_grad(edge_a + 1);
    const bool need_x_lora = has_x_lora && ctx->needs_input_grad(edge_a + 2);

    const at::Tensor& gy_in = grad_outputs[0];
    TORCH_CHECK(gy_in.scalar_type() == at::kFloat && gy_in.device() == x.device() && gy_in.dim() == 2 &&
                    gy_in.size(0) == shape.rows && gy_in.size(1) == shape.out_dim,
                kOp, ": expected a float32 [", shape.rows, ", ", shape.out_dim, "] gradient on ", x.device(),
                " for y but received ", gy_in.scalar_type(), " ", gy_in.sizes(), " on ", gy_in.device());

    at::Tensor grad_x, grad_x_lora, grad_bias, grad_a, grad_b;
    {
      const at::NoGradGuard no_grad;
      const auto opts = x.options();
      const bool empty = shape.rows == 0;
      // Zero rows: the parameter gradients are sums over nothing.
      const auto alloc = [&](std::initializer_list<int64_t> size) {
        return empty ? at::zeros(size, opts) : at::empty(size, opts);
      };
      if (need_x) grad_x = at::empty({shape.rows, shape.in_dim}, opts);
      if (need_x_lora) grad_x_lora = at::empty({shape.rows, shape.in_dim}, opts);
      if (need_bias) grad_bias = alloc({shape.out_dim});
      if (need_a) grad_a = alloc({shape.rank, shape.in_dim});
      if (need_b) grad_b = alloc({shape.out_dim, shape.rank});
      if (!empty && (need_x || need_x_lora || need_bias || need_a || need_b)) {
        const at::Tensor gy = gy_in.contiguous();
        const auto backend = detail::backend_for(x, kOp);
        float* const x_ptr = has_x_lora ? nullptr : x.data_ptr<float>();
        float* const x_lora_ptr = has_x_lora ? x.data_ptr<float>() : nullptr;
#ifdef MMESID_WITH_CUDA
        if (backend == detail::Backend::Cuda) {
          const c10::DeviceGuard guard(x.device());
          kernels::cuda::lora_linear_backward(
              x_ptr, x_lora_ptr, w.data_ptr<float>(), a.data_ptr<float>(), b.data_ptr<float>(),
              gy.data_ptr<float>(), data_or_null(xa), shape, data_or_null(grad_x), data_or_null(grad_x_lora),
              data_or_null(grad_a), data_or_null(grad_b), data_or_null(grad_bias), nullptr);
        }
#endif
        if (backend == detail::Backend::Cpu) {
          kernels::lora_linear_backward(x_ptr, x_lora_ptr, w.data_ptr<float>(), a.data_ptr<float>(),
                                        b.data_ptr<float>(), gy.data_ptr<float>(), data_or_null(xa), shape,
                                        data_or_null(grad_x), data_or_null(grad_x_lora), data_or_null(grad_a),
                                        data_or_null(grad_b), data_or_null(grad_bias), detail::cpu_threads());
        }
      }
    }
    // One entry per forward argument: x, weight, bias, lora_a, lora_b, x_lora, scale, want_grad.
    return detail::once_differentiable(
        {grad_x, at::Tensor(), grad_bias, grad_a, grad_b, grad_x_lora, at::Tensor(), at::Tensor()}, kOp);
  }
};

}  // namespace

at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                       const at::Tensor& lora_a, const at::Tensor& lora_b, double scale,
                       const c10::optional<at::Tensor>& x_lora) {
  detail::check_float(x, kOp, "x");
  detail::check_float(weight, kOp, "weight");
  detail::check_float(lora_a, kOp, "lora_a");
  detail::check_float(lora_b, kOp, "lora_b");
  TORCH_CHECK(x.dim() >= 1, kOp, ": expected a [..., in] tensor for x but received a 0-D tensor");
  detail::check_rank(weight, 2, "[out, in]", kOp, "weight");
  detail::check_rank(lora_a, 2, "[r, in]", kOp, "lora_a");
  detail::check_rank(lora_b, 2, "[out, r]", kOp, "lora_b");
  detail::check_same_device(weight, "weight", x, "x", kOp);
  detail::check_same_device(lora_a, "lora_a", x, "x", kOp);
  detail::check_same_device(lora_b, "lora_b", x, "x", kOp);
  const int64_t in = x.size(-1), out = weight.size(0), rank = lora_a.size(0);
  TORCH_CHECK(in >= 1 && out >= 1 && rank >= 1, kOp, ": expected in, out and r >= 1 but received x ",
              x.sizes(), ", weight ", weight.sizes(), " and lora_a ", lora_a.sizes());
  TORCH_CHECK(weight.size(1) == in, kOp, ": expected weight [out, ", in,
              "] (in = last dim of x) but received shape ", weight.sizes());
  TORCH_CHECK(lora_a.size(1) == in, kOp, ": expected lora_a [r, ", in,
              "] (in = last dim of x) but received shape ", lora_a.sizes());
  TORCH_CHECK(lora_b.size(0) == out && lora_b.size(1) == rank, kOp, ": expected lora_b [", out, ", ", rank,
              "] ([out of weight, r of lora_a]) but received shape ", lora_b.sizes());
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    detail::check_float(*bias, kOp, "bias");
    detail::check_same_device(*bias, "bias", x, "x", kOp);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out, kOp, ": expected bias [", out,
                "] (out of weight) but received shape ", bias->sizes());
  }
  const bool has_x_lora = x_lora.has_value() && x_lora->defined();
  if (has_x_lora) {
    detail::check_float(*x_lora, kOp, "x_lora");
    detail::check_same_device(*x_lora, "x_lora", x, "x", kOp);
    TORCH_CHECK(x_lora->sizes() == x.sizes(), kOp, ": expected x_lora ", x.sizes(),
                " (the shape of x) but received shape ", x_lora->sizes());
  }
  TORCH_CHECK(std::isfinite(scale), kOp, ": expected a finite value for scale but received ", scale);
  detail::backend_for(x, kOp);

  // The frozen weight enters detached: no edge, so it can never receive (or cause) a gradient.
  const at::Tensor frozen = weight.detach();
  const c10::optional<at::Tensor> bias_arg = has_bias ? bias : c10::nullopt;
  const bool want_grad = c10::GradMode::is_enabled() &&
                         (x.requires_grad() || lora_a.requires_grad() || lora_b.requires_grad() ||
                          (has_bias && bias->requires_grad()) || (has_x_lora && x_lora->requires_grad()));
  // Explicit row count: reshape cannot infer -1 for a tensor of zero elements.
  const int64_t rows = x.numel() / in;
  const at::Tensor x2d = x.reshape({rows, in});
  const c10::optional<at::Tensor> x_lora2d =
      has_x_lora ? c10::optional<at::Tensor>(x_lora->reshape({rows, in})) : c10::nullopt;
  const at::Tensor y2d =
      LoraLinearFunction::apply(x2d, frozen, bias_arg, lora_a, lora_b, x_lora2d, scale, want_grad);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = out;
  return y2d.view(out_shape);
}

}  // namespace mmesid::torch_ops
