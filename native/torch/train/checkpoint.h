// The parts of a training checkpoint every mmesid trainer shares. A checkpoint is a torch pickle
// (torch::jit::pickle_save of a string-keyed dict, loadable by Python's torch.load) holding "format",
// "version", "fingerprint" (the run identity it must match to be resumed), "names"/"params" (the model's
// parameters in order), "best" (the best epoch's parameters), "adam_m"/"adam_v"/"adam_t" (the AdamW
// state), "sampler_state" (the trainer's std::mt19937_64) and "torch_rng_state" (ATen's default CPU
// generator), plus whatever early-stopping fields the trainer adds itself.
#pragma once

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "torch/train/adamw.h"

namespace mmesid::train {

/// Who writes a checkpoint: its format tag and version, the run's fingerprint, and a prefix for messages.
struct CheckpointKind {
  std::string format;  ///< e.g. "mmesid.sasrec.checkpoint"
  int64_t version = 1;
  std::string what;  ///< e.g. "sasrec", for messages
};

/// A dict with the shared entries filled: identity, parameters, best, AdamW state and both generators.
c10::impl::GenericDict checkpoint_dict(const CheckpointKind& kind, const std::string& fingerprint,
                                       const std::vector<std::pair<std::string, at::Tensor>>& params,
                                       const std::vector<at::Tensor>& best, AdamW& adam,
                                       const std::mt19937_64& rng);

/// Pickles `dict` to `path` atomically ("<path>.<pid>.tmp", then rename).
/// @throws std::runtime_error naming the file when writing or renaming fails.
void write_checkpoint(const c10::impl::GenericDict& dict, const std::string& path,
                      const CheckpointKind& kind);

/// A loaded checkpoint whose format, version and fingerprint were checked.
class LoadedCheckpoint {
 public:
  /// Reads `path`. @return false (nothing loaded) when it does not exist.
  /// @throws c10::Error naming the file for another format, version or run.
  bool open(const std::string& path, const CheckpointKind& kind, const std::string& fingerprint);
  /// An entry. @throws c10::Error naming the key when absent.
  c10::IValue get(const char* key) const;
  /// Copies the parameters, the AdamW state and both generators' states back; returns "best".
  /// @throws c10::Error on a parameter count mismatch.
  std::vector<at::Tensor> restore(const std::vector<std::pair<std::string, at::Tensor>>& params, AdamW& adam,
                                  std::mt19937_64& rng) const;

 private:
  std::string path_, what_;
  c10::impl::GenericDict dict_{c10::StringType::get(), c10::AnyType::get()};
};

}  // namespace mmesid::train
