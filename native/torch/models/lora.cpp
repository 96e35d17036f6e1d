#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "lora.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <stdexcept>

#include "torch/ops/kernel_ops.h"

namespace mmesid::models {
namespace {

bool fused_kernel_supports(const Projection& p, const at::Tensor& x) {
  if (x.scalar_type() != at::kFloat || p.weight.scalar_type() != at::kFloat ||
      p.lora_a.scalar_type() != at::kFloat)
    return false;
  if (x.device().is_cpu()) return true;
#ifdef MMESID_WITH_CUDA
  return x.device().is_cuda();
#else
  return false;
#endif
}

}  // namespace

const std::vector<std::string>& lora_module_names() {
  static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

at::Tensor project_unfused(const Projection& p, const at::Tensor& x, bool training) {
  at::Tensor y = at::linear(x, p.weight, p.bias.defined() ? c10::optional<at::Tensor>(p.bias) : c10::nullopt);
  if (!p.has_lora()) return y;
  const at::Tensor dropped = (training && p.dropout > 0.0) ? at::dropout(x, p.dropout, true) : x;
  return y + at::linear(at::linear(dropped, p.lora_a), p.lora_b) * p.scale;
}

at::Tensor project(const Projection& p, const at::Tensor& x, bool training) {
  if (!p.has_lora()) {
    return at::linear(x, p.weight, p.bias.defined() ? c10::optional<at::Tensor>(p.bias) : c10::nullopt);
  }
  if (!fused_kernel_supports(p, x)) return project_unfused(p, x, training);
  const c10::optional<at::Tensor> bias = p.bias.defined() ? c10::optional<at::Tensor>(p.bias) : c10::nullopt;
  if (training && p.dropout > 0.0) {
    return torch_ops::lora_linear(x, p.weight, bias, p.lora_a, p.lora_b, p.scale,
                                  at::dropout(x, p.dropout, true));
  }
  return torch_ops::lora_linear(x, p.weight, bias, p.lora_a, p.lora_b, p.scale);
}

void attach_lora(Projection& p, const LoraConfig& config, const at::Generator& generator) {
  if (config.rank < 1)
    throw std::invalid_argument("LoRA: rank must be >= 1, got " + std::to_string(config.rank));
  if (!(config.alpha > 0.0) || !std::isfinite(config.alpha))
    throw std::invalid_argument("LoRA: alpha must be a positive number");
  if (!(config.dropout >= 0.0 && config.dropout < 1.0))
    throw std::invalid_argument("LoRA: dropout must be in [0, 1)");
  const int64_t out = p.weight.size(0), in = p.weight.size(1);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // kaiming_uniform(a = √5)
  at::Tensor a = at::empty({config.rank, in}, at::TensorOptions().dtype(at::kFloat));
  a.uniform_(-bound, bound, generator);
  const auto options = p.weight.options();
  p.lora_a = a.to(options).requires_grad_(true);
  p.lora_b = at::zeros({out, config.rank}, options).requires_grad_(true);
  p.scale = config.alpha / static_cast<double>(config.rank);
  p.dropout = config.dropout;
}

void merge_lora(Projection& p) {
  if (!p.has_lora()) return;
  const at::NoGradGuard no_grad;
  p.weight.add_(p.lora_b.detach().matmul(p.lora_a.detach()), p.scale);
  p.lora_a = at::Tensor();
  p.lora_b = at::Tensor();
  p.scale = 0.0;
  p.dropout = 0.0;
}

}  // namespace mmesid::models
