// Llama (Llama 2 / 3 / 3.1 as Hugging Face's LlamaForCausalLM computes it), composed of named blocks on
// plain ATen tensors. The LLM that MME-SID fine-tunes with LoRA; it is fed item embeddings through the
// inputs_embeds entry point and read through its last hidden states.
//
//   h₀ = inputs_embeds (or embed_tokens[ids])                                   [B, T, H]
//   per layer:  a = h + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))), n = rms_norm(h)
//               h = a + down_proj(silu(gate_proj(m)) ⊙ up_proj(m)),                    m = rms_norm(a)
//   out = rms_norm_final(h)                                                     [B, T, H]
//   logits = out · lm_headᵀ (lm_head = embed_tokens when tied)                  [B, T, vocab]
//
// Blocks (each a free function below): RMSNorm in float32 (x·rsqrt(mean(x²) + ε), then the gain, as HF);
// rotate-half RoPE with cos/sin computed in float32 from inverse frequencies (Llama 3.1 `llama3` and
// `linear` rope scaling supported); grouped-query attention (query head h reads key/value head
// h / (heads / kv_heads)) with softmax in float32 and an additive mask (causal, and padded keys never
// attended; masked scores get the dtype's lowest value as HF does, so an all-padding row stays finite);
// SwiGLU MLP. Every projection goes through project() (models/lora.h), the one place LoRA applies.
//
// Positions: the default position ids are past + 0..T−1 for every row (what HF's forward uses when none
// are given, even with left padding: the MME-SID collator relies on that); generation passes
// cumsum(mask) − 1 as HF's generate does.
//
// Device and dtype: every tensor lives on the model's device in its dtype (float32 on CPU). On CUDA with
// a CUDA build of libtorch, forward() may run under bf16/fp16 autocast (LlamaRunOptions::autocast);
// the matrix products then run in that dtype while norms and softmax stay float32.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "torch/models/lora.h"

namespace mmesid::models {

/// `rope_scaling` of config.json. type "none" (absent), "llama3" (Llama 3.1) or "linear".
struct RopeScaling {
  std::string type = "none";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

/// The architecture fields of a Hugging Face Llama config.json (validated by the TS layer).
struct LlamaConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  ///< divides num_attention_heads
  int64_t head_dim = 0;             ///< hidden_size / heads unless config.json says otherwise
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
};

/// One tensor of the checkpoint: its Hugging Face name (with the "model." prefix) and shape.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

/// The tensor-name table of a config: every tensor a checkpoint must provide, HF names and shapes, in a
/// fixed order (embed_tokens, per layer: input_layernorm, q/k/v/o_proj (+ biases), post_attention_layernorm,
/// gate/up/down_proj (+ biases), then norm, then lm_head unless tied).
/// @throws std::invalid_argument when the config is inconsistent (sizes < 1, heads % kv_heads != 0).
std::vector<TensorSpec> llama_tensor_table(const LlamaConfig& config);

/// Random weights for `config` (benchmarks and tests without a checkpoint): matrices and embeddings
/// N(0, 0.02²) (HF's initializer_range), norm gains 1, biases 0; float32 on CPU, from `seed`.
std::map<std::string, at::Tensor> random_llama_weights(const LlamaConfig& config, uint64_t seed);

/// RoPE inverse frequencies [head_dim / 2] float32 (CPU), after rope scaling, as HF computes them.
/// @throws std::invalid_argument for an unknown scaling type or bad factors.
at::Tensor rope_inverse_frequencies(const LlamaConfig& config);

/// RMSNorm: x·rsqrt(mean(x², −1) + eps) in float32, cast back to x's dtype, times `weight`.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// Rotate-half RoPE of x [B, heads, T, hd] at `positions` [B, T] int64 with inverse frequencies
/// `inv_freq` [hd / 2] float32 (cos/sin in float32, then x's dtype).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq);

/// The per-layer key/value cache of incremental decoding: keys/values [B, kv_heads, S, hd] per layer.
struct KvCache {
  std::vector<at::Tensor> keys, values;
  int64_t length() const { return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2); }
};

/// Run-time switches of a forward pass.
struct LlamaRunOptions {
  bool training = false;  ///< enables LoRA dropout
  /// CUDA only: run under autocast in this dtype (kBFloat16 / kHalf); undefined-like kFloat = off.
  at::ScalarType autocast = at::kFloat;
  /// Gradient checkpointing: keep only each layer's input; the backward re-runs the layer (replaying
  /// ATen's dropout generator so the masks match) and back-propagates through the recomputation.
  /// Memory: one layer's activations instead of all of them; cost: one more forward per layer.
  /// Ignored without grad mode or with a cache.
  bool gradient_checkpointing = false;
  /// false: every adapter runs as plain ATen ops (project_unfused) — the benchmarks' eager baseline.
  bool fused_lora = true;
};

/// A Llama whose weights are plain tensors (frozen: requires_grad false); LoRA adapters, when applied,
/// are the only trainable parameters.
class Llama {
 public:
  /// Takes the weights by HF name (with the "model." prefix; "lm_head.weight" absent when tied), as
  /// listed by llama_tensor_table(config), all already on one device in one floating dtype.
  /// @throws std::invalid_argument listing every missing, unexpected or mis-shaped tensor.
  Llama(LlamaConfig config, std::map<std::string, at::Tensor> weights);

  const LlamaConfig& config() const { return config_; }
  c10::Device device() const { return embed_tokens_.device(); }
  at::ScalarType dtype() const { return embed_tokens_.scalar_type(); }

  /// Token embeddings of `ids` [B, T] int64 → [B, T, H]. @throws std::invalid_argument for ids outside
  /// [0, vocab).
  at::Tensor embed(const at::Tensor& ids) const;

  /// Last hidden states (after the final norm) [B, T, H] of `inputs_embeds` [B, T, H].
  /// @param attention_mask [B, S_past + T] (1 = token, 0 = padding; int64/bool/float) or undefined (all
  ///        tokens). With a cache it covers the cached positions too.
  /// @param position_ids   [B, T] int64 or undefined (S_past + 0..T−1).
  /// @param cache          nullptr, or a cache extended in place with this call's keys and values.
  /// @throws std::invalid_argument on shape, dtype or device mismatches.
  at::Tensor forward(const at::Tensor& inputs_embeds, const at::Tensor& attention_mask,
                     const at::Tensor& position_ids, KvCache* cache, const LlamaRunOptions& run) const;

  /// Logits [..., vocab] of hidden states [..., H] (the LM head; the token embedding when tied).
  at::Tensor logits(const at::Tensor& hidden) const;

  /// Adds LoRA adapters to the configured target modules of every layer (models/lora.h for the
  /// initialisation), replacing any present. Draws A from `generator_seed` (deterministic).
  /// @throws std::invalid_argument for an unknown target module or a bad rank/alpha/dropout.
  void apply_lora(const LoraConfig& lora, uint64_t generator_seed);
  /// Whether adapters are present, and their configuration.
  bool has_lora() const { return lora_.rank > 0; }
  const LoraConfig& lora_config() const { return lora_; }
  /// The adapters' tensors under PEFT's names
  /// ("base_model.model.model.layers.{i}.mlp.gate_proj.lora_A.weight"), in layer and module order; each
  /// requires grad.
  std::vector<std::pair<std::string, at::Tensor>> lora_parameters() const;
  /// Replaces the adapters' values (names as lora_parameters()); every name must be given exactly once.
  /// @throws std::invalid_argument listing missing, unexpected or mis-shaped tensors.
  void load_lora(const std::vector<std::pair<std::string, at::Tensor>>& named);
  /// Folds every adapter into its base weight (W += scale·B·A) and removes the adapters.
  void merge_lora();
  /// Removes the adapters without merging.
  void drop_lora();

  /// The base weights by HF name (the table's order; the tied LM head is not repeated).
  std::vector<std::pair<std::string, at::Tensor>> base_weights() const;

 private:
  struct Layer {
    at::Tensor input_norm, post_norm;
    Projection q, k, v, o, gate, up, down;
  };
  static Projection* projection(Layer& layer, const std::string& module);
  /// The layer's adapter tensors (A, B per adapted module, in module order).
  static std::vector<at::Tensor> adapters_of(const Layer& layer);
  static const Projection* projection(const Layer& layer, const std::string& module) {
    return projection(const_cast<Layer&>(layer), module);
  }
  at::Tensor layer_forward(const Layer& layer, const at::Tensor& h, const at::Tensor& positions,
                           const at::Tensor& additive_mask, at::Tensor* cache_k, at::Tensor* cache_v,
                           const LlamaRunOptions& run) const;

  LlamaConfig config_;
  at::Tensor embed_tokens_, final_norm_, lm_head_, inv_freq_;
  std::vector<Layer> layers_;
  LoraConfig lora_;
};

}  // namespace mmesid::models
