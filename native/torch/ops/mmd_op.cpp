// Only Tensor methods and explicitly included per-op headers (ATen/ops/*.h): keeps this TU off
// ATen/Functions.h, which roughly doubles compile time.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>

#include <cmath>

#include "kernel_ops.h"
#include "op_autograd.h"

#ifdef MMESID_WITH_CUDA
#include <c10/core/DeviceGuard.h>

#include "../../kernels/cuda/kernels_cuda.h"
#endif

namespace mmesid::torch_ops {
namespace {

constexpr const char* kOp = "mmd_gaussian";

// Forward runs the kernel's fused forward+backward pass when a gradient will be needed and saves
// ∂loss/∂x, ∂loss/∂y ([n, d] each); backward scales them by the incoming scalar gradient.
struct MmdGaussianFunction : torch::autograd::Function<MmdGaussianFunction> {
  static at::Tensor forward(detail::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& y,
                            const kernels::GaussianBandwidth& bandwidth, bool want_grad) {
    const auto backend = detail::backend_for(x, kOp);
    const at::Tensor xc = x.contiguous();
    const at::Tensor yc = y.contiguous();
    const int64_t n = xc.size(0), dim = xc.size(1);
    at::Tensor grad_x, grad_y;
    if (want_grad) {
      grad_x = at::empty({n, dim}, xc.options());
      grad_y = at::empty({n, dim}, xc.options());
    }
    float* gx = want_grad ? grad_x.data_ptr<float>() : nullptr;
    float* gy = want_grad ? grad_y.data_ptr<float>() : nullptr;
    double loss = 0;
#ifdef MMESID_WITH_CUDA
    if (backend == detail::Backend::Cuda) {
      const c10::DeviceGuard guard(x.device());
      loss = kernels::cuda::mmd_gaussian(xc.data_ptr<float>(), yc.data_ptr<float>(), n, dim, bandwidth, gx,
                                         gy, nullptr);
    }
#endif
    if (backend == detail::Backend::Cpu) {
      loss = kernels::mmd_gaussian(xc.data_ptr<float>(), yc.data_ptr<float>(), n, dim, bandwidth, gx, gy,
                                   detail::cpu_threads());
    }
    if (want_grad) ctx->save_for_backward({grad_x, grad_y});
    return at::scalar_tensor(loss, xc.options());
  }

  static detail::variable_list backward(detail::AutogradContext* ctx, detail::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    TORCH_CHECK(saved.size() == 2 && saved[0].defined(), kOp,
                ": internal error: backward without gradients saved by the forward");
    const at::Tensor& g = grad_outputs[0];
    at::Tensor grad_x, grad_y;
    {
      const at::NoGradGuard no_grad;
      if (ctx->needs_input_grad(0)) grad_x = saved[0].mul(g);
      if (ctx->needs_input_grad(1)) grad_y = saved[1].mul(g);
    }
    return detail::once_differentiable({grad_x, grad_y, at::Tensor(), at::Tensor()}, kOp);
  }
};

}  // namespace

at::Tensor mmd_gaussian(const at::Tensor& x, const at::Tensor& y,
                        const kernels::GaussianBandwidth& bandwidth) {
  detail::check_float(x, kOp, "x");
  detail::check_float(y, kOp, "y");
  detail::check_rank(x, 2, "[n, d]", kOp, "x");
  detail::check_rank(y, 2, "[n, d]", kOp, "y");
  detail::check_same_device(y, "y", x, "x", kOp);
  TORCH_CHECK(y.sizes() == x.sizes(), kOp, ": expected y of the shape of x ", x.sizes(), " but received ",
              y.sizes());
  TORCH_CHECK(x.size(0) >= 2, kOp, ": expected n >= 2 rows for x and y but received ", x.size(0));
  TORCH_CHECK(x.size(1) >= 1, kOp, ": expected d >= 1 columns for x and y but received ", x.size(1));
  TORCH_CHECK(!bandwidth.values.empty(), kOp,
              ": expected at least one value for bandwidth.values but received none");
  for (const double v : bandwidth.values) {
    TORCH_CHECK(std::isfinite(v) && v > 0, kOp, ": expected positive finite ",
                bandwidth.relative ? "alphas" : "sigmas", " for bandwidth.values but received ", v);
  }
  detail::backend_for(x, kOp);
  const bool want_grad = c10::GradMode::is_enabled() && (x.requires_grad() || y.requires_grad());
  return MmdGaussianFunction::apply(x, y, bandwidth, want_grad);
}

}  // namespace mmesid::torch_ops
