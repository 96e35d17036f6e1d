// The optimizer every mmesid training loop uses, written out on ATen so that no torch::optim header is
// needed (and its arithmetic is ours to document): Adam with decoupled weight decay (AdamW, as
// torch.optim.AdamW). Per step t, for each parameter p with gradient g:
//   p ← p·(1 − lr·wd)                       (skipped when wd = 0)
//   m ← β₁m + (1−β₁)g ;  v ← β₂v + (1−β₂)g²
//   p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
// Moments m, v have each parameter's shape (float32); t counts steps. Parameters without a gradient
// are skipped. The state (m, v, t) is exposed for checkpoints.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mmesid::train {

/// Hyperparameters of AdamW (defaults: torch.optim.AdamW's betas and eps, no decay).
struct AdamWConfig {
  double lr = 1e-3;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class AdamW {
 public:
  /// Zero moments for every parameter (the tensors are shared, not copied).
  AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params, const AdamWConfig& config);

  /// One update from the parameters' current .grad().
  void step();
  /// Zeroes every defined gradient in place (keeps the buffers).
  void zero_grad();

  std::vector<at::Tensor>& m() { return m_; }
  std::vector<at::Tensor>& v() { return v_; }
  int64_t& t() { return t_; }
  const AdamWConfig& config() const { return config_; }
  /// Sets the learning rate of the next steps (schedules).
  void set_lr(double lr) { config_.lr = lr; }

 private:
  AdamWConfig config_;
  std::vector<at::Tensor> params_, m_, v_;
  int64_t t_ = 0;
};

}  // namespace mmesid::train
