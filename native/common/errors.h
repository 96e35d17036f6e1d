// Error types shared by every native layer that reads files (header-only, std only, so both addons can
// catch them at the boundary).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mmesid {

/// A file is malformed: names the file, where (a byte offset, or -1 when the problem is not at one
/// place, e.g. a missing tensor) and what was wrong. The addon turns it into the TypeScript
/// DataFormatError (code ERR_MMESID_DATA_FORMAT) with `file` and `offset` set.
class FormatError : public std::runtime_error {
 public:
  FormatError(std::string file, int64_t offset, std::string problem)
      : std::runtime_error(offset >= 0 ? file + ": byte " + std::to_string(offset) + ": " + problem
                                       : file + ": " + problem),
        file_(std::move(file)),
        offset_(offset),
        problem_(std::move(problem)) {}
  const std::string& file() const { return file_; }
  int64_t offset() const { return offset_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string file_;
  int64_t offset_;
  std::string problem_;
};

/// "[2, 3]".
inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// One message for named problems, e.g. " missing (2): a, b; mis-shaped (1): c [3] (expected [4]);" —
/// groups without names are left out, each lists at most 20 names.
inline std::string name_lists(const std::vector<std::pair<const char*, std::vector<std::string>>>& groups) {
  std::string m;
  for (const auto& [what, names] : groups) {
    if (names.empty()) continue;
    m += std::string(" ") + what + " (" + std::to_string(names.size()) + "):";
    for (size_t i = 0; i < names.size() && i < 20; ++i) m += (i ? ", " : " ") + names[i];
    if (names.size() > 20) m += ", …";
    m += ";";
  }
  return m;
}

}  // namespace mmesid
