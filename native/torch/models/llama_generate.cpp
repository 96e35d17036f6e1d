#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "llama_generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/topk.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace mmesid::models {
namespace {

int64_t pick(const at::Tensor& logits_row, const GenerateOptions& o, const at::Generator& generator) {
  const at::Tensor row = logits_row.to(at::kFloat).cpu();
  if (o.greedy) return row.argmax().item<int64_t>();
  at::Tensor scaled = row / o.temperature;
  if (o.top_k > 0 && o.top_k < scaled.size(0)) {
    const at::Tensor kth = std::get<0>(at::topk(scaled, o.top_k)).min();
    scaled = scaled.masked_fill(scaled.lt(kth), -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scaled, -1);
  if (o.top_p < 1.0) {
    auto [sorted, order] = at::sort(probs, -1, true);
    const at::Tensor before = at::cumsum(sorted, -1) - sorted;  // mass of the tokens ranked above
    const at::Tensor drop_sorted = before.ge(o.top_p);
    const at::Tensor drop = at::empty_like(drop_sorted).scatter_(-1, order, drop_sorted);
    probs = probs.masked_fill(drop, 0.0);
  }
  return at::multinomial(probs, 1, false, generator).item<int64_t>();
}

}  // namespace

std::vector<int64_t> generate(const Llama& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& o, const std::function<bool()>& cancelled) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt must hold at least one token id");
  if (o.max_new_tokens < 0) throw std::invalid_argument("generate: max_new_tokens must be >= 0");
  if (!o.greedy) {
    if (!(o.temperature > 0.0) || !std::isfinite(o.temperature))
      throw std::invalid_argument("generate: temperature must be a positive number");
    if (!(o.top_p > 0.0 && o.top_p <= 1.0)) throw std::invalid_argument("generate: top_p must be in (0, 1]");
    if (o.top_k < 0) throw std::invalid_argument("generate: top_k must be >= 0");
  }
  const at::NoGradGuard no_grad;
  const at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<int64_t> ids(prompt);
  at::Tensor input = at::from_blob(ids.data(), {1, static_cast<int64_t>(ids.size())}, at::kLong).clone();
  KvCache cache;
  LlamaRunOptions run;
  std::vector<int64_t> out;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (cancelled && cancelled()) break;
    const at::Tensor hidden = model.forward(model.embed(input), at::Tensor(), at::Tensor(), &cache, run);
    const at::Tensor last = model.logits(hidden.select(1, hidden.size(1) - 1)).select(0, 0);
    const int64_t next = pick(last, o, generator);
    out.push_back(next);
    bool stop = false;
    for (const int64_t s : o.stop_ids) stop = stop || s == next;
    if (stop) break;
    input = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong));
  }
  return out;
}

}  // namespace mmesid::models
