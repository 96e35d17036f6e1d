#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "mmesid.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/_unique2.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log1p.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/split.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "common/errors.h"
#include "torch/models/llama.h"
#include "torch/train/recompute.h"

namespace mmesid::models {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("mmesid head: " + message);
}

at::Tensor uniform(std::vector<int64_t> shape, double bound, const at::Generator& g) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  t.uniform_(-bound, bound, g);
  return t;
}

bool uses_sids(const std::string& variant) {
  return variant == "mme-sid" || variant == "mme-random";
}

/// softmax(MLP₂(MLP₁(f)) / τ) [rows, 1 + M] of features f [rows, 1]; p = the 7 fusion tensors in
/// MmesidHead::fusion_parameters() order.
at::Tensor fusion_softmax(const at::Tensor& f, const at::Tensor* p, double temperature) {
  const at::Tensor z = at::linear(at::gelu(at::linear(f, p[0], p[1])), p[2], p[3]);
  return at::softmax(at::linear(at::gelu(at::linear(z, p[4])), p[5], p[6]) / temperature, 1);
}

/// U = w₀·S + Σ_m w_m·(P_m·T_m + b_m) for the same rows of S [c, H], w [c, 1 + M] and each T_m [c, d_m];
/// pb = P_0, b_0, P_1, b_1, … .
at::Tensor fused_vectors(const at::Tensor& s, const at::Tensor& w, const std::vector<at::Tensor>& tables,
                         const at::Tensor* pb) {
  at::Tensor u = s * w.select(1, 0).unsqueeze(1);
  for (size_t m = 0; m < tables.size(); ++m)
    u = u + at::linear(tables[m], pb[2 * m], pb[2 * m + 1]) *
                w.select(1, static_cast<int64_t>(1 + m)).unsqueeze(1);
  return u;
}

}  // namespace

at::Tensor MmesidHead::add(const std::string& name, at::Tensor t) {
  t.requires_grad_(true);
  params_.emplace_back("head." + name, t);
  return t;
}

MmesidHead::MmesidHead(MmesidHeadConfig config, std::vector<MmesidModality> modalities,
                       const at::Tensor& frequency, uint64_t seed)
    : config_(std::move(config)), modalities_(std::move(modalities)) {
  const std::set<std::string> variants = {"mme-sid", "mme-random", "e4srec", "concat", "concat-mlp"};
  require(variants.count(config_.variant) == 1,
          "unknown variant \"" + config_.variant +
              "\" (expected mme-sid, mme-random, e4srec, concat, concat-mlp)");
  require(!modalities_.empty(), "at least one modality is needed");
  require(config_.hidden >= 1, "hidden must be >= 1");
  require(config_.score_chunk >= 1, "score_chunk must be >= 1");
  require(config_.temperature > 0.0 && std::isfinite(config_.temperature), "temperature must be positive");
  const int64_t h = config_.hidden;
  num_items_ = modalities_[0].table.size(0);
  require(num_items_ >= 2, "the tables need at least one item besides the padding row");
  if (config_.variant == "e4srec") {
    std::vector<MmesidModality> collab;
    for (auto& m : modalities_)
      if (m.name == "collab") collab.push_back(m);
    require(collab.size() == 1, "e4srec needs the collab modality");
    modalities_ = collab;
  }
  for (auto& m : modalities_) {
    require(m.table.dim() == 2 && m.table.size(0) == num_items_ && m.table.scalar_type() == at::kFloat,
            m.name + ": the table must be float32 [N = " + std::to_string(num_items_) + ", d]");
    m.table = m.table.detach().contiguous();
    if (uses_sids(config_.variant)) {
      require(m.sids.defined() && m.sids.dim() == 2 && m.sids.size(0) == num_items_,
              m.name + ": semantic IDs [N, L] are needed by " + config_.variant);
      m.sids = m.sids.to(at::kLong).contiguous();
    }
  }
  require(frequency.dim() == 1 && frequency.size(0) == num_items_, "frequency must be [N]");
  const at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t count = static_cast<int64_t>(modalities_.size());
  auto linear = [&](const std::string& name, int64_t in, int64_t out, bool bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    Linear l;
    l.weight = add(name + ".weight", uniform({out, in}, bound, g));
    if (bias) l.bias = add(name + ".bias", uniform({out}, bound, g));
    return l;
  };
  for (const auto& m : modalities_)
    projections_.push_back(linear("proj." + m.name, m.table.size(1), h, true));
  if (uses_sids(config_.variant)) {
    for (const auto& m : modalities_) {
      const int64_t levels = m.sids.size(1);
      const bool from_tokenizer = config_.variant == "mme-sid";
      int64_t k = 0;
      if (from_tokenizer) {
        require(m.codebooks.defined() && m.codebooks.dim() == 3 && m.codebooks.size(0) == levels,
                m.name + ": mme-sid needs the tokenizer's codebooks [L, K, H]");
        require(m.codebooks.size(2) == h,
                m.name + ": the codebooks' dim " + std::to_string(m.codebooks.size(2)) +
                    " differs from the LLM's hidden size " + std::to_string(h) +
                    " (train the tokenizer with --code-dim " + std::to_string(h) + ")");
        k = m.codebooks.size(1);
      } else {
        k = m.codebooks.defined() ? m.codebooks.size(1)
            : m.codes > 0         ? m.codes
                                  : m.sids.max().item<int64_t>() + 1;
      }
      require(m.sids.max().item<int64_t>() < k, m.name + ": a semantic ID exceeds the codebook size");
      std::vector<at::Tensor> tables;
      for (int64_t l = 0; l < levels; ++l) {
        // N(0, 1) (nn.Embedding's init) is drawn for both variants and then overwritten by the codebooks,
        // as the authors' code does: the generator's stream, and so every later parameter (input MLP,
        // fusion MLP, S), is the same for mme-sid and mme-random — the ablation differs in the codes alone.
        at::Tensor init = at::empty({k, h}, at::TensorOptions().dtype(at::kFloat)).normal_(0.0, 1.0, g);
        if (from_tokenizer) init.copy_(m.codebooks.select(0, l));
        tables.push_back(add("codes." + m.name + "." + std::to_string(l), init));
      }
      codes_.push_back(tables);
    }
  }
  if (config_.variant == "mme-sid" || config_.variant == "mme-random") {
    input1_ = linear("input.0", 2 * count * h, count * h, true);
    input2_ = linear("input.2", count * h, h, true);
  } else if (config_.variant == "concat") {
    input1_ = linear("input.0", count * h, h, true);
  } else if (config_.variant == "concat-mlp") {
    input1_ = linear("input.0", count * h, count * h, true);
    input2_ = linear("input.2", count * h, h, true);
  }
  const bool fused = config_.fusion && config_.variant != "e4srec";
  if (fused) {
    fusion1_ = linear("fusion.mlp1.0", 1, 64, true);
    fusion2_ = linear("fusion.mlp1.2", 64, 10, true);
    fusion3_ = linear("fusion.mlp2.0", 10, 64, false);
    fusion4_ = linear("fusion.mlp2.2", 64, 1 + count, true);
  }
  target_table_ =
      add("target_items.weight", uniform({num_items_, h}, 1.0 / std::sqrt(static_cast<double>(h)), g));
  const at::Tensor f = frequency.to(at::kDouble).log1p();
  const at::Tensor real = f.narrow(0, 1, num_items_ - 1);
  const double lo = real.min().item<double>(), hi = real.max().item<double>();
  const at::Tensor feature = ((f - lo) / (hi > lo ? hi - lo : 1.0)).to(at::kFloat);
  // The fusion weights depend on an item only through its frequency, and items share few distinct
  // frequencies (Beauty: 12,087 items, a few hundred values): the fusion MLP runs once per distinct value.
  const auto [levels, index, counts] = at::_unique2(feature, /*sorted=*/true, /*return_inverse=*/true);
  (void)counts;
  frequency_levels_ = levels.unsqueeze(1).contiguous();
  frequency_index_ = index.to(at::kLong).contiguous();
  frequency_feature_ = feature.unsqueeze(1).contiguous();
}

at::Tensor MmesidHead::item_inputs(const at::Tensor& ids) const {
  const at::Tensor flat = ids.reshape({-1}).to(at::kLong);
  std::vector<at::Tensor> projected;
  for (size_t m = 0; m < modalities_.size(); ++m) {
    const at::Tensor rows = at::embedding(modalities_[m].table, flat);
    projected.push_back(at::linear(rows, projections_[m].weight, projections_[m].bias));
  }
  at::Tensor x;
  const std::string& v = config_.variant;
  if (v == "e4srec") {
    x = projected[0];
  } else if (v == "concat") {
    x = at::linear(at::cat(projected, -1), input1_.weight, input1_.bias);
  } else if (v == "concat-mlp") {
    x = at::linear(at::relu(at::linear(at::cat(projected, -1), input1_.weight, input1_.bias)), input2_.weight,
                   input2_.bias);
  } else {
    std::vector<at::Tensor> parts;
    for (size_t m = 0; m < modalities_.size(); ++m) {
      const at::Tensor sids = modalities_[m].sids.index_select(0, flat);  // [n, L]
      at::Tensor sum;
      for (size_t l = 0; l < codes_[m].size(); ++l) {
        const at::Tensor code = sids.select(1, static_cast<int64_t>(l));
        const at::Tensor valid = code.ge(0);
        const at::Tensor e =
            at::embedding(codes_[m][l], code.clamp_min(0)) * valid.unsqueeze(1).to(at::kFloat);
        sum = sum.defined() ? sum + e : e;
      }
      parts.push_back(projected[m]);
      parts.push_back(sum);
    }
    x = at::gelu(at::linear(at::relu(at::linear(at::cat(parts, -1), input1_.weight, input1_.bias)),
                            input2_.weight, input2_.bias));
  }
  std::vector<int64_t> shape(ids.sizes().begin(), ids.sizes().end());
  shape.push_back(config_.hidden);
  return x.reshape(shape);
}

std::vector<at::Tensor> MmesidHead::fusion_parameters() const {
  return {fusion1_.weight, fusion1_.bias,   fusion2_.weight, fusion2_.bias,
          fusion3_.weight, fusion4_.weight, fusion4_.bias};
}

std::vector<at::Tensor> MmesidHead::projection_parameters() const {
  std::vector<at::Tensor> pb;
  for (const Linear& p : projections_) pb.insert(pb.end(), {p.weight, p.bias});
  return pb;
}

std::vector<at::Tensor> MmesidHead::table_rows(int64_t first, int64_t count) const {
  std::vector<at::Tensor> rows;
  for (const auto& m : modalities_) rows.push_back(m.table.narrow(0, first, count));
  return rows;
}

at::Tensor MmesidHead::level_weights() const {
  return fusion_softmax(frequency_levels_, fusion_parameters().data(), config_.temperature);
}

at::Tensor MmesidHead::vectors_of_rows(const std::function<at::Tensor(const at::Tensor&)>& rows,
                                       const at::Tensor& levels) const {
  const at::Tensor s = rows(target_table_);
  if (!fusion1_.weight.defined()) return s;
  std::vector<at::Tensor> tables;
  for (const auto& m : modalities_) tables.push_back(rows(m.table));
  return fused_vectors(s,
                       (levels.defined() ? levels : level_weights()).index_select(0, rows(frequency_index_)),
                       tables, projection_parameters().data());
}

at::Tensor MmesidHead::item_vectors(int64_t first, int64_t count) const {
  require(first >= 0 && count >= 0 && first + count <= num_items_, "item range out of bounds");
  return vectors_of_rows([first, count](const at::Tensor& t) { return t.narrow(0, first, count); },
                         at::Tensor());
}

at::Tensor MmesidHead::item_vectors_of(const at::Tensor& ids) const {
  const at::Tensor index = ids.to(at::kLong).reshape({-1});
  return vectors_of_rows([&index](const at::Tensor& t) { return t.index_select(0, index); }, at::Tensor());
}

at::Tensor MmesidHead::fusion_weights() const {
  if (!fusion1_.weight.defined()) return at::Tensor();
  return level_weights().index_select(0, frequency_index_);
}

std::vector<at::Tensor> MmesidHead::target_rows_in_chunks(int64_t step) const {
  return target_table_.narrow(0, 1, num_items_ - 1).split(step);
}

at::Tensor MmesidHead::chunked_logsumexp(
    std::vector<at::Tensor> inputs, int64_t step,
    const std::function<train::RecomputedFn(int64_t first, int64_t count)>& chunk) const {
  const std::vector<at::Tensor> s_chunks = target_rows_in_chunks(step);
  std::vector<at::Tensor> chunk_lse;
  for (int64_t first = 1; first < num_items_; first += step) {
    inputs[1] = s_chunks[static_cast<size_t>((first - 1) / step)];
    chunk_lse.push_back(
        train::recompute_in_backward(chunk(first, std::min(step, num_items_ - first)), inputs));
  }
  return at::logsumexp(at::stack(chunk_lse, 1), {1});
}

at::Tensor MmesidHead::reference_lse(const at::Tensor& h, int64_t step) const {
  const bool fused = fusion1_.weight.defined();
  std::vector<at::Tensor> inputs = {h, target_table_};
  if (fused) {
    for (const auto& list : {fusion_parameters(), projection_parameters()})
      inputs.insert(inputs.end(), list.begin(), list.end());
  }
  const at::Tensor feature = frequency_feature_;
  const double temperature = config_.temperature;
  return chunked_logsumexp(inputs, step, [this, feature, temperature, fused](int64_t first, int64_t count) {
    return [this, feature, temperature, fused, first, count](const std::vector<at::Tensor>& in) {
      if (!fused) return at::logsumexp(at::linear(in[0], in[1]), {1});
      const at::Tensor w = fusion_softmax(feature.narrow(0, first, count), &in[2], temperature);
      return at::logsumexp(at::linear(in[0], fused_vectors(in[1], w, table_rows(first, count), &in[9])), {1});
    };
  });
}

at::Tensor MmesidHead::loss(const at::Tensor& h, const at::Tensor& targets, int64_t chunk,
                            bool reference) const {
  const int64_t step = chunk > 0 ? chunk : config_.score_chunk;
  require(h.dim() == 2 && h.size(1) == config_.hidden, "h must be [B, H]");
  const at::Tensor t = targets.to(at::kLong);
  require(t.dim() == 1 && t.size(0) == h.size(0), "targets must be [B]");
  if (t.numel() > 0) {
    require(t.min().item<int64_t>() >= 1 && t.max().item<int64_t>() < num_items_,
            "targets must be item ids in [1, " + std::to_string(num_items_) + ")");
  }
  const bool fused = fusion1_.weight.defined();
  const at::Tensor levels = fused ? level_weights() : at::Tensor();  // shared by the target and the chunks
  // The target's score through ordinary autograd ([B, H] item vectors of the targets only).
  const at::Tensor target_score =
      (h * vectors_of_rows([&t](const at::Tensor& x) { return x.index_select(0, t); }, levels)).sum(1);
  if (reference) return (reference_lse(h, step) - target_score).mean();
  // Every term of a score is linear in h, so h·(P_m·T_m[n] + b_m) = (h·P_m)·T_m[n] + h·b_m: with fewer rows
  // than H the [B, d_m] products replace the [chunk, H] projections of every chunk (B·d_m vs d_m·H per item).
  const bool factorized = fused && h.size(0) < config_.hidden;
  // Inputs of every chunk: [h, S, w of the frequency levels, then per modality (h·P_m, h·b_m) when
  // factorized, else (P_m, b_m)].
  std::vector<at::Tensor> inputs = {h, target_table_};
  if (fused) {
    inputs.push_back(levels);
    for (const Linear& p : projections_) {
      if (factorized) {
        inputs.push_back(at::matmul(h, p.weight));
        inputs.push_back(at::matmul(h, p.bias).unsqueeze(1));
      } else {
        inputs.push_back(p.weight);
        inputs.push_back(p.bias);
      }
    }
  }
  // log Σ_n exp(score) over items 1 … N−1, one chunk of logits at a time, each recomputed in the backward.
  const at::Tensor index = frequency_index_;
  const at::Tensor lse =
      chunked_logsumexp(inputs, step, [this, index, fused, factorized](int64_t first, int64_t count) {
        return [this, index, fused, factorized, first, count](const std::vector<at::Tensor>& in) {
          const at::Tensor& s = in[1];
          if (!fused) return at::logsumexp(at::linear(in[0], s), {1});
          const at::Tensor w = in[2].index_select(0, index.narrow(0, first, count));  // [count, 1 + M]
          const std::vector<at::Tensor> tables = table_rows(first, count);
          if (!factorized) return at::logsumexp(at::linear(in[0], fused_vectors(s, w, tables, &in[3])), {1});
          at::Tensor logits = at::linear(in[0], s) * w.select(1, 0).unsqueeze(0);
          for (size_t m = 0; m < tables.size(); ++m) {
            const at::Tensor term = at::linear(in[3 + 2 * m], tables[m]) + in[4 + 2 * m];
            logits = logits + term * w.select(1, static_cast<int64_t>(1 + m)).unsqueeze(0);
          }
          return at::logsumexp(logits, {1});
        };
      });
  return (lse - target_score).mean();
}

at::Tensor MmesidHead::code_tables(size_t modality) const {
  require(modality < codes_.size(), "no code tables for this modality (variant " + config_.variant + ")");
  return at::stack(codes_[modality], 0).detach();
}

void MmesidHead::assign(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::map<std::string, at::Tensor> given(named.begin(), named.end());
  std::vector<std::string> missing, misshaped, unexpected;
  std::set<std::string> known;
  for (const auto& [name, p] : params_) {
    known.insert(name);
    const auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != p.sizes()) {
      misshaped.push_back(name + " " + shape_text(it->second.sizes().vec()) + " (expected " +
                          shape_text(p.sizes().vec()) + ")");
    }
  }
  for (const auto& [name, _] : given)
    if (!known.count(name)) unexpected.push_back(name);
  require(missing.empty() && misshaped.empty() && unexpected.empty(),
          "the head weights do not match the configuration:" +
              name_lists({{"missing", missing}, {"unexpected", unexpected}, {"mis-shaped", misshaped}}));
  const at::NoGradGuard no_grad;
  for (const auto& [name, p] : params_) p.copy_(given.at(name));
}

at::Tensor mmesid_last_hidden(const Llama& llm, const MmesidHead& head, const MmesidPromptBatch& batch,
                              const LlamaRunOptions& run) {
  require(llm.config().hidden_size == head.config().hidden, "the head's hidden size differs from the LLM's");
  const auto b = static_cast<int64_t>(batch.rows.size());
  require(b >= 1, "an empty batch");
  int64_t longest = 1;
  for (const int64_t r : batch.rows) longest = std::max(longest, batch.offsets[r + 1] - batch.offsets[r]);
  std::vector<int64_t> ids(static_cast<size_t>(b * longest), 0);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t r = batch.rows[static_cast<size_t>(i)];
    const int64_t len = batch.offsets[r + 1] - batch.offsets[r], pad = longest - len;
    for (int64_t t = 0; t < len; ++t) {
      const auto at_ = static_cast<size_t>(i * longest + pad + t);
      ids[at_] = batch.items[batch.offsets[r] + t];
    }
  }
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  const at::Tensor item_ids = at::from_blob(ids.data(), {b, longest}, long_opts).clone();
  const at::Tensor x = head.item_inputs(item_ids).to(llm.device(), llm.dtype());
  auto tokens = [&](const std::vector<int64_t>* list) -> at::Tensor {
    if (!list || list->empty()) return at::Tensor();
    const auto n = static_cast<int64_t>(list->size());
    return llm.embed(at::from_blob(const_cast<int64_t*>(list->data()), {1, n}, long_opts).clone()).squeeze(0);
  };
  const at::Tensor prefix = tokens(batch.prefix), suffix = tokens(batch.suffix);
  // Row b: [padding, prefix, items, suffix] — the padding goes to the very left, so the relative positions
  // of the real tokens (all RoPE sees) do not depend on the other histories of the batch.
  std::vector<at::Tensor> rows, row_masks;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t r = batch.rows[static_cast<size_t>(i)];
    const int64_t pad = longest - (batch.offsets[r + 1] - batch.offsets[r]);
    std::vector<at::Tensor> parts = {x[i].narrow(0, 0, pad)};
    std::vector<at::Tensor> masks = {at::zeros({pad}, long_opts)};
    if (prefix.defined()) parts.push_back(prefix), masks.push_back(at::ones({prefix.size(0)}, long_opts));
    parts.push_back(x[i].narrow(0, pad, longest - pad));
    masks.push_back(at::ones({longest - pad}, long_opts));
    if (suffix.defined()) parts.push_back(suffix), masks.push_back(at::ones({suffix.size(0)}, long_opts));
    rows.push_back(at::cat(parts, 0));
    row_masks.push_back(at::cat(masks, 0));
  }
  const at::Tensor embeds = at::stack(rows, 0);
  const at::Tensor hidden = llm.forward(embeds, at::stack(row_masks, 0), at::Tensor(), nullptr, run);
  // The head lives on the CPU: the hidden states (and their gradient) cross back to it here.
  return hidden.select(1, hidden.size(1) - 1).to(head.target_table().device(), at::kFloat);
}

at::Tensor mmesid_last_hidden_by_length(const Llama& llm, const MmesidHead& head,
                                        const MmesidPromptBatch& batch, const LlamaRunOptions& run,
                                        int64_t group_rows) {
  require(group_rows >= 1, "group_rows must be >= 1");
  const auto b = static_cast<int64_t>(batch.rows.size());
  require(b >= 1, "an empty batch");
  auto length = [&](int64_t i) {
    const int64_t r = batch.rows[static_cast<size_t>(i)];
    return batch.offsets[r + 1] - batch.offsets[r];
  };
  std::vector<int64_t> order(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return length(x) < length(y); });
  at::Tensor out;
  for (int64_t first = 0; first < b; first += group_rows) {
    const int64_t count = std::min(group_rows, b - first);
    MmesidPromptBatch group = batch;
    group.rows.clear();
    std::vector<int64_t> positions;
    for (int64_t i = first; i < first + count; ++i) {
      positions.push_back(order[static_cast<size_t>(i)]);
      group.rows.push_back(batch.rows[static_cast<size_t>(order[static_cast<size_t>(i)])]);
    }
    const at::Tensor h = mmesid_last_hidden(llm, head, group, run);
    if (!out.defined()) out = at::empty({b, h.size(1)}, h.options());
    const at::Tensor where =
        at::from_blob(positions.data(), {count}, at::TensorOptions().dtype(at::kLong)).to(h.device());
    out.index_copy_(0, where, h);
  }
  return out;
}

}  // namespace mmesid::models
