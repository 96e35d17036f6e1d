// Only Tensor methods and explicitly included per-op headers (ATen/ops/*.h): keeps this TU off
// ATen/Functions.h, which roughly doubles compile time.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>

#include <cmath>

#include "../../kernels/infonce.h"
#include "kernel_ops.h"
#include "op_autograd.h"

#ifdef MMESID_WITH_CUDA
#include <c10/core/DeviceGuard.h>

#include "../../kernels/cuda/kernels_cuda.h"
#endif

namespace mmesid::torch_ops {
namespace {

constexpr const char* kOp = "info_nce";

// Forward runs the kernel's fused forward+backward pass when a gradient will be needed and saves
// ∂loss/∂a, ∂loss/∂b ([n, d] each); backward scales them by the incoming scalar gradient.
struct InfoNceFunction : torch::autograd::Function<InfoNceFunction> {
  static at::Tensor forward(detail::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                            double temperature, bool symmetric, bool want_grad) {
    const auto backend = detail::backend_for(a, kOp);
    const at::Tensor ac = a.contiguous();
    const at::Tensor bc = b.contiguous();
    const int64_t n = ac.size(0), dim = ac.size(1);
    at::Tensor grad_a, grad_b;
    if (want_grad) {
      grad_a = at::empty({n, dim}, ac.options());
      grad_b = at::empty({n, dim}, ac.options());
    }
    float* ga = want_grad ? grad_a.data_ptr<float>() : nullptr;
    float* gb = want_grad ? grad_b.data_ptr<float>() : nullptr;
    double loss = 0;
#ifdef MMESID_WITH_CUDA
    if (backend == detail::Backend::Cuda) {
      const c10::DeviceGuard guard(a.device());
      loss = kernels::cuda::info_nce(ac.data_ptr<float>(), bc.data_ptr<float>(), n, dim, temperature,
                                     symmetric, ga, gb, nullptr);
    }
#endif
    if (backend == detail::Backend::Cpu) {
      loss = kernels::info_nce(ac.data_ptr<float>(), bc.data_ptr<float>(), n, dim, temperature, symmetric, ga,
                               gb, detail::cpu_threads());
    }
    if (want_grad) ctx->save_for_backward({grad_a, grad_b});
    return at::scalar_tensor(loss, ac.options());
  }

  static detail::variable_list backward(detail::AutogradContext* ctx, detail::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    TORCH_CHECK(saved.size() == 2 && saved[0].defined(), kOp,
                ": internal error: backward without gradients saved by the forward");
    const at::Tensor& g = grad_outputs[0];
    at::Tensor grad_a, grad_b;
    {
      const at::NoGradGuard no_grad;
      if (ctx->needs_input_grad(0)) grad_a = saved[0].mul(g);
      if (ctx->needs_input_grad(1)) grad_b = saved[1].mul(g);
    }
    return detail::once_differentiable({grad_a, grad_b, at::Tensor(), at::Tensor(), at::Tensor()}, kOp);
  }
};

}  // namespace

at::Tensor info_nce(const at::Tensor& a, const at::Tensor& b, double temperature, bool symmetric) {
  detail::check_float(a, kOp, "a");
  detail::check_float(b, kOp, "b");
  detail::check_rank(a, 2, "[n, d]", kOp, "a");
  detail::check_rank(b, 2, "[n, d]", kOp, "b");
  detail::check_same_device(b, "b", a, "a", kOp);
  TORCH_CHECK(b.sizes() == a.sizes(), kOp, ": expected b of the shape of a ", a.sizes(), " but received ",
              b.sizes());
  TORCH_CHECK(a.size(0) >= 1 && a.size(1) >= 1, kOp,
              ": expected a and b with n >= 1 rows and d >= 1 columns but received ", a.sizes());
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0, kOp,
              ": expected a positive finite value for temperature but received ", temperature);
  detail::backend_for(a, kOp);
  const bool want_grad = c10::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad());
  return InfoNceFunction::apply(a, b, temperature, symmetric, want_grad);
}

}  // namespace mmesid::torch_ops
