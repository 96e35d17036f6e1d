#include "recompute.h"

#include <ATen/Context.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace mmesid::train {
namespace {

/// The backward node: holds the function, the inputs and the generator state of the forward.
struct RecomputeNode : torch::autograd::Node {
  std::shared_ptr<RecomputedFn> fn;
  std::vector<at::Tensor> inputs;  // leaves as themselves, other inputs detached (values, not graphs)
  std::vector<bool> needs;
  at::Tensor rng_state;
  c10::Device device = c10::Device(c10::kCPU);

  std::string name() const override { return "mmesid::RecomputeInBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(fn, "recompute_in_backward: the backward ran twice (retain_graph is not supported)");
    at::Generator gen = at::globalContext().defaultGenerator(device);
    at::Tensor current;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      current = gen.get_state();
      gen.set_state(rng_state);
    }
    std::vector<at::Tensor> copies, wrt;
    for (size_t i = 0; i < inputs.size(); ++i) {
      // Leaves (parameters) are used as themselves, so `fn` may also reach them through its own members;
      // other inputs become fresh leaves cut from the forward's graph.
      at::Tensor t = needs[i] && inputs[i].is_leaf() ? inputs[i] : inputs[i].detach();
      if (needs[i]) {
        if (!t.requires_grad()) t.requires_grad_(true);
        wrt.push_back(t);
      }
      copies.push_back(t);
    }
    at::Tensor out;
    try {
      const at::AutoGradMode grad(true);
      out = (*fn)(copies);
    } catch (...) {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(current);
      throw;
    }
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(current);
    }
    const torch::autograd::variable_list computed =
        wrt.empty()
            ? torch::autograd::variable_list{}
            : torch::autograd::grad({out}, wrt, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                    /*allow_unused=*/true);
    torch::autograd::variable_list result;
    size_t next = 0;
    for (size_t i = 0; i < inputs.size(); ++i) result.push_back(needs[i] ? computed[next++] : at::Tensor());
    release_variables();
    return result;
  }

  void release_variables() override {
    inputs.clear();
    fn.reset();
  }
};

}  // namespace

at::Tensor recompute_in_backward(RecomputedFn fn, const std::vector<at::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty(), "recompute_in_backward: no inputs");
  bool any = false;
  for (const at::Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any || !at::GradMode::is_enabled()) return fn(inputs);

  auto node = std::make_shared<RecomputeNode>();
  node->device = inputs[0].device();
  {
    at::Generator gen = at::globalContext().defaultGenerator(node->device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    node->rng_state = gen.get_state();
  }
  at::Tensor out;
  {
    const at::NoGradGuard no_grad;
    out = fn(inputs);
  }
  for (const at::Tensor& t : inputs) {
    node->needs.push_back(t.requires_grad());
    node->inputs.push_back(t.requires_grad() && t.is_leaf() ? t : t.detach());
  }
  node->fn = std::make_shared<RecomputedFn>(std::move(fn));
  torch::autograd::edge_list edges;
  for (const at::Tensor& t : inputs) edges.push_back(torch::autograd::impl::gradient_edge(t));
  node->set_next_edges(std::move(edges));
  out = out.detach();
  torch::autograd::create_gradient_edge(out, node);
  return out;
}

}  // namespace mmesid::train
