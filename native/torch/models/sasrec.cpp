#include "sasrec.h"

#include <ATen/ops/dropout.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

namespace mmesid::models {
namespace {

constexpr double kLayerNormEps = 1e-8;  // the reference implementation's eps

at::Tensor xavier_normal(int64_t rows, int64_t cols) {
  const double std = std::sqrt(2.0 / static_cast<double>(rows + cols));
  return at::empty({rows, cols}, at::kFloat).normal_(0.0, std);
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::layer_norm(x, {x.size(-1)}, w, b, kLayerNormEps);
}

}  // namespace

at::Tensor Sasrec::add(const std::string& name, at::Tensor t) {
  t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

Sasrec::Sasrec(const SasrecConfig& config) : config_(config) {
  const int64_t d = config.dim;
  TORCH_CHECK(config.num_items >= 1, "sasrec: expected num_items >= 1 but received ", config.num_items);
  TORCH_CHECK(d >= 1 && config.heads >= 1 && d % config.heads == 0,
              "sasrec: expected dim divisible by heads but received dim ", d, ", heads ", config.heads);
  TORCH_CHECK(config.blocks >= 1 && config.max_len >= 1, "sasrec: expected blocks, max_len >= 1");
  TORCH_CHECK(config.dropout >= 0.0 && config.dropout < 1.0,
              "sasrec: expected dropout in [0, 1) but received ", config.dropout);
  c10::NoGradGuard no_grad;
  at::Tensor emb = xavier_normal(config.num_items + 1, d);
  emb[0].zero_();
  item_emb_ = add("item_emb", emb);
  pos_emb_ = add("pos_emb", xavier_normal(config.max_len, d));
  for (int64_t i = 0; i < config.blocks; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    Block b;
    b.ln1_w = add(p + "attn_ln.weight", at::ones({d}, at::kFloat));
    b.ln1_b = add(p + "attn_ln.bias", at::zeros({d}, at::kFloat));
    b.in_w = add(p + "attn.in_proj_weight", xavier_normal(3 * d, d));
    b.in_b = add(p + "attn.in_proj_bias", at::zeros({3 * d}, at::kFloat));
    b.out_w = add(p + "attn.out_proj.weight", xavier_normal(d, d));
    b.out_b = add(p + "attn.out_proj.bias", at::zeros({d}, at::kFloat));
    b.ln2_w = add(p + "ffn_ln.weight", at::ones({d}, at::kFloat));
    b.ln2_b = add(p + "ffn_ln.bias", at::zeros({d}, at::kFloat));
    b.ff1_w = add(p + "ffn.conv1.weight", xavier_normal(d, d));
    b.ff1_b = add(p + "ffn.conv1.bias", at::zeros({d}, at::kFloat));
    b.ff2_w = add(p + "ffn.conv2.weight", xavier_normal(d, d));
    b.ff2_b = add(p + "ffn.conv2.bias", at::zeros({d}, at::kFloat));
    blocks_.push_back(b);
  }
  last_ln_w_ = add("last_ln.weight", at::ones({d}, at::kFloat));
  last_ln_b_ = add("last_ln.bias", at::zeros({d}, at::kFloat));
  causal_ = at::ones({config.max_len, config.max_len}, at::kBool).triu(1);
}

at::Tensor Sasrec::attention(const at::Tensor& q, const at::Tensor& kv, const Block& b, bool train) const {
  const int64_t batch = q.size(0), len = q.size(1), d = config_.dim, h = config_.heads, hd = d / h;
  auto project = [&](const at::Tensor& x, int64_t part) {
    at::Tensor y = at::linear(x, b.in_w.narrow(0, part * d, d), b.in_b.narrow(0, part * d, d));
    return y.view({batch, len, h, hd}).transpose(1, 2);  // [B, h, L, hd]
  };
  at::Tensor qh = project(q, 0), kh = project(kv, 1), vh = project(kv, 2);
  at::Tensor att = qh.matmul(kh.transpose(-2, -1)).div(std::sqrt(static_cast<double>(hd)));
  att = att.masked_fill(causal_, -std::numeric_limits<float>::infinity()).softmax(-1);
  att = at::dropout(att, config_.dropout, train);
  at::Tensor out = att.matmul(vh).transpose(1, 2).reshape({batch, len, d});
  return at::linear(out, b.out_w, b.out_b);
}

at::Tensor Sasrec::forward(const at::Tensor& x, bool train) const {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == config_.max_len && x.scalar_type() == at::kLong,
              "sasrec: expected int64 input [B, ", config_.max_len, "] but received ", x.sizes());
  const double p = config_.dropout;
  const at::Tensor keep = x.ne(0).unsqueeze(-1).to(at::kFloat);  // [B, L, 1] timeline mask
  at::Tensor h =
      at::embedding(item_emb_, x, /*padding_idx=*/0).mul(std::sqrt(static_cast<double>(config_.dim)));
  h = h.add(pos_emb_.unsqueeze(0));
  h = at::dropout(h, p, train).mul(keep);
  for (const Block& b : blocks_) {
    const at::Tensor q = layer_norm(h, b.ln1_w, b.ln1_b);
    h = q.add(attention(q, h, b, train));
    h = layer_norm(h, b.ln2_w, b.ln2_b);
    at::Tensor f = at::dropout(at::linear(h, b.ff1_w, b.ff1_b), p, train).relu();
    f = at::dropout(at::linear(f, b.ff2_w, b.ff2_b), p, train);
    h = h.add(f).mul(keep);
  }
  return layer_norm(h, last_ln_w_, last_ln_b_);
}

void Sasrec::assign(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::map<std::string, at::Tensor> given;
  for (const auto& [name, t] : named) {
    if (!given.emplace(name, t).second)
      throw std::invalid_argument("sasrec: tensor \"" + name + "\" is given twice");
  }
  for (const auto& [name, p] : params_) {
    auto it = given.find(name);
    if (it == given.end())
      throw std::invalid_argument("sasrec: the weights lack the tensor \"" + name + "\"");
    const at::Tensor& t = it->second;
    if (t.scalar_type() != at::kFloat || t.sizes() != p.sizes()) {
      std::ostringstream m;
      m << "sasrec: tensor \"" << name << "\" should be float32 " << p.sizes() << " but is "
        << t.scalar_type() << " " << t.sizes();
      throw std::invalid_argument(m.str());
    }
    given.erase(it);
  }
  if (!given.empty())
    throw std::invalid_argument("sasrec: unknown tensor \"" + given.begin()->first + "\" in the weights");
  c10::NoGradGuard no_grad;
  for (const auto& [name, p] : params_) {
    for (const auto& [n, t] : named) {
      if (n == name) p.copy_(t);
    }
  }
}

at::Tensor Sasrec::score_last(const at::Tensor& x) const {
  c10::NoGradGuard no_grad;
  at::Tensor last = forward(x, false).select(1, config_.max_len - 1);  // [B, d]
  at::Tensor scores = last.matmul(item_emb_.t());                      // [B, N + 1]
  scores.select(1, 0).fill_(-std::numeric_limits<float>::infinity());
  return scores;
}

}  // namespace mmesid::models
