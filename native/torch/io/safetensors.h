// Our safetensors reader and writer (the npm `safetensors` package is an empty placeholder; Hugging Face
// checkpoints, PEFT adapters and our own artifacts all use the format).
//
// Format (https://huggingface.co/docs/safetensors): 8-byte little-endian u64 N, an N-byte UTF-8 JSON
// header {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__":
// {"<key>": "<string>"}?}, then the data section; offsets are relative to its start.
//
// Validation follows the reference implementation, so a file that loads here loads in Python and a
// corrupt one is refused with a FormatError naming the file, the byte offset and the problem (never a
// crash, whatever the bytes): N <= 100,000,000 and within the file; the header is a JSON object of at
// most depth 3 (checked before parsing, so hostile nesting cannot exhaust the stack); every entry has a
// known dtype, a shape of non-negative integers whose byte size (overflow-checked) equals end − begin;
// the entries, sorted by offset, tile the data section exactly (no holes, no overlaps, nothing left).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mmesid::io {

/// One tensor's header entry.
struct TensorEntry {
  std::string name;
  std::string dtype;            ///< as stored: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2
  std::vector<int64_t> shape;   ///< [] for a scalar
  uint64_t begin = 0, end = 0;  ///< byte range in the data section
  int64_t numel() const;
};

/// A parsed, validated header.
struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  ///< in data-offset order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  ///< 8 + N: where the data section starts in the file
};

/// Parses and validates the header of a safetensors file of `file_size` bytes whose first `available`
/// bytes are at `bytes` (the whole header must be available). `file` only names it in messages.
/// @throws mmesid::FormatError on any violation listed at the top of this file.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& file);

/// A read-only, memory-mapped safetensors file: the header is parsed when it is opened; tensor bytes
/// are only touched when a tensor is loaded, so opening a 16 GB shard costs its header.
class SafetensorsFile {
 public:
  /// @throws mmesid::FormatError (malformed), std::runtime_error (cannot open / map the file).
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorEntry>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  /// The entry called `name`, or nullptr.
  const TensorEntry* find(const std::string& name) const;

  /// A new CPU tensor holding `entry` converted to `dtype` (float sources F64/F32/F16/BF16 to any
  /// floating dtype; integer and bool sources only to their own dtype).
  /// @throws mmesid::FormatError when the stored dtype cannot be converted to `dtype`.
  at::Tensor load(const TensorEntry& entry, at::ScalarType dtype) const;
  /// load(find(name)) @throws mmesid::FormatError when there is no such tensor.
  at::Tensor load(const std::string& name, at::ScalarType dtype) const;

 private:
  std::string path_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
  const uint8_t* mapped_ = nullptr;
  size_t mapped_size_ = 0;
};

/// The safetensors dtype name of a tensor dtype ("F32", "BF16", ...). @throws std::invalid_argument
/// for a dtype safetensors cannot store.
std::string safetensors_dtype_name(at::ScalarType dtype);

/// Writes `tensors` (any device, any strides; stored as their own dtype, in the given order) and
/// `metadata` to `path` atomically: "<path>.<pid>.tmp" is written, flushed and renamed over `path`, so
/// an interrupted write never leaves a truncated file under the final name. The header is padded with
/// spaces to a multiple of 8 bytes (as the reference writer does), so every tensor is 8-byte aligned.
/// @throws std::invalid_argument for duplicate or empty names or an unstorable dtype;
///         std::runtime_error naming the file when writing or renaming fails.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mmesid::io
