// MM-RQ-VAE, the multimodal residual-quantization tokenizer of MME-SID (issue 4). It follows LC-Rec's RQ-VAE
// (rq.py / vq.py / layers.py) extended to up to three modalities — collab, text, visual, always in that order
// — with MMD reconstruction and InfoNCE (or MMD) alignment of the quantized vectors. Plain ATen tensors, no
// torch::nn, so this header stays light.
//
// Per modality m (dims = [input_dim, ...hidden, code_dim]):
//   z      = encoder(x)          Linear(dims[i] → dims[i+1]), ReLU after every layer but the last
//   r_0    = z ; code_l = argmin_k ‖r_l − C_l[k]‖² (ties → lower k; Sinkhorn on chosen levels while
//            training) ; q_l = C_l[code_l] ; r_{l+1} = r_l − q_l ; z_q = Σ_l q_l
//   z_q_ste = z + (z_q − z).detach()                                       (straight-through)
//   x̂      = decoder(z_q_ste)    mirrored layers [code_dim, ...reverse(hidden), input_dim]
//   rq_m   = mean_l [ mse(q_l, r_l.detach()) + β·mse(q_l.detach(), r_l) ]   (codebook + β·commitment)
//   recon_m = MMD(x̂, x) (one Gaussian kernel, α = 0.5, bandwidth relative to the batch) or mse(x̂, x)
// align = Σ over the present pairs (collab, text), (collab, visual) of InfoNCE(z_q_ste[collab],
//         z_q_ste[other]) (collab → other, as the info_nce package the authors use, or symmetric;
//         temperature τ) or MMD between them, or nothing.
// total = recon_weight·Σ_m recon_m + align_weight·align + Σ_m rq_m.
//
// Residual gradient, two behaviours (`residual_gradient`): "exact" (default) keeps r_{l+1} = r_l − q_l in the
// graph, so the RQ loss's gradient is the true derivative of the formula above for frozen codes (checked by
// finite differences in test/tokenizer/native.test.ts). "lc-rec" is what LC-Rec and the MME-SID code do:
// they subtract the straight-through x_res = r_l + (q_l − r_l).detach() from the residual, which makes
// r_l (l >= 1) a constant of the graph — the commitment term reaches the encoder only at level 0 and each
// codebook is moved by its own codebook term alone. The forward values are identical; only β-weighted
// gradients (β = 0.01 officially) differ.
//
// Parameter names (also the safetensors names): "<m>.encoder.<i>.weight" [dims[i+1], dims[i]],
// "<m>.encoder.<i>.bias" [dims[i+1]], "<m>.decoder.<i>.weight", "<m>.decoder.<i>.bias",
// "<m>.codebooks" [L, K, e]. All float32 on CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mmesid::models {

/// One modality of the tokenizer.
struct MmRqvaeModality {
  std::string name;             ///< "collab" | "text" | "visual"
  int64_t input_dim = 0;        ///< columns of the modality's item table
  std::vector<int64_t> hidden;  ///< encoder hidden sizes (the decoder mirrors them); may be empty
};

/// Architecture of an MM-RQ-VAE.
struct MmRqvaeConfig {
  std::vector<MmRqvaeModality> modalities;  ///< 1–3 of collab, text, visual, in that order
  int64_t levels = 4;                       ///< L
  int64_t codes = 256;                      ///< K, codewords per level
  int64_t code_dim = 64;                    ///< e
};

/// The training objective's settings (defaults: the official script's, InfoNCE as in the paper).
struct MmRqvaeLossConfig {
  std::string recon = "mmd";      ///< "mmd" | "mse"
  std::string align = "infonce";  ///< "infonce" | "mmd" | "none"
  double recon_weight = 3.0;
  double align_weight = 0.01;
  double beta = 0.01;              ///< commitment weight (tied to align_weight in the authors' script)
  double temperature = 0.1;        ///< InfoNCE τ (the info_nce package's default, used by the authors)
  bool infonce_symmetric = false;  ///< average collab → other and other → collab
  double mmd_alpha = 0.5;          ///< the one Gaussian kernel's α (σ² = α · mean pairwise sq. distance)
  std::vector<int64_t> sinkhorn_levels;  ///< levels assigned by Sinkhorn while training (official: {L−1})
  double sinkhorn_epsilon = 0.003;
  int64_t sinkhorn_iterations = 50;
  std::string residual_gradient = "exact";  ///< "exact" | "lc-rec" (see the file comment)
};

/// The loss of one batch: `total` carries the autograd graph; the parts are plain numbers
/// (recon, rq summed over modalities unweighted; align summed over pairs unweighted).
struct MmRqvaeLosses {
  at::Tensor total;
  double recon = 0.0, align = 0.0, rq = 0.0;
};

/// One modality's residual quantization of a batch.
struct MmRqvaeQuantized {
  at::Tensor z_q_ste;  ///< float32 [B, e], value z_q, gradient of z
  at::Tensor codes;    ///< int64 [B, L], the assignment used
  at::Tensor rq_loss;  ///< float32 scalar, with graph
};

/// Sinkhorn-balanced assignment, LC-Rec style: d is centred to [−1, 1] by (d − mid)/amplitude with
/// mid = (max+min)/2 over the whole batch and amplitude = max − mid + 1e-5; Q = exp(−d/ε) in double;
/// `iterations` times: normalise each row to sum 1/K, then each column to sum 1/B. Computed as scaling
/// vectors on a row-shifted kernel (the same maths, two mat-vecs per iteration), falling back to the log
/// domain when the kernel underflows. @param distances [B, K] (any float dtype).
/// @return int64 [B], argmax_k Q[b, k].
at::Tensor sinkhorn_assign(const at::Tensor& distances, double epsilon, int64_t iterations);

/// Squared Euclidean distances ‖a_i − b_k‖², [n, K] float32, from a [n, e] and b [K, e] (no grad):
/// ‖a_i‖² + ‖b_k‖² − 2·a_i·b_k.
at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b);
/// The same with ‖a_i‖² given (`a_norms` = squared_norms(a), [n, 1]), for repeated queries against one a:
/// bit-identical to the two-argument form.
at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& a_norms, const at::Tensor& b);
/// ‖a_i‖², float32 [n, 1] (no grad).
at::Tensor squared_norms(const at::Tensor& a);

/// The parameters of one MM-RQ-VAE, float32 on CPU, each requiring grad.
class MmRqvae {
 public:
  /// Allocates and initialises every parameter from ATen's default generator (seed it first for
  /// reproducible weights): Xavier-normal weights and zero biases (LC-Rec's MLPLayers), codebooks
  /// uniform in [−1/K, 1/K] (LC-Rec's embedding init; k-means usually overwrites them).
  /// @throws std::invalid_argument naming the setting when the config is inconsistent (no modality, an
  /// unknown or repeated or out-of-order name, a size < 1).
  explicit MmRqvae(const MmRqvaeConfig& config);

  const MmRqvaeConfig& config() const { return config_; }
  int64_t modalities() const { return static_cast<int64_t>(config_.modalities.size()); }
  /// Index of a modality by name, or −1.
  int64_t modality_index(const std::string& name) const;

  /// Every parameter with its stable name, in a fixed order (per modality: encoder layers, decoder
  /// layers, codebooks).
  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return params_; }

  /// Overwrites every parameter's values. `named` must hold each name of parameters() exactly once,
  /// in any order, as a float32 tensor of the same shape.
  /// @throws std::invalid_argument naming the first missing, unknown, duplicated or mis-shaped tensor.
  void assign(const std::vector<std::pair<std::string, at::Tensor>>& named);

  /// Codebooks of modality m, [L, K, e] (the parameter itself).
  const at::Tensor& codebooks(int64_t m) const { return mods_[m].codebooks; }

  /// Encoder output with autograd. @param x float32 [B, input_dim]. @return float32 [B, e].
  at::Tensor encode_z(int64_t m, const at::Tensor& x) const;
  /// Decoder output with autograd. @param z float32 [B, e]. @return float32 [B, input_dim].
  at::Tensor decode(int64_t m, const at::Tensor& z) const;

  /// Residual quantization of z (training form: Sinkhorn on loss.sinkhorn_levels when `sinkhorn`).
  /// @param frozen int64 [B, L] codes to use instead of assigning (undefined: assign).
  MmRqvaeQuantized quantize(int64_t m, const at::Tensor& z, const MmRqvaeLossConfig& loss, bool sinkhorn,
                            const at::Tensor& frozen = at::Tensor()) const;

  /// The training loss of one batch. @param xs one float32 [B, input_dim_m] per modality (same items,
  /// same order). @param sinkhorn use Sinkhorn on the configured levels (training) or greedy only.
  MmRqvaeLosses loss(const std::vector<at::Tensor>& xs, const MmRqvaeLossConfig& loss, bool sinkhorn) const;

  /// Inference encoder (no grad), the encoding contract shared with the core service: per layer
  /// at::addmm(bias, h, Wᵀ) (bias broadcast, GEMM accumulated onto it), ReLU between layers.
  /// @param x float32 [n, input_dim]. @return float32 [n, e].
  at::Tensor infer_z(int64_t m, const at::Tensor& x) const;

  /// Inference codes: torch_ops::rq_encode(infer_z(x), codebooks, beam 1), greedy and per item.
  /// @param x float32 [n, input_dim]. @return int32 [n, L] in [0, K).
  /// @throws c10::Error on a wrong shape or dtype.
  at::Tensor encode(int64_t m, const at::Tensor& x) const;

  /// Σ_l C_l[codes[:, l]] (no grad). @param codes int32 or int64 [n, L]. @return float32 [n, e].
  at::Tensor lookup(int64_t m, const at::Tensor& codes) const;

 private:
  struct Layer {
    at::Tensor weight, bias;
  };
  struct Modality {
    std::vector<Layer> encoder, decoder;
    at::Tensor codebooks;
  };
  at::Tensor add(const std::string& name, at::Tensor t);

  MmRqvaeConfig config_;
  std::vector<Modality> mods_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
};

}  // namespace mmesid::models
