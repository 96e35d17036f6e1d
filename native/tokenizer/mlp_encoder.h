// Tokenizer inference without libtorch: the MM-RQ-VAE encoder MLP followed by greedy residual assignment.
//
// This is the encoding contract of the tokenizer specification (docs: issue 4), identical in the
// libtorch path and here:
//   z = encoder(x), layer by layer: out = bias broadcast into every row, then sgemm(x, Wᵀ) accumulated
//       onto it (beta = 1: what at::linear → at::addmm does on the CPU, so float32 rounding matches
//       libtorch's), ReLU after every layer except the last;
//   codes = kernels::rq_encode(z, codebooks, beam 1)  (nearest codeword per level, ties → lower code).
//
// Shapes (row-major float32 everywhere):
//   layer i:   weight [out_dim, in_dim] (PyTorch nn.Linear layout), bias [out_dim];
//              layer 0's in_dim is the modality's input dimension, the last layer's out_dim is code_dim.
//   codebooks: [levels, codes, code_dim].
//   x:         [n, input_dim] → codes [n, levels] int32, each in [0, codes).
//
// A TokenizerModel owns copies of every weight (the caller's buffers may be freed after construction)
// and is immutable afterwards: any number of threads may call encode() on one model concurrently; each
// call allocates its own scratch (see TokenizerModel::scratch_floats).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmesid::tokenizer {

/// One nn.Linear of an encoder.
struct LinearLayer {
  int64_t in_dim = 0;
  int64_t out_dim = 0;
  std::vector<float> weight;  ///< [out_dim, in_dim]
  std::vector<float> bias;    ///< [out_dim]
};

/// One modality's encoder and codebooks.
struct ModalityModel {
  std::string name;                 ///< e.g. "collab", "text", "visual"
  std::vector<LinearLayer> layers;  ///< >= 1 layers; dims chain: layers[i].out_dim == layers[i+1].in_dim
  int64_t levels = 0;               ///< L >= 1
  int64_t codes = 0;                ///< K >= 1, <= 2^31 - 1
  int64_t code_dim = 0;             ///< e == layers.back().out_dim
  std::vector<float> codebooks;     ///< [levels, codes, code_dim]

  int64_t input_dim() const { return layers.empty() ? 0 : layers.front().in_dim; }
};

/// Rows of x processed per encoder pass: bounds the scratch memory of a call (see scratch_floats)
/// while keeping each GEMM large enough to run near the BLAS's peak.
inline constexpr int64_t kEncodeTileRows = 1024;

/// Encoder forward of the contract above for `n` rows: x [n, layers[0].in_dim] → z [n, last out_dim].
/// `hidden_a` and `hidden_b` are scratch of at least n · (widest hidden layer) floats each (unused,
/// and may be null, for a single-layer encoder). BLAS threads: the caller's OpenMP setting
/// (kernels::ScopedThreads); the bias/ReLU passes use `threads` (0 = all hardware threads).
void mlp_forward(const std::vector<LinearLayer>& layers, const float* x, int64_t n, float* z, float* hidden_a,
                 float* hidden_b, int threads);

/// Naive reference of mlp_forward: every dot product accumulated in double from the bias, rounded to
/// float32 once per layer output (then ReLU). Single thread. The oracle of the tests.
void mlp_forward_reference(const std::vector<LinearLayer>& layers, const float* x, int64_t n, float* z);

/// The tokenizer: one ModalityModel per modality present.
class TokenizerModel {
 public:
  /// Takes ownership of the modalities after checking every shape.
  /// @throws std::invalid_argument naming the modality, layer and field on an empty list, a duplicate
  ///   name, broken dimension chaining, a buffer of the wrong size, or a non-finite weight.
  explicit TokenizerModel(std::vector<ModalityModel> modalities);

  /// Index of the modality called `name`, or -1.
  int find(const std::string& name) const;
  const ModalityModel& modality(int index) const { return modalities_.at(static_cast<size_t>(index)); }
  int size() const { return static_cast<int>(modalities_.size()); }

  /// Encodes rows of one modality: x [n, input_dim] → codes [n, levels]. Rows are processed in tiles
  /// of kEncodeTileRows; BLAS and the RQ kernel use `threads` (0 = all hardware threads).
  /// @param row_offset added to row numbers in error messages (the caller's position of x[0]).
  /// @param label      the argument name in error messages (e.g. "input.collab").
  /// @throws kernels::ArgumentError naming `label` and the first row holding a NaN or ±Inf;
  ///   std::runtime_error when finite inputs overflow to a non-finite latent (naming the row);
  ///   std::invalid_argument for n < 0 or a bad modality index.
  void encode(int modality, const float* x, int64_t n, int32_t* codes, int threads, int64_t row_offset,
              const std::string& label) const;

  /// The same on the naive references (mlp_forward_reference + rq_encode_reference). Tests only.
  void encode_reference(int modality, const float* x, int64_t n, int32_t* codes, int64_t row_offset,
                        const std::string& label) const;

  /// Floats of scratch one encode() call of `modality` allocates (for memory bounds in the docs):
  /// min(n, kEncodeTileRows) · (2 · widest hidden layer + code_dim).
  int64_t scratch_floats(int modality, int64_t n) const;

  /// Bytes of weights and codebooks held.
  int64_t bytes() const;

 private:
  std::vector<ModalityModel> modalities_;
};

}  // namespace mmesid::tokenizer
