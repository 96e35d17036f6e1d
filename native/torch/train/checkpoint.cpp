#include "checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace mmesid::train {
namespace {

c10::List<at::Tensor> tensor_list(const std::vector<at::Tensor>& tensors) {
  c10::List<at::Tensor> out;
  for (const at::Tensor& t : tensors) out.push_back(t.detach().clone());
  return out;
}

std::vector<at::Tensor> tensors_of(const c10::IValue& value) {
  return value.toTensorList().vec();
}

}  // namespace

c10::impl::GenericDict checkpoint_dict(const CheckpointKind& kind, const std::string& fingerprint,
                                       const std::vector<std::pair<std::string, at::Tensor>>& params,
                                       const std::vector<at::Tensor>& best, AdamW& adam,
                                       const std::mt19937_64& rng) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("format", kind.format);
  dict.insert("version", kind.version);
  dict.insert("fingerprint", fingerprint);
  c10::List<std::string> names;
  std::vector<at::Tensor> values;
  for (const auto& [name, p] : params) {
    names.push_back(name);
    values.push_back(p);
  }
  dict.insert("names", names);
  dict.insert("params", tensor_list(values));
  dict.insert("best", tensor_list(best));
  dict.insert("adam_m", tensor_list(adam.m()));
  dict.insert("adam_v", tensor_list(adam.v()));
  dict.insert("adam_t", adam.t());
  std::ostringstream rng_state;
  rng_state << rng;
  dict.insert("sampler_state", rng_state.str());
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  dict.insert("torch_rng_state", gen.get_state());
  return dict;
}

void write_checkpoint(const c10::impl::GenericDict& dict, const std::string& path,
                      const CheckpointKind& kind) {
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  const std::string temp = path + "." + std::to_string(::getpid()) + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(temp.c_str());
      throw std::runtime_error(kind.what + ": could not write the checkpoint " + temp);
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    throw std::runtime_error(kind.what + ": could not rename the checkpoint to " + path);
  }
}

bool LoadedCheckpoint::open(const std::string& path, const CheckpointKind& kind,
                            const std::string& fingerprint) {
  path_ = path;
  what_ = kind.what;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const c10::IValue value = torch::jit::pickle_load(bytes);
  TORCH_CHECK(value.isGenericDict(), what_, ": ", path, " is not an mmesid ", what_, " checkpoint");
  dict_ = value.toGenericDict();
  TORCH_CHECK(get("format").toStringRef() == kind.format, what_, ": ", path, " is not an mmesid ", what_,
              " checkpoint");
  TORCH_CHECK(get("version").toInt() == kind.version, what_, ": checkpoint version ", get("version").toInt(),
              " is not supported (expected ", kind.version, ")");
  const std::string found = get("fingerprint").toStringRef();
  TORCH_CHECK(found == fingerprint, what_, ": checkpoint ", path, " was made for another run: it has ", found,
              "; this run has ", fingerprint);
  return true;
}

c10::IValue LoadedCheckpoint::get(const char* key) const {
  TORCH_CHECK(dict_.contains(key), what_, ": checkpoint ", path_, " lacks \"", key, "\"");
  return dict_.at(key);
}

std::vector<at::Tensor> LoadedCheckpoint::restore(
    const std::vector<std::pair<std::string, at::Tensor>>& params, AdamW& adam, std::mt19937_64& rng) const {
  const auto values = tensors_of(get("params"));
  const auto m = tensors_of(get("adam_m")), v = tensors_of(get("adam_v"));
  TORCH_CHECK(values.size() == params.size() && m.size() == params.size() && v.size() == params.size(), what_,
              ": checkpoint parameter count mismatch");
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].second.copy_(values[i]);
    adam.m()[i].copy_(m[i]);
    adam.v()[i].copy_(v[i]);
  }
  adam.t() = get("adam_t").toInt();
  std::istringstream rng_state(get("sampler_state").toStringRef());
  rng_state >> rng;
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(get("torch_rng_state").toTensor());
  return tensors_of(get("best"));
}

}  // namespace mmesid::train
