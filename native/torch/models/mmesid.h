// The MME-SID recommender head around the Llama (models/llama.h), as the authors' code computes it
// (docs: ../shared/docs/ARCHITECTURE.md, "The official MME-SID head"). H = the LLM's hidden size,
// N = items + 1 (row 0 is padding), M = the modalities used (any subset of collab, text, visual).
//
// Behavioural item input of item i (variant "mme-sid"):
//   x[i] = GELU(MLP([P_m·SG(T_m[i]), Σ_l E_m,l[sid_m[i, l]]  for m in modalities]))        [H]
//   MLP = Linear(2M·H → M·H) → ReLU → Linear(M·H → H); P_m = Linear(d_m → H) with bias; T_m the frozen
//   original embedding table [N, d_m]; E_m,l the trainable code tables [K, H], initialised from the
//   tokenizer's codebooks (or randomly: the forgetting ablation).
// The prompt's prefix and suffix token embeddings surround the history's item inputs (left-padded with
// item 0, masked); h = the LLM's last hidden state at the final position [B, H].
// Frequency-aware fusion: f[n] = minmax(log(1 + train frequency of n)); w[n] = softmax(MLP₂(MLP₁(f[n])) / τ)
// (MLP₁ = Linear(1→64) → GELU → Linear(64→10), MLP₂ = Linear(10→64, no bias) → GELU → Linear(64→1+M));
//   score[b, n] = w₀[n]·(S·h_b)[n] + Σ_m w_m[n]·h_b·(P_m·T_m[n])
// with S = Linear(H → N, no bias) the new target-item table. Because every term is linear in h,
// score = h·Uᵀ with the item vectors U[n] = w₀[n]·S[n] + Σ_m w_m[n]·P_m·T_m[n] [N, H]: the loss is the
// cross-entropy over all items computed in chunks of items (logits of one chunk [B, chunk] at a time,
// recomputed in the backward), so memory does not grow with N beyond the item tables themselves. With fewer
// rows B than H the loss never forms U: it scores a chunk as w₀·(h·Sᵀ) + Σ_m w_m·((h·P_m)·T_mᵀ + h·b_m),
// B·d_m instead of d_m·H multiply-adds per item and modality (Llama-3-8B, B 16: 256× fewer). The fusion MLP
// runs once per distinct frequency value, not per item.
//
// Variants (the baselines and ablations of the paper, one harness):
//   "mme-sid"     as above;                "mme-random": code tables randomly initialised;
//   "e4srec"      x[i] = P_c·SG(C[i]) (collaborative only, a linear projection), score = S·h;
//   "concat"      x[i] = Linear(M·H → H)([P_m·SG(T_m[i])]);   "concat-mlp": the MLP of mme-sid instead;
//   fusion off    score = S·h (the target-item table alone).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "torch/train/recompute.h"

namespace mmesid::models {

class Llama;
struct LlamaRunOptions;

/// One modality's frozen inputs.
struct MmesidModality {
  std::string name;  ///< "collab", "text" or "visual"
  at::Tensor table;  ///< [N, d] float32, row 0 = padding
  at::Tensor
      sids;  ///< [N, L] int64 codes in [0, K), row 0 = −1 (padding); undefined for variants without SIDs
  at::Tensor codebooks;  ///< [L, K, H] float32 (the tokenizer's), or undefined: random code tables
  int64_t codes = 0;     ///< K when codebooks is undefined (0: the largest SID + 1)
};

struct MmesidHeadConfig {
  std::string variant = "mme-sid";  ///< mme-sid | mme-random | e4srec | concat | concat-mlp
  bool fusion = true;               ///< false: score = S·h
  double temperature = 1e-3;        ///< fusion softmax temperature
  int64_t hidden = 0;               ///< H, the LLM's hidden size
  int64_t score_chunk = 8192;       ///< items per chunk of the chunked cross-entropy
};

/// The trainable head (every tensor here requires grad except the frozen tables).
class MmesidHead {
 public:
  /// @param frequency [N] int64/float train frequency of each item (row 0 ignored).
  /// Parameters are initialised from `seed` (PyTorch's nn.Linear default init: U(±1/√fan_in)).
  /// @throws std::invalid_argument for an unknown variant, no modality, inconsistent tables, codebooks whose
  ///         dim ≠ hidden, or a variant that needs a modality it does not have (e4srec: collab).
  MmesidHead(MmesidHeadConfig config, std::vector<MmesidModality> modalities, const at::Tensor& frequency,
             uint64_t seed);

  const MmesidHeadConfig& config() const { return config_; }
  int64_t num_items() const { return num_items_; }
  const std::vector<MmesidModality>& modalities() const { return modalities_; }

  /// The behavioural item inputs x[ids] [..., H] of item ids [...] (int64 in [0, N)).
  at::Tensor item_inputs(const at::Tensor& ids) const;

  /// The item vectors U[first, first + count) [count, H] (score = h·Uᵀ).
  at::Tensor item_vectors(int64_t first, int64_t count) const;
  /// The item vectors of `ids` [n] (int64) → [n, H].
  at::Tensor item_vectors_of(const at::Tensor& ids) const;

  /// Mean cross-entropy of h [B, H] against `targets` [B] (int64 in [1, N)) over items 1 … N−1 (the
  /// padding row never competes), in chunks of score_chunk items recomputed in the backward.
  /// `chunk` > 0 overrides score_chunk (tests). `reference`: the plain computation instead — the fusion MLP
  /// per item and the item vectors U of every chunk materialised (the parity oracle and the benchmarks'
  /// eager baseline); equal up to float rounding.
  at::Tensor loss(const at::Tensor& h, const at::Tensor& targets, int64_t chunk = 0,
                  bool reference = false) const;

  /// The target-item table S [N, H] (a parameter).
  const at::Tensor& target_table() const { return target_table_; }

  /// Fusion weights [N, 1 + M] (rows of the softmax), for reports; undefined without fusion.
  at::Tensor fusion_weights() const;

  /// Every trainable tensor by a stable name ("head.<...>"), in a fixed order.
  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return params_; }
  /// Overwrites the trainable tensors (names as parameters()). @throws std::invalid_argument listing
  /// missing, unexpected or mis-shaped names.
  void assign(const std::vector<std::pair<std::string, at::Tensor>>& named);

  /// The code tables of modality m as one [L, K, H] tensor (for reports and Kendall τ).
  at::Tensor code_tables(size_t modality) const;

 private:
  at::Tensor add(const std::string& name, at::Tensor t);
  /// The 7 fusion MLP tensors (MLP₁: weight, bias, weight, bias; MLP₂: weight, weight, bias).
  std::vector<at::Tensor> fusion_parameters() const;
  /// P_0, b_0, P_1, b_1, … (the modality projections).
  std::vector<at::Tensor> projection_parameters() const;
  /// Each modality's table rows [first, first + count) (frozen).
  std::vector<at::Tensor> table_rows(int64_t first, int64_t count) const;
  /// The fusion weights of each distinct frequency feature [levels, 1 + M] (with autograd).
  at::Tensor level_weights() const;
  /// Rows 1 … N−1 of S as views in chunks of `step` rows, all from ONE split: their gradients meet in one
  /// backward node that concatenates them, where a narrow per chunk would add an [N, H] gradient per chunk.
  std::vector<at::Tensor> target_rows_in_chunks(int64_t step) const;
  /// log Σ_{n ≥ 1} of a chunk's scores [B]: for each chunk of items [first, first + count), chunk(first,
  /// count) run on `inputs` with inputs[1] replaced by that chunk's rows of S, recomputed in the backward.
  at::Tensor chunked_logsumexp(
      std::vector<at::Tensor> inputs, int64_t step,
      const std::function<train::RecomputedFn(int64_t first, int64_t count)>& chunk) const;
  /// log Σ_{n ≥ 1} exp(h·U[n]) [B] the plain way (loss(..., reference = true)).
  at::Tensor reference_lse(const at::Tensor& h, int64_t step) const;
  /// U for the rows `rows(·)` selects (a narrow or an index_select) of every per-item tensor; `levels`:
  /// level_weights() when the caller has them already (undefined: computed here).
  at::Tensor vectors_of_rows(const std::function<at::Tensor(const at::Tensor&)>& rows,
                             const at::Tensor& levels) const;

  MmesidHeadConfig config_;
  std::vector<MmesidModality> modalities_;
  int64_t num_items_ = 0;
  at::Tensor frequency_levels_;   // [levels, 1] the distinct values of minmax(log1p(freq)), ascending
  at::Tensor frequency_index_;    // [N] int64: item → its row of frequency_levels_
  at::Tensor frequency_feature_;  // [N, 1] each item's minmax(log1p(freq)) (the reference loss)
  struct Linear {
    at::Tensor weight, bias;
  };
  std::vector<Linear> projections_;               // per modality: d_m → H
  std::vector<std::vector<at::Tensor>> codes_;    // per modality, per level: [K, H]
  Linear input1_, input2_;                        // the input MLP (or the concat linear in input1_)
  Linear fusion1_, fusion2_, fusion3_, fusion4_;  // MLP₁ (1→64→10), MLP₂ (10→64 no bias, 64→1+M)
  at::Tensor target_table_;                       // S [N, H]
  std::vector<std::pair<std::string, at::Tensor>> params_;
};

/// Histories as CSR: history b = items[offsets[b], offsets[b + 1]) (oldest first, already truncated to
/// what the model reads), and the prompt's prefix and suffix token ids around them.
struct MmesidPromptBatch {
  const int64_t* offsets = nullptr;
  const int32_t* items = nullptr;
  std::vector<int64_t> rows;  ///< which histories form the batch
  const std::vector<int64_t>* prefix = nullptr;
  const std::vector<int64_t>* suffix = nullptr;
};

/// h [B, H] float32 on the head's device (the CPU; the Llama may run elsewhere): the Llama's last hidden
/// state at the final position of [padding, embed(prefix), x[history], embed(suffix)], each row left-padded
/// (with item 0's input, masked out of attention) to the batch's longest history. Positions are HF's default
/// 0..T−1; with the padding at the very left the real tokens' relative positions — all RoPE sees — are those
/// of the unpadded row, so a user's scores do not depend on the rest of the batch (up to float rounding).
at::Tensor mmesid_last_hidden(const Llama& llm, const MmesidHead& head, const MmesidPromptBatch& batch,
                              const LlamaRunOptions& run);

/// mmesid_last_hidden for inference (no grad) on histories of mixed lengths: the rows sorted by length
/// (stable) and run in groups of at most `group_rows`, each padded only to its own longest history, then
/// put back in the batch's order. Same values up to float rounding, less padding: Beauty's histories
/// average 7 items against a longest of 50. @throws std::invalid_argument for group_rows < 1.
at::Tensor mmesid_last_hidden_by_length(const Llama& llm, const MmesidHead& head,
                                        const MmesidPromptBatch& batch, const LlamaRunOptions& run,
                                        int64_t group_rows);

}  // namespace mmesid::models
