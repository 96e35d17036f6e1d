#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include "safetensors.h"

#include <ATen/ops/empty.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "common/errors.h"

namespace mmesid::io {
namespace {

constexpr uint64_t kMaxHeader = 100000000;  // the reference implementation's MAX_HEADER_SIZE
constexpr int kMaxDepth = 3;                // {"name": {"shape": [..]}}

struct DtypeInfo {
  const char* name;
  size_t bytes;
  c10::optional<at::ScalarType> torch_type;
};

const DtypeInfo kDtypes[] = {
    {"F64", 8, at::kDouble}, {"F32", 4, at::kFloat}, {"F16", 2, at::kHalf},  {"BF16", 2, at::kBFloat16},
    {"I64", 8, at::kLong},   {"I32", 4, at::kInt},   {"I16", 2, at::kShort}, {"I8", 1, at::kChar},
    {"U8", 1, at::kByte},    {"BOOL", 1, at::kBool}, {"F8_E4M3", 1, {}},     {"F8_E5M2", 1, {}},
    {"U16", 2, {}},          {"U32", 4, {}},         {"U64", 8, {}},
};

const DtypeInfo* dtype_info(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

/// Deepest bracket nesting outside strings, stopping early past `limit`.
int nesting_depth(const char* text, size_t size, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < size; ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& file) {
  auto fail = [&](int64_t offset, const std::string& problem) { throw FormatError(file, offset, problem); };
  if (file_size < 8 || available < 8)
    fail(0, "a safetensors file starts with an 8-byte header length, but the file has " +
                std::to_string(file_size) + " bytes");
  const uint64_t n = read_u64_le(bytes);
  if (n > kMaxHeader) fail(0, "header length " + std::to_string(n) + " exceeds the 100,000,000-byte limit");
  if (n > file_size - 8)
    fail(0, "header length " + std::to_string(n) + " runs past the end of the file (" +
                std::to_string(file_size) + " bytes)");
  if (available < 8 + n) fail(8, "the header is not fully available");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  if (n < 2 || text[0] != '{') fail(8, "the header is not a JSON object");
  // nlohmann's lexer stops at a NUL byte, which would let "{...}\0garbage" through; a raw NUL is never
  // valid JSON, so refuse it first.
  if (const void* nul = std::memchr(text, 0, n))
    fail(static_cast<int64_t>(8 + (static_cast<const char*>(nul) - text)),
         "the header holds a NUL byte (not valid JSON)");
  if (nesting_depth(text, n, kMaxDepth) > kMaxDepth)
    fail(8, "the header nests deeper than a safetensors header can (depth > 3)");
  nlohmann::json header = nlohmann::json::parse(text, text + n, nullptr, false);
  if (header.is_discarded() || !header.is_object()) fail(8, "the header is not valid JSON (UTF-8 object)");

  SafetensorsHeader out;
  out.data_start = 8 + n;
  const uint64_t data_size = file_size - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& value = it.value();
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) fail(8, "__metadata__ is not an object of strings");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) fail(8, "__metadata__[\"" + m.key() + "\"] is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor \"" + key + "\": ";
    if (!value.is_object()) fail(8, where + "the entry is not an object");
    const auto dtype = value.find("dtype");
    const auto shape = value.find("shape");
    const auto offsets = value.find("data_offsets");
    if (dtype == value.end() || !dtype->is_string()) fail(8, where + "missing string \"dtype\"");
    if (shape == value.end() || !shape->is_array()) fail(8, where + "missing array \"shape\"");
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2)
      fail(8, where + "missing \"data_offsets\": [begin, end]");
    TensorEntry entry;
    entry.name = key;
    entry.dtype = dtype->get<std::string>();
    const DtypeInfo* info = dtype_info(entry.dtype);
    if (!info) fail(8, where + "unknown dtype \"" + entry.dtype + "\"");
    // As the reference: the element count with checked multiplication (left to right), then bytes.
    uint64_t count = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) fail(8, where + "shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(8, where + "a dimension exceeds 2^63 − 1");
      if (__builtin_mul_overflow(count, dim, &count)) fail(8, where + "the shape's element count overflows");
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t bytes_needed = 0;
    if (count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(count, static_cast<uint64_t>(info->bytes), &bytes_needed))
      fail(8, where + "the shape's byte size overflows");
    for (const auto& o : *offsets)
      if (!o.is_number_unsigned()) fail(8, where + "data_offsets must be non-negative integers");
    entry.begin = (*offsets)[0].get<uint64_t>();
    entry.end = (*offsets)[1].get<uint64_t>();
    if (entry.begin > entry.end) fail(8, where + "data_offsets begin > end");
    if (entry.end - entry.begin != bytes_needed)
      fail(8, where + "data_offsets span " + std::to_string(entry.end - entry.begin) + " bytes but dtype " +
                  entry.dtype + " and shape " + shape_text(entry.shape) + " need " +
                  std::to_string(bytes_needed));
    out.tensors.push_back(std::move(entry));
  }
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const TensorEntry& e : out.tensors) {
    if (e.begin != cursor)
      fail(static_cast<int64_t>(out.data_start + std::min(e.begin, cursor)),
           "tensor \"" + e.name + "\" starts at data offset " + std::to_string(e.begin) +
               " but the previous one ends at " + std::to_string(cursor) +
               " (holes and overlaps are not allowed)");
    cursor = e.end;
  }
  if (cursor != data_size)
    fail(static_cast<int64_t>(out.data_start + std::min(cursor, data_size)),
         "the tensors cover " + std::to_string(cursor) + " bytes of a " + std::to_string(data_size) +
             "-byte data section (a truncated or padded file)");
  return out;
}

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path_ + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path_ + ": not a regular file");
  }
  mapped_size_ = static_cast<size_t>(st.st_size);
  if (mapped_size_ > 0) {
    void* p = ::mmap(nullptr, mapped_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw std::runtime_error(path_ + ": cannot memory-map (" + std::strerror(err) + ")");
    }
    mapped_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  try {
    header_ = parse_safetensors_header(mapped_, mapped_size_, mapped_size_, path_);
  } catch (...) {
    if (mapped_) ::munmap(const_cast<uint8_t*>(mapped_), mapped_size_);
    mapped_ = nullptr;
    throw;
  }
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(mapped_), mapped_size_);
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

at::Tensor SafetensorsFile::load(const TensorEntry& entry, at::ScalarType dtype) const {
  const DtypeInfo* info = dtype_info(entry.dtype);
  if (!info || !info->torch_type)
    throw FormatError(path_, -1,
                      "tensor \"" + entry.name + "\" has dtype " + entry.dtype + ", which cannot be loaded");
  const at::ScalarType stored = *info->torch_type;
  const bool float_source = at::isFloatingType(stored);
  if (stored != dtype && !(float_source && at::isFloatingType(dtype)))
    throw FormatError(path_, -1,
                      "tensor \"" + entry.name + "\" has dtype " + entry.dtype +
                          " and cannot be converted to " + std::string(c10::toString(dtype)));
  // Copy into an aligned buffer first: data offsets need not be aligned to the element size.
  at::Tensor raw = at::empty(entry.shape, at::TensorOptions().dtype(stored));
  const size_t bytes = static_cast<size_t>(entry.end - entry.begin);
  if (bytes > 0) std::memcpy(raw.data_ptr(), mapped_ + header_.data_start + entry.begin, bytes);
  return stored == dtype ? raw : raw.to(dtype);
}

at::Tensor SafetensorsFile::load(const std::string& name, at::ScalarType dtype) const {
  const TensorEntry* entry = find(name);
  if (!entry) throw FormatError(path_, -1, "no tensor named \"" + name + "\"");
  return load(*entry, dtype);
}

std::string safetensors_dtype_name(at::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.torch_type && *d.torch_type == dtype) return d.name;
  throw std::invalid_argument(std::string("safetensors cannot store dtype ") + c10::toString(dtype));
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<at::Tensor> data;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw std::invalid_argument("save_safetensors: bad tensor name \"" + name + "\"");
    if (!seen.insert(name).second)
      throw std::invalid_argument("save_safetensors: duplicate tensor name \"" + name + "\"");
    at::Tensor c = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", shape},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(c));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<uint8_t>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);

  const std::string tmp = path + "." + std::to_string(::getpid()) + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(path + ": cannot write (" + std::strerror(errno) + ")");
  bool ok = std::fwrite(length, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const at::Tensor& t : data) {
    if (!ok) break;
    const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
    ok = bytes == 0 || std::fwrite(t.data_ptr(), 1, bytes, f) == bytes;
  }
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": writing failed (" + std::strerror(err) + ")");
  }
}

}  // namespace mmesid::io
