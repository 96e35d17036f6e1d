// Private autograd helpers of the differentiable kernel ops (mmd_op, infonce_op, lora_op). Not
// installed; include only from native/torch/ops/*.cpp.
#pragma once

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>

#include <memory>
#include <string>
#include <utility>

#include "op_common.h"

namespace mmesid::torch_ops::detail {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// Once-differentiable semantics for a backward's results (C++ counterpart of Python's
/// @once_differentiable): when the backward runs with grad mode on (create_graph = true), each
/// defined gradient is re-issued as an output of a DelayedError node, so it requires grad but any
/// attempt to differentiate through it throws; with grad mode off the results are returned
/// unchanged. The gradients must have been computed under a NoGradGuard.
inline variable_list once_differentiable(variable_list grads, const char* op) {
  if (!c10::GradMode::is_enabled()) return grads;
  variable_list inputs;
  for (const auto& g : grads) {
    if (!g.defined()) continue;
    auto alias = g.detach();
    alias.set_requires_grad(true);
    inputs.push_back(std::move(alias));
  }
  if (inputs.empty()) return grads;
  auto error = std::make_shared<torch::autograd::DelayedError>(
      std::string(op) + " is once-differentiable: its backward cannot be differentiated again",
      static_cast<int>(inputs.size()));
  variable_list wrapped = (*error)(std::move(inputs));
  size_t next = 0;
  for (auto& g : grads) {
    if (g.defined()) g = wrapped[next++];
  }
  return grads;
}

}  // namespace mmesid::torch_ops::detail
