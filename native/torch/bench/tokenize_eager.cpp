#include "tokenize_eager.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstring>

namespace mmesid::torch_bench {

namespace {

at::Tensor view(const float* data, at::IntArrayRef shape) {
  return at::from_blob(const_cast<float*>(data), shape, at::TensorOptions().dtype(at::kFloat));
}

}  // namespace

void tokenize_eager(const float* x, int64_t n, const std::vector<EagerLinear>& layers, const float* codebooks,
                    int64_t levels, int64_t size, int64_t code_dim, int32_t* codes) {
  c10::InferenceMode inference;
  at::Tensor h = view(x, {n, layers.front().in_dim});
  for (size_t i = 0; i < layers.size(); ++i) {
    const EagerLinear& l = layers[i];
    h = at::linear(h, view(l.weight, {l.out_dim, l.in_dim}), view(l.bias, {l.out_dim}));
    if (i + 1 < layers.size()) h = at::relu(h);
  }
  at::Tensor residual = h.contiguous();
  const at::Tensor books = view(codebooks, {levels, size, code_dim});
  std::vector<at::Tensor> chosen;
  for (int64_t l = 0; l < levels; ++l) {
    const at::Tensor c = books[l];
    const at::Tensor dist =
        residual.pow(2).sum(1, true) - 2 * residual.matmul(c.t()) + c.pow(2).sum(1).unsqueeze(0);
    const at::Tensor idx = dist.argmin(1);
    residual = residual - c.index_select(0, idx);
    chosen.push_back(idx);
  }
  const at::Tensor all = at::stack(chosen, 1).to(at::kInt).contiguous();
  std::memcpy(codes, all.data_ptr<int32_t>(), static_cast<size_t>(all.numel()) * sizeof(int32_t));
}

}  // namespace mmesid::torch_bench
