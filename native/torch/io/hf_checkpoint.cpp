#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "hf_checkpoint.h"

#include <memory>
#include <set>
#include <sstream>

#include "common/errors.h"
#include "torch/io/safetensors.h"

namespace mmesid::io {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string canonical_name(const std::string& stored) {
  if (stored.rfind("model.", 0) == 0 || stored.rfind("lm_head.", 0) == 0) return stored;
  return "model." + stored;
}

}  // namespace

std::map<std::string, at::Tensor> load_llama_weights(const std::vector<std::string>& files,
                                                     const models::LlamaConfig& config, at::ScalarType dtype,
                                                     c10::Device device) {
  const std::string where =
      files.size() == 1 ? files[0] : files.at(0) + " (+" + std::to_string(files.size() - 1) + " shards)";
  const std::vector<models::TensorSpec> table = models::llama_tensor_table(config);
  std::map<std::string, const models::TensorSpec*> expected;
  for (const auto& spec : table) expected[spec.name] = &spec;

  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  struct Located {
    size_t shard;
    const TensorEntry* entry;
  };
  std::map<std::string, Located> located;
  std::vector<std::string> unexpected, duplicated, misshaped, missing;
  for (size_t f = 0; f < files.size(); ++f) {
    shards.push_back(std::make_unique<SafetensorsFile>(files[f]));
    for (const TensorEntry& entry : shards.back()->tensors()) {
      const std::string name = canonical_name(entry.name);
      if (ends_with(name, ".rotary_emb.inv_freq")) continue;
      if (name == "lm_head.weight" && config.tie_word_embeddings) continue;
      const auto spec = expected.find(name);
      if (spec == expected.end()) {
        unexpected.push_back(entry.name + " (" + files[f] + ")");
        continue;
      }
      if (!located.emplace(name, Located{f, &entry}).second) {
        duplicated.push_back(entry.name);
        continue;
      }
      if (entry.shape != spec->second->shape)
        misshaped.push_back(entry.name + " " + shape_text(entry.shape) + " (expected " +
                            shape_text(spec->second->shape) + ")");
    }
  }
  for (const auto& spec : table)
    if (!located.count(spec.name)) missing.push_back(spec.name);
  if (!missing.empty() || !unexpected.empty() || !duplicated.empty() || !misshaped.empty()) {
    std::ostringstream m;
    m << "the checkpoint does not match config.json (" << config.num_hidden_layers << " layers, hidden "
      << config.hidden_size << ", heads " << config.num_attention_heads << "/" << config.num_key_value_heads
      << ", vocab " << config.vocab_size << (config.tie_word_embeddings ? ", tied lm_head" : "") << "):"
      << name_lists({{"missing", missing},
                     {"unexpected", unexpected},
                     {"duplicated", duplicated},
                     {"mis-shaped", misshaped}});
    throw FormatError(where, -1, m.str());
  }
  std::map<std::string, at::Tensor> weights;
  for (const auto& spec : table) {
    const Located& at_ = located.at(spec.name);
    at::Tensor t = shards[at_.shard]->load(*at_.entry, dtype);
    weights.emplace(spec.name, device.is_cpu() ? t : t.to(device));
  }
  return weights;
}

}  // namespace mmesid::io
