// SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018), the collaborative
// encoder of MME-SID, written on plain ATen tensors (no torch::nn) so that this header and its TU stay
// light. The block layout follows the reference PyTorch implementation (pmixer/SASRec.pytorch), which
// the MME-SID authors use to produce their item embeddings:
//
//   h  = E[x]·√d + P[0..L) ; dropout ; h *= (x != 0)                         (timeline mask)
//   per block b:  q = LN₁(h) ; h = q + MHA(q, h, h, causal) ; h = LN₂(h) ;
//                 h = h + dropout(W₂·dropout(relu(W₁·h + b₁)) + b₂) ; h *= (x != 0)
//   out = LN_final(h)                                                        [B, L, d]
//   score(item i | position t) = out[t] · E[i]                               (tied weights)
//
// Shapes: x int64 [B, L] left-padded with item 0 (L = max_len); E float32 [num_items + 1, d], row 0 the
// padding row (never receives a gradient: at::embedding with padding_idx 0); P float32 [max_len, d].
// MHA: heads h, head dim d / h, dropout on the attention weights; padded keys are not masked (as in the
// reference: the causal mask alone keeps every row finite and padded outputs are zeroed afterwards).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mmesid::models {

/// Hyper-parameters of SASRec. Defaults: the MME-SID / SASRec settings for Amazon Beauty.
struct SasrecConfig {
  int64_t num_items = 0;  ///< largest item id; the embedding has num_items + 1 rows
  int64_t dim = 64;       ///< d, divisible by heads
  int64_t blocks = 2;     ///< transformer blocks
  int64_t heads = 1;      ///< attention heads
  int64_t max_len = 50;   ///< L, positions
  double dropout = 0.2;   ///< dropout rate of embeddings, attention weights and FFN
};

/// The parameters of one SASRec, float32 on CPU, each requiring grad.
class Sasrec {
 public:
  /// Allocates and initialises every parameter from ATen's default generator (seed it first with
  /// at::manual_seed for reproducible weights): Xavier-normal for matrices and embeddings (as the
  /// reference does), zeros for biases, ones for LayerNorm gains, and a zero padding row.
  /// @throws c10::Error when the config is inconsistent (dim % heads != 0, a size < 1, dropout ∉ [0, 1)).
  explicit Sasrec(const SasrecConfig& config);

  const SasrecConfig& config() const { return config_; }

  /// Every parameter with a stable name (used by checkpoints and the optimizer), in a fixed order.
  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return params_; }

  /// Overwrites every parameter's values (e.g. with trained weights read from a file). `named` must hold
  /// each name of parameters() exactly once, in any order, as a float32 tensor of the same shape.
  /// @throws std::invalid_argument naming the first missing, unknown, duplicated or mis-shaped tensor.
  void assign(const std::vector<std::pair<std::string, at::Tensor>>& named);

  /// Item embedding E, float32 [num_items + 1, d].
  const at::Tensor& item_embedding() const { return item_emb_; }

  /// Hidden states of every position. @param x int64 [B, L] (L = max_len). @param train enables dropout.
  /// @return float32 [B, L, d].
  at::Tensor forward(const at::Tensor& x, bool train) const;

  /// Scores of every item (column 0 = padding, set to −inf) from the last position's hidden state.
  /// @param x int64 [B, L]. @return float32 [B, num_items + 1]. Runs without dropout.
  at::Tensor score_last(const at::Tensor& x) const;

 private:
  struct Block {
    at::Tensor ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b, ff1_w, ff1_b, ff2_w, ff2_b;
  };
  at::Tensor attention(const at::Tensor& q, const at::Tensor& kv, const Block& b, bool train) const;
  at::Tensor add(const std::string& name, at::Tensor t);

  SasrecConfig config_;
  at::Tensor item_emb_, pos_emb_, last_ln_w_, last_ln_b_, causal_;
  std::vector<Block> blocks_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
};

}  // namespace mmesid::models
