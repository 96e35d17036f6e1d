// LoRA (Hu et al. 2021) as PEFT defines it, applied in exactly one helper, project(), so which modules
// carry adapters is configuration (llama.cpp's build_lora_mm):
//
//   y = x·Wᵀ + b + (α / r) · B·A·dropout(x)        W [out, in] frozen, A [r, in], B [out, r]
//
// Initialisation (PEFT's default, init_lora_weights = True): A ~ kaiming_uniform(a = √5), i.e.
// U(−1/√in, 1/√in); B = 0, so a fresh adapter leaves the model unchanged. Saved under PEFT's names
// (…<module>.lora_A.weight / lora_B.weight) so Python PEFT can load the adapters.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mmesid::models {

/// The adapters' configuration (PEFT's LoraConfig fields of the same names).
struct LoraConfig {
  int64_t rank = 0;      ///< r; 0 = no adapters
  double alpha = 0.0;    ///< lora_alpha; scale = alpha / r
  double dropout = 0.0;  ///< lora_dropout, in [0, 1)
  /// Subset of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (the paper: gate/up/down).
  std::vector<std::string> target_modules;
};

/// One linear projection: frozen base weight (+ bias) and an optional adapter.
struct Projection {
  at::Tensor weight;  ///< [out, in]
  at::Tensor bias;    ///< [out] or undefined
  at::Tensor lora_a;  ///< [r, in] or undefined (no adapter)
  at::Tensor lora_b;  ///< [out, r]
  double scale = 0.0;
  double dropout = 0.0;
  bool has_lora() const { return lora_a.defined(); }
};

/// y = projection(x) for x [..., in] → [..., out]. With an adapter: the fused LoRA kernel (one pass,
/// kernels/lora.h) when x and the weights are float32 on a device it supports; otherwise (bf16/fp16,
/// autocast, a device without our kernels) the same maths composed of ATen ops. `training` enables the
/// adapter's dropout (on the adapter's input only, as PEFT).
at::Tensor project(const Projection& projection, const at::Tensor& x, bool training);

/// The plain-ATen form of project() (the baseline of the benchmarks and the oracle of the tests).
at::Tensor project_unfused(const Projection& projection, const at::Tensor& x, bool training);

/// Adds a fresh adapter (PEFT initialisation above) of `config` to `projection`, drawing A from
/// `generator` (an at::Generator, CPU). The adapter's tensors live on the weight's device and dtype and
/// require grad.
void attach_lora(Projection& projection, const LoraConfig& config, const at::Generator& generator);

/// W += scale·B·A, then removes the adapter.
void merge_lora(Projection& projection);

/// The module names project() may target, in PEFT's spelling.
const std::vector<std::string>& lora_module_names();

}  // namespace mmesid::models
