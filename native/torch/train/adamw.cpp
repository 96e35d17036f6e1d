#include "adamw.h"

#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace mmesid::train {

AdamW::AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params, const AdamWConfig& config)
    : config_(config) {
  for (const auto& [name, p] : params) {
    params_.push_back(p);
    m_.push_back(at::zeros_like(p));
    v_.push_back(at::zeros_like(p));
  }
}

void AdamW::step() {
  c10::NoGradGuard no_grad;
  ++t_;
  const AdamWConfig& c = config_;
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (c.weight_decay != 0.0) p.mul_(1.0 - c.lr * c.weight_decay);
    m_[i].mul_(c.beta1).add_(g, 1.0 - c.beta1);
    v_[i].mul_(c.beta2).addcmul_(g, g, 1.0 - c.beta2);
    const at::Tensor denom = v_[i].sqrt().div_(std::sqrt(bc2)).add_(c.eps);
    p.addcdiv_(m_[i], denom, -c.lr / bc1);
  }
}

void AdamW::zero_grad() {
  for (at::Tensor& p : params_) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

}  // namespace mmesid::train
