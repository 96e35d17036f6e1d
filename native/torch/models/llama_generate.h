// Autoregressive decoding with the Llama of llama.h: the prompt is run once, then one token per step
// against the key/value cache. Greedy (argmax; ties → the lowest id) or sampling with temperature,
// top-k and top-p from a seeded generator (same seed, same tokens on CPU).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "torch/models/llama.h"

namespace mmesid::models {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool greedy = true;
  double temperature = 1.0;  ///< > 0; sampling only
  int64_t top_k = 0;         ///< 0 = off; sampling only
  double top_p = 1.0;        ///< (0, 1]; 1 = off; sampling only
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  ///< generation ends after emitting one of these (it is included)
};

/// The new tokens after `prompt` (at most max_new_tokens; fewer when a stop id was emitted).
/// `cancelled` is polled between steps; when it returns true the tokens so far are returned.
/// @throws std::invalid_argument for an empty prompt, ids outside the vocabulary or bad options.
std::vector<int64_t> generate(const Llama& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& options, const std::function<bool()>& cancelled);

}  // namespace mmesid::models
