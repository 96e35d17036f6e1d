// Reading a Hugging Face Llama checkpoint's weights: `model.safetensors` or the shards listed by
// `model.safetensors.index.json` (the TS layer parses config.json and the index, and passes the shard
// files). Tensors are read one at a time from the memory-mapped shards and converted to the compute
// dtype, so peak memory is the converted model plus one tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <string>
#include <vector>

#include "torch/models/llama.h"

namespace mmesid::io {

/// The weights of `config` from `files`, by HF name with the "model." prefix (names stored without it
/// are accepted), converted to `dtype` (any floating dtype; F32/F16/BF16/F64 stored) on `device`.
/// Ignored: a stored `lm_head.weight` when the config ties it to the embeddings, and RoPE buffers
/// (`*.rotary_emb.inv_freq`) that old exporters wrote.
/// @throws mmesid::FormatError naming the checkpoint, listing every missing, unexpected, duplicated or
///         mis-shaped tensor (checked from the headers before any tensor is read); or for a malformed
///         shard. std::runtime_error when a file cannot be read.
std::map<std::string, at::Tensor> load_llama_weights(const std::vector<std::string>& files,
                                                     const models::LlamaConfig& config, at::ScalarType dtype,
                                                     c10::Device device);

}  // namespace mmesid::io
