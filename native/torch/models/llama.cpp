#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "llama.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>

#include "common/errors.h"
#include "torch/train/recompute.h"

namespace mmesid::models {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("llama: " + message);
}

std::string shape_text(at::IntArrayRef shape) {
  return mmesid::shape_text(shape.vec());
}

at::Tensor project(const Projection& p, const at::Tensor& x, const LlamaRunOptions& run) {
  return run.fused_lora ? models::project(p, x, run.training) : project_unfused(p, x, run.training);
}

std::string layer_name(int64_t i, const std::string& rest) {
  return "model.layers." + std::to_string(i) + "." + rest;
}

const char* module_path(const std::string& module) {
  if (module == "q_proj" || module == "k_proj" || module == "v_proj" || module == "o_proj")
    return "self_attn.";
  return "mlp.";
}

/// Restores autocast state on scope exit.
class AutocastScope {
 public:
  AutocastScope(const c10::Device& device, at::ScalarType dtype) {
    if (!device.is_cuda() || dtype == at::kFloat) return;
    active_ = true;
    was_enabled_ = at::autocast::is_enabled();
    was_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  }
  ~AutocastScope() {
    if (!active_) return;
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false, was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace

std::vector<TensorSpec> llama_tensor_table(const LlamaConfig& c) {
  require(c.hidden_size >= 1 && c.intermediate_size >= 1 && c.num_hidden_layers >= 1 && c.vocab_size >= 1,
          "hidden_size, intermediate_size, num_hidden_layers and vocab_size must be >= 1");
  require(c.num_attention_heads >= 1 && c.num_key_value_heads >= 1 && c.head_dim >= 2 && c.head_dim % 2 == 0,
          "heads and kv heads must be >= 1 and head_dim even");
  require(c.num_attention_heads % c.num_key_value_heads == 0,
          "num_attention_heads (" + std::to_string(c.num_attention_heads) +
              ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim;
  const int64_t f = c.intermediate_size;
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    t.push_back({layer_name(i, "input_layernorm.weight"), {h}});
    t.push_back({layer_name(i, "self_attn.q_proj.weight"), {q, h}});
    t.push_back({layer_name(i, "self_attn.k_proj.weight"), {kv, h}});
    t.push_back({layer_name(i, "self_attn.v_proj.weight"), {kv, h}});
    t.push_back({layer_name(i, "self_attn.o_proj.weight"), {h, q}});
    if (c.attention_bias) {
      t.push_back({layer_name(i, "self_attn.q_proj.bias"), {q}});
      t.push_back({layer_name(i, "self_attn.k_proj.bias"), {kv}});
      t.push_back({layer_name(i, "self_attn.v_proj.bias"), {kv}});
      t.push_back({layer_name(i, "self_attn.o_proj.bias"), {h}});
    }
    t.push_back({layer_name(i, "post_attention_layernorm.weight"), {h}});
    t.push_back({layer_name(i, "mlp.gate_proj.weight"), {f, h}});
    t.push_back({layer_name(i, "mlp.up_proj.weight"), {f, h}});
    t.push_back({layer_name(i, "mlp.down_proj.weight"), {h, f}});
    if (c.mlp_bias) {
      t.push_back({layer_name(i, "mlp.gate_proj.bias"), {f}});
      t.push_back({layer_name(i, "mlp.up_proj.bias"), {f}});
      t.push_back({layer_name(i, "mlp.down_proj.bias"), {h}});
    }
  }
  t.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {c.vocab_size, h}});
  return t;
}

std::map<std::string, at::Tensor> random_llama_weights(const LlamaConfig& config, uint64_t seed) {
  const at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> weights;
  for (const TensorSpec& spec : llama_tensor_table(config)) {
    const bool gain = spec.name.find("norm") != std::string::npos;
    const bool bias = spec.name.size() > 5 && spec.name.compare(spec.name.size() - 5, 5, ".bias") == 0;
    at::Tensor t = at::empty(spec.shape, at::TensorOptions().dtype(at::kFloat));
    if (gain) {
      t.fill_(1.0);
    } else if (bias) {
      t.zero_();
    } else {
      t.normal_(0.0, 0.02, generator);
    }
    weights.emplace(spec.name, t);
  }
  return weights;
}

at::Tensor rope_inverse_frequencies(const LlamaConfig& c) {
  const int64_t half = c.head_dim / 2;
  // As HF: arange(0, dim, 2).float() / dim in float32, base ** that, then the reciprocal.
  const at::Tensor exponent =
      at::arange(0, c.head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
      static_cast<double>(c.head_dim);
  at::Tensor inv_freq =
      at::full({half}, c.rope_theta, at::TensorOptions().dtype(at::kFloat)).pow(exponent).reciprocal();
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "none" || s.type == "default") return inv_freq;
  require(std::isfinite(s.factor) && s.factor > 0.0, "rope_scaling.factor must be positive");
  if (s.type == "linear") return inv_freq / s.factor;
  require(s.type == "llama3", "unsupported rope_scaling type \"" + s.type + "\" (supported: llama3, linear)");
  require(s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0.0,
          "rope_scaling needs high_freq_factor > low_freq_factor > 0");
  require(s.original_max_position_embeddings >= 1,
          "rope_scaling.original_max_position_embeddings must be >= 1");
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_context / s.low_freq_factor;
  const double high_wavelen = old_context / s.high_freq_factor;
  const at::Tensor wavelen = inv_freq.reciprocal() * (2.0 * M_PI);
  at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
  const at::Tensor smooth =
      (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed = (1.0 - smooth) * scaled / s.factor + smooth * scaled;
  const at::Tensor medium = wavelen.ge(high_wavelen).logical_and(wavelen.le(low_wavelen));
  return at::where(medium, smoothed, scaled);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean({-1}, true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq) {
  // freqs [B, T, hd/2] → emb = cat(freqs, freqs) [B, 1, T, hd]
  const at::Tensor freqs =
      positions.to(at::kFloat).unsqueeze(-1) * inv_freq.to(positions.device()).view({1, 1, -1});
  const at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
  const at::Tensor cos = emb.cos().to(x.scalar_type());
  const at::Tensor sin = emb.sin().to(x.scalar_type());
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

Llama::Llama(LlamaConfig config, std::map<std::string, at::Tensor> weights) : config_(std::move(config)) {
  const std::vector<TensorSpec> table = llama_tensor_table(config_);
  std::vector<std::string> missing, misshaped;
  std::set<std::string> expected;
  for (const TensorSpec& spec : table) {
    expected.insert(spec.name);
    const auto it = weights.find(spec.name);
    if (it == weights.end()) {
      missing.push_back(spec.name);
    } else if (it->second.sizes() != at::IntArrayRef(spec.shape)) {
      misshaped.push_back(spec.name + " " + shape_text(it->second.sizes()) + " (expected " +
                          shape_text(spec.shape) + ")");
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, _] : weights)
    if (!expected.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !misshaped.empty() || !unexpected.empty()) {
    require(false,
            "the weights do not match the config:" +
                name_lists({{"missing", missing}, {"unexpected", unexpected}, {"mis-shaped", misshaped}}));
  }
  const at::Tensor& first = weights.at("model.embed_tokens.weight");
  require(at::isFloatingType(first.scalar_type()), "weights must be floating point");
  for (const auto& [name, tensor] : weights) {
    require(tensor.device() == first.device() && tensor.scalar_type() == first.scalar_type(),
            "every weight must share one device and dtype (" + name + " differs)");
  }
  auto take = [&weights](const std::string& name) {
    at::Tensor t = weights.at(name).detach();
    t.requires_grad_(false);
    return t;
  };
  auto projection = [&](int64_t i, const std::string& path, bool bias) {
    Projection p;
    p.weight = take(layer_name(i, path + ".weight"));
    if (bias) p.bias = take(layer_name(i, path + ".bias"));
    return p;
  };
  embed_tokens_ = take("model.embed_tokens.weight");
  final_norm_ = take("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_tokens_ : take("lm_head.weight");
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    Layer layer;
    layer.input_norm = take(layer_name(i, "input_layernorm.weight"));
    layer.post_norm = take(layer_name(i, "post_attention_layernorm.weight"));
    layer.q = projection(i, "self_attn.q_proj", config_.attention_bias);
    layer.k = projection(i, "self_attn.k_proj", config_.attention_bias);
    layer.v = projection(i, "self_attn.v_proj", config_.attention_bias);
    layer.o = projection(i, "self_attn.o_proj", config_.attention_bias);
    layer.gate = projection(i, "mlp.gate_proj", config_.mlp_bias);
    layer.up = projection(i, "mlp.up_proj", config_.mlp_bias);
    layer.down = projection(i, "mlp.down_proj", config_.mlp_bias);
    layers_.push_back(std::move(layer));
  }
  inv_freq_ = rope_inverse_frequencies(config_).to(first.device());
}

at::Tensor Llama::embed(const at::Tensor& ids) const {
  require(ids.dim() == 2 && ids.scalar_type() == at::kLong, "ids must be an int64 [B, T] tensor");
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    require(lo >= 0 && hi < config_.vocab_size, "token ids must lie in [0, " +
                                                    std::to_string(config_.vocab_size) + "), got " +
                                                    std::to_string(lo < 0 ? lo : hi));
  }
  return at::embedding(embed_tokens_, ids.to(embed_tokens_.device()));
}

at::Tensor Llama::layer_forward(const Layer& layer, const at::Tensor& h, const at::Tensor& positions,
                                const at::Tensor& additive_mask, at::Tensor* cache_k, at::Tensor* cache_v,
                                const LlamaRunOptions& run) const {
  const int64_t b = h.size(0), t = h.size(1), hd = config_.head_dim;
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t group = heads / kv_heads;

  const at::Tensor n = rms_norm(h, layer.input_norm, config_.rms_norm_eps);
  at::Tensor q = project(layer.q, n, run).view({b, t, heads, hd}).transpose(1, 2);
  at::Tensor k = project(layer.k, n, run).view({b, t, kv_heads, hd}).transpose(1, 2);
  at::Tensor v = project(layer.v, n, run).view({b, t, kv_heads, hd}).transpose(1, 2);
  q = apply_rope(q, positions, inv_freq_);
  k = apply_rope(k, positions, inv_freq_);
  if (cache_k) {
    if (cache_k->defined()) {
      k = at::cat({*cache_k, k}, 2);
      v = at::cat({*cache_v, v}, 2);
    }
    *cache_k = k;
    *cache_v = v;
  }
  // [B, kv, group, T, hd] × [B, kv, 1, hd, S] → [B, kv, group, T, S]
  const at::Tensor qg = q.reshape({b, kv_heads, group, t, hd});
  at::Tensor scores = at::matmul(qg, k.unsqueeze(2).transpose(-1, -2)) / std::sqrt(static_cast<double>(hd));
  scores = scores + additive_mask.to(scores.scalar_type());
  const at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(v.scalar_type());
  const at::Tensor attended = at::matmul(probs, v.unsqueeze(2))  // [B, kv, group, T, hd]
                                  .reshape({b, heads, t, hd})
                                  .transpose(1, 2)
                                  .reshape({b, t, heads * hd});
  const at::Tensor a = h + project(layer.o, attended, run);
  const at::Tensor m = rms_norm(a, layer.post_norm, config_.rms_norm_eps);
  const at::Tensor swiglu = at::silu(project(layer.gate, m, run)) * project(layer.up, m, run);
  return a + project(layer.down, swiglu, run);
}

at::Tensor Llama::forward(const at::Tensor& inputs_embeds, const at::Tensor& attention_mask,
                          const at::Tensor& position_ids, KvCache* cache, const LlamaRunOptions& run) const {
  require(inputs_embeds.dim() == 3 && inputs_embeds.size(2) == config_.hidden_size,
          "inputs_embeds must be [B, T, " + std::to_string(config_.hidden_size) + "], got " +
              shape_text(inputs_embeds.sizes()));
  require(inputs_embeds.device() == device(), "inputs_embeds must be on the model's device");
  const int64_t b = inputs_embeds.size(0), t = inputs_embeds.size(1);
  require(t >= 1, "inputs_embeds must hold at least one position");
  const int64_t past = cache ? cache->length() : 0;
  const int64_t total = past + t;
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device());

  at::Tensor positions = position_ids;
  if (positions.defined()) {
    require(positions.dim() == 2 && positions.size(0) == b && positions.size(1) == t,
            "position_ids must be [B, T] = " + shape_text({b, t}) + ", got " + shape_text(positions.sizes()));
    positions = positions.to(long_opts);
  } else {
    positions = at::arange(past, total, long_opts).unsqueeze(0).expand({b, t});
  }

  // Additive mask [B, 1, 1, T, S]: key j is visible from query i iff j <= past + i and key j is a token.
  const at::Tensor query_pos = at::arange(past, total, long_opts).view({t, 1});
  const at::Tensor key_pos = at::arange(0, total, long_opts).view({1, total});
  at::Tensor visible = key_pos.le(query_pos).view({1, t, total});
  if (attention_mask.defined()) {
    require(attention_mask.dim() == 2 && attention_mask.size(0) == b && attention_mask.size(1) == total,
            "attention_mask must be [B, past + T] = " + shape_text({b, total}) + ", got " +
                shape_text(attention_mask.sizes()));
    visible = visible.logical_and(attention_mask.to(device()).ne(0).view({b, 1, total}));
  }
  const at::ScalarType compute = (device().is_cuda() && run.autocast != at::kFloat) ? run.autocast : dtype();
  const double lowest = compute == at::kBFloat16 ? -3.3895313892515355e38
                        : compute == at::kHalf   ? -65504.0
                        : compute == at::kDouble ? std::numeric_limits<double>::lowest()
                                                 : static_cast<double>(std::numeric_limits<float>::lowest());
  const at::Tensor additive =
      at::zeros(visible.sizes(), at::TensorOptions().dtype(at::kFloat).device(device()))
          .masked_fill(visible.logical_not(), lowest)
          .unsqueeze(1)
          .unsqueeze(1);  // [B, 1, 1, T, S]

  if (cache) {
    cache->keys.resize(static_cast<size_t>(config_.num_hidden_layers));
    cache->values.resize(static_cast<size_t>(config_.num_hidden_layers));
  }
  const AutocastScope autocast(device(), run.autocast);
  const bool checkpoint = run.gradient_checkpointing && !cache && at::GradMode::is_enabled();
  at::Tensor h = inputs_embeds;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (checkpoint) {
      // Gradient checkpointing: the layer's input and its adapters are the node's inputs; the adapters
      // are leaves, recomputed as themselves through the layer's projections.
      std::vector<at::Tensor> inputs = {h};
      for (const at::Tensor& t : adapters_of(layers_[i])) inputs.push_back(t);
      const Layer* layer = &layers_[i];
      h = train::recompute_in_backward(
          [this, layer, positions, additive, run](const std::vector<at::Tensor>& in) {
            const AutocastScope scope(in[0].device(), run.autocast);
            return layer_forward(*layer, in[0], positions, additive, nullptr, nullptr, run);
          },
          inputs);
    } else {
      h = layer_forward(layers_[i], h, positions, additive, cache ? &cache->keys[i] : nullptr,
                        cache ? &cache->values[i] : nullptr, run);
    }
  }
  return rms_norm(h, final_norm_, config_.rms_norm_eps);
}

at::Tensor Llama::logits(const at::Tensor& hidden) const {
  return at::linear(hidden.to(lm_head_.scalar_type()), lm_head_);
}

std::vector<at::Tensor> Llama::adapters_of(const Layer& layer) {
  std::vector<at::Tensor> out;
  for (const std::string& m : lora_module_names()) {
    const Projection* p = projection(layer, m);
    if (p->has_lora()) {
      out.push_back(p->lora_a);
      out.push_back(p->lora_b);
    }
  }
  return out;
}

Projection* Llama::projection(Layer& layer, const std::string& module) {
  if (module == "q_proj") return &layer.q;
  if (module == "k_proj") return &layer.k;
  if (module == "v_proj") return &layer.v;
  if (module == "o_proj") return &layer.o;
  if (module == "gate_proj") return &layer.gate;
  if (module == "up_proj") return &layer.up;
  if (module == "down_proj") return &layer.down;
  return nullptr;
}

void Llama::apply_lora(const LoraConfig& lora, uint64_t generator_seed) {
  require(!lora.target_modules.empty(), "LoRA needs at least one target module");
  std::set<std::string> seen;
  for (const std::string& m : lora.target_modules) {
    require(projection(layers_[0], m) != nullptr,
            "unknown LoRA target module \"" + m +
                "\" (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    require(seen.insert(m).second, "LoRA target module \"" + m + "\" is listed twice");
  }
  drop_lora();
  const at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(generator_seed);
  // Layer-major, then the table's module order: the order PEFT creates (and names) the adapters in.
  for (Layer& layer : layers_) {
    for (const std::string& m : lora_module_names()) {
      if (seen.count(m)) attach_lora(*projection(layer, m), lora, generator);
    }
  }
  lora_ = lora;
  lora_.target_modules.clear();
  for (const std::string& m : lora_module_names())
    if (seen.count(m)) lora_.target_modules.push_back(m);
}

std::vector<std::pair<std::string, at::Tensor>> Llama::lora_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (!has_lora()) return out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (const std::string& m : lora_.target_modules) {
      const Projection* p = projection(layers_[i], m);
      const std::string base = "base_model.model." + layer_name(static_cast<int64_t>(i), module_path(m) + m);
      out.emplace_back(base + ".lora_A.weight", p->lora_a);
      out.emplace_back(base + ".lora_B.weight", p->lora_b);
    }
  }
  return out;
}

void Llama::load_lora(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  require(has_lora(), "load_lora needs adapters applied first (apply_lora)");
  std::map<std::string, at::Tensor> given;
  std::vector<std::string> unexpected, duplicated, misshaped;
  for (const auto& [name, tensor] : named) {
    if (!given.emplace(name, tensor).second) duplicated.push_back(name);
  }
  std::vector<std::string> missing;
  const auto params = lora_parameters();
  std::set<std::string> known;
  for (const auto& [name, param] : params) {
    known.insert(name);
    const auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != param.sizes()) {
      misshaped.push_back(name + " " + shape_text(it->second.sizes()) + " (expected " +
                          shape_text(param.sizes()) + ")");
    }
  }
  for (const auto& [name, _] : given)
    if (!known.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty() || !duplicated.empty()) {
    require(false, "the adapter tensors do not match the LoRA configuration:" +
                       name_lists({{"missing", missing},
                                   {"unexpected", unexpected},
                                   {"mis-shaped", misshaped},
                                   {"duplicated", duplicated}}));
  }
  const at::NoGradGuard no_grad;
  for (const auto& [name, param] : params) param.copy_(given.at(name));
}

void Llama::merge_lora() {
  for (Layer& layer : layers_)
    for (const std::string& m : lora_module_names()) models::merge_lora(*projection(layer, m));
  lora_ = LoraConfig{};
}

void Llama::drop_lora() {
  for (Layer& layer : layers_) {
    for (const std::string& m : lora_module_names()) {
      Projection* p = projection(layer, m);
      p->lora_a = at::Tensor();
      p->lora_b = at::Tensor();
      p->scale = 0.0;
      p->dropout = 0.0;
    }
  }
  lora_ = LoraConfig{};
}

std::vector<std::pair<std::string, at::Tensor>> Llama::base_weights() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed_tokens_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const auto idx = static_cast<int64_t>(i);
    out.emplace_back(layer_name(idx, "input_layernorm.weight"), l.input_norm);
    const std::pair<const char*, const Projection*> projections[] = {{"self_attn.q_proj", &l.q},
                                                                     {"self_attn.k_proj", &l.k},
                                                                     {"self_attn.v_proj", &l.v},
                                                                     {"self_attn.o_proj", &l.o}};
    for (const auto& [path, p] : projections)
      out.emplace_back(layer_name(idx, std::string(path) + ".weight"), p->weight);
    for (const auto& [path, p] : projections)
      if (p->bias.defined()) out.emplace_back(layer_name(idx, std::string(path) + ".bias"), p->bias);
    out.emplace_back(layer_name(idx, "post_attention_layernorm.weight"), l.post_norm);
    const std::pair<const char*, const Projection*> mlp[] = {
        {"mlp.gate_proj", &l.gate}, {"mlp.up_proj", &l.up}, {"mlp.down_proj", &l.down}};
    for (const auto& [path, p] : mlp)
      out.emplace_back(layer_name(idx, std::string(path) + ".weight"), p->weight);
    for (const auto& [path, p] : mlp)
      if (p->bias.defined()) out.emplace_back(layer_name(idx, std::string(path) + ".bias"), p->bias);
  }
  out.emplace_back("model.norm.weight", final_norm_);
  if (!config_.tie_word_embeddings) out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

}  // namespace mmesid::models
