// libtorch eager baseline of the tokenization service (bench only, never used by the library): the
// encoding contract written the way a PyTorch user would — at::linear + at::relu for the encoder MLP,
// then a torch-only greedy residual assignment (dist = ‖r‖² − 2·r·Cᵀ + ‖c‖², argmin, gather,
// subtract), NOT the mmesid RQ kernel. Runs once on tensors viewing caller memory.
#pragma once

#include <cstdint>
#include <vector>

namespace mmesid::torch_bench {

/// One encoder layer viewed in caller memory: weight [out_dim, in_dim], bias [out_dim].
struct EagerLinear {
  const float* weight;
  const float* bias;
  int64_t in_dim;
  int64_t out_dim;
};

/// x [n, layers[0].in_dim] → codes [n, levels] (int32) through the encoder and greedy RQ on
/// codebooks [levels, size, code_dim]. ATen's intra-op threads (at::set_num_threads) apply.
void tokenize_eager(const float* x, int64_t n, const std::vector<EagerLinear>& layers, const float* codebooks,
                    int64_t levels, int64_t size, int64_t code_dim, int32_t* codes);

}  // namespace mmesid::torch_bench
