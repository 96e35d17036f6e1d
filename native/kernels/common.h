// Shared conventions of the mmesid kernels.
//
// Every kernel in this folder works on raw, row-major, densely packed float32 buffers owned by the
// caller; nothing here allocates memory proportional to more than the inputs, and nothing here throws
// across the boundary except std::invalid_argument for violated preconditions (callers validate first;
// these checks are a last line of defence). `threads` = 0 means "all hardware threads"; any other
// value is used as given (OpenMP `num_threads` clause, so the setting is per call and never leaks into
// a caller's OpenMP state).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

// Functions usable from both host C++ and CUDA device code. The CUDA twins include the same headers,
// so the scalar maths (kernel values, beam insertion, online log-sum-exp) is written once and tested
// on the CPU.
#if defined(__CUDACC__)
#define MMESID_HD __host__ __device__ __forceinline__
#else
#define MMESID_HD inline
#endif

namespace mmesid::kernels {

/// Number of threads a kernel should use for a request of `threads` (0 = all hardware threads).
int resolve_threads(int threads);

/// Sets the calling thread's OpenMP thread count (which OpenBLAS's OpenMP build also follows) for the
/// lifetime of the guard and restores it after. Kernels take one at entry so BLAS calls made outside
/// their own parallel regions use the requested count.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;
  int count() const { return count_; }

 private:
  int previous_;
  int count_;
};

/// A precondition failure that names the argument, what was expected and what was received; the addon
/// turns it into the TypeScript InvalidArgumentError.
class ArgumentError : public std::invalid_argument {
 public:
  ArgumentError(std::string argument, std::string expected, std::string received)
      : std::invalid_argument("Expected " + expected + " for " + argument + " but received " + received),
        argument_(std::move(argument)),
        expected_(std::move(expected)),
        received_(std::move(received)) {}
  const std::string& argument() const { return argument_; }
  const std::string& expected() const { return expected_; }
  const std::string& received() const { return received_; }

 private:
  std::string argument_, expected_, received_;
};

/// Index of the first NaN or ±Inf in data[0, count), or -1 when all are finite. Multi-threaded scan.
int64_t first_non_finite(const float* data, int64_t count, int threads);

/// Throws ArgumentError("<argument>", "finite values", "NaN at index i (row r, column c)") when
/// data[0, count) holds a NaN or an infinity; `row_width` (> 0) only shapes the message.
void require_finite(const float* data, int64_t count, int64_t row_width, const char* argument, int threads);

/// Throws std::invalid_argument("<what>: <detail>") when `ok` is false.
inline void require(bool ok, const char* what, const std::string& detail) {
  if (!ok) throw std::invalid_argument(std::string(what) + ": " + detail);
}

}  // namespace mmesid::kernels
