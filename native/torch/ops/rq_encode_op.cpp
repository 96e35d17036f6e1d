// Only Tensor methods and explicitly included per-op headers (ATen/ops/*.h): keeps this TU off
// ATen/Functions.h, which roughly doubles compile time.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/ops/empty.h>

#include <limits>

#include "../../kernels/rq_encode.h"
#include "kernel_ops.h"
#include "op_common.h"

#ifdef MMESID_WITH_CUDA
#include <c10/core/DeviceGuard.h>

#include "../../kernels/cuda/kernels_cuda.h"
#endif

namespace mmesid::torch_ops {

std::tuple<at::Tensor, at::Tensor> rq_encode(const at::Tensor& x, const at::Tensor& codebooks, int64_t beam,
                                             bool with_error) {
  constexpr const char* op = "rq_encode";
  detail::check_float(x, op, "x");
  detail::check_float(codebooks, op, "codebooks");
  detail::check_rank(x, 2, "[n, d]", op, "x");
  detail::check_rank(codebooks, 3, "[L, K, d]", op, "codebooks");
  detail::check_same_device(codebooks, "codebooks", x, "x", op);
  const int64_t n = x.size(0), dim = x.size(1);
  const int64_t levels = codebooks.size(0), book = codebooks.size(1);
  TORCH_CHECK(codebooks.size(2) == dim, op, ": expected codebooks [L, K, ", dim,
              "] (d of x) but received shape ", codebooks.sizes());
  TORCH_CHECK(dim >= 1 && levels >= 1 && book >= 1, op, ": expected d, L and K >= 1 but received x ",
              x.sizes(), " and codebooks ", codebooks.sizes());
  TORCH_CHECK(book <= std::numeric_limits<int32_t>::max(), op,
              ": expected K <= 2^31 - 1 for codebooks but received K = ", book);
  TORCH_CHECK(beam >= 1 && beam <= std::numeric_limits<int>::max(), op,
              ": expected 1 <= beam <= 2^31 - 1 for beam but received ", beam);
  const auto backend = detail::backend_for(x, op);

  at::Tensor codes = at::empty({n, levels}, x.options().dtype(at::kInt));
  at::Tensor sq_error = with_error ? at::empty({n}, x.options()) : at::Tensor();
  if (n == 0) return {codes, sq_error};

  const at::Tensor xc = x.contiguous();
  const at::Tensor cc = codebooks.contiguous();
  kernels::RqEncodeShape shape;
  shape.n = n;
  shape.dim = dim;
  shape.levels = levels;
  shape.codebook_size = book;
  shape.beam = static_cast<int>(beam);
  float* err = with_error ? sq_error.data_ptr<float>() : nullptr;
#ifdef MMESID_WITH_CUDA
  if (backend == detail::Backend::Cuda) {
    const c10::DeviceGuard guard(x.device());
    kernels::cuda::rq_encode(xc.data_ptr<float>(), cc.data_ptr<float>(), shape, codes.data_ptr<int32_t>(),
                             err, nullptr);
    return {codes, sq_error};
  }
#endif
  (void)backend;
  kernels::rq_encode(xc.data_ptr<float>(), cc.data_ptr<float>(), shape, codes.data_ptr<int32_t>(), err,
                     detail::cpu_threads());
  return {codes, sq_error};
}

}  // namespace mmesid::torch_ops
