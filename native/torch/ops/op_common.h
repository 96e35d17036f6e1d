// Private helpers shared by the kernel_ops translation units: argument checks with uniform
// messages, backend selection, thread count. Free of autograd headers so that rq_encode_op.cpp
// compiles fast (the autograd helpers are in op_autograd.h). Not installed; include only from
// native/torch/ops/*.cpp.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

namespace mmesid::torch_ops::detail {

enum class Backend { Cpu, Cuda };

inline void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), op, ": expected a tensor for ", name, " but received an undefined tensor");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": expected a strided (dense) tensor for ", name,
              " but received layout ", t.layout());
  TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": expected a float32 tensor for ", name, " but received ",
              t.scalar_type());
}

inline void check_rank(const at::Tensor& t, int64_t rank, const char* shape, const char* op,
                       const char* name) {
  TORCH_CHECK(t.dim() == rank, op, ": expected a ", rank, "-D ", shape, " tensor for ", name,
              " but received shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name, const char* op) {
  TORCH_CHECK(t.device() == ref.device(), op, ": expected ", name, " on the device of ", ref_name, " (",
              ref.device(), ") but received a tensor on ", t.device());
}

/// Which kernel family serves tensors on `t`'s device; rejects devices this build cannot serve.
inline Backend backend_for(const at::Tensor& t, const char* op) {
  if (t.is_cpu()) return Backend::Cpu;
#ifdef MMESID_WITH_CUDA
  if (t.is_cuda()) return Backend::Cuda;
  TORCH_CHECK(false, op, ": expected CPU or CUDA tensors but received a tensor on ", t.device());
#else
  TORCH_CHECK(false, op,
              ": expected CPU tensors (this build has no CUDA kernels; rebuild with "
              "MMESID_WITH_CUDA) but received a tensor on ",
              t.device());
#endif
  return Backend::Cpu;
}

/// Threads for a CPU kernel call: ATen's intra-op setting, so at::set_num_threads governs both.
inline int cpu_threads() {
  return at::get_num_threads();
}

}  // namespace mmesid::torch_ops::detail
