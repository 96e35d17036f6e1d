// The N-API boundary helpers shared by both addons: reading a validated options object into plain
// C++ values (buffers stay owned by JS and are pinned by references for the worker's lifetime), and a
// Promise-returning AsyncWorker whose work runs on the libuv pool and whose failures become JS errors
// with a stable `code` — built on the main thread, never thrown across threads, never aborting.
//
// The TypeScript layer validates every argument first; the checks here only assert the invariants the
// native code relies on (a wrong call from JS still gets a TypeError, never a crash).
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace mmesid::addon {

/// Stable error codes surfaced as `error.code` in JS.
inline constexpr const char* kCodeInvalidArgument = "ERR_MMESID_INVALID_ARGUMENT";
inline constexpr const char* kCodeNative = "ERR_MMESID_NATIVE";
inline constexpr const char* kCodeOutOfMemory = "ERR_MMESID_OUT_OF_MEMORY";
inline constexpr const char* kCodeCancelled = "ERR_MMESID_CANCELLED";

/// A JS typed array pinned for the duration of an async call: raw data pointer + element count.
template <typename T>
struct Pinned {
  T* data = nullptr;
  size_t length = 0;
};

/// Reads options fields, pinning every buffer it hands out so the worker can use it off-thread.
class OptionsReader {
 public:
  explicit OptionsReader(const Napi::CallbackInfo& info);
  /// Reads a nested options object (e.g. `options.config`).
  OptionsReader(Napi::Env env, Napi::Object options);

  /// Required Float32Array field. @throws Napi::TypeError naming the field.
  Pinned<float> f32(const char* key);
  /// Optional Float32Array field (undefined/null -> {nullptr, 0}).
  Pinned<float> f32_optional(const char* key);
  /// Required Int32Array field.
  Pinned<int32_t> i32(const char* key);
  /// Optional Int32Array field (undefined/null -> {nullptr, 0}).
  Pinned<int32_t> i32_optional(const char* key);
  /// Required Float64Array field.
  Pinned<double> f64(const char* key);
  /// Required integer field (a Number holding an integer within int64 range).
  int64_t integer(const char* key);
  /// Required finite number.
  double number(const char* key);
  /// Required boolean.
  bool boolean(const char* key);
  /// Optional boolean with default.
  bool boolean_or(const char* key, bool fallback);
  /// Optional array of finite numbers (undefined/null -> empty).
  std::vector<double> numbers_optional(const char* key);
  /// Required string.
  std::string string(const char* key);
  /// Required array of strings.
  std::vector<std::string> strings(const char* key);
  /// Required nested object, as a reader sharing this one's pins.
  OptionsReader object(const char* key);

  Napi::Env env() const { return env_; }
  /// Moves the references keeping the buffers alive to the caller (the worker).
  std::vector<Napi::ObjectReference> take_pins() { return std::move(pins_); }

 private:
  Napi::Value field(const char* key);
  Napi::TypedArray typed(const char* key, napi_typedarray_type type, const char* type_name, bool optional);

  Napi::Env env_;
  Napi::Object options_;
  std::vector<Napi::ObjectReference> pins_;
};

/// A float buffer with a name, for finiteness checks (row_width only shapes messages).
struct NamedBuffer {
  const float* data;
  int64_t count;
  int64_t row_width;
  const char* name;
};

/// Never return NaNs silently: when `loss` or any output holds a NaN/Inf, scan the inputs and throw
/// kernels::ArgumentError naming the first non-finite input, or std::runtime_error (overflow) when the
/// inputs are all finite. Outputs are cheap to scan; inputs (e.g. a frozen 4096×14336 weight) are only
/// scanned on this failure path.
void check_finite_result(double loss, std::initializer_list<NamedBuffer> outputs,
                         std::initializer_list<NamedBuffer> inputs, const char* op, int threads);

/// What a worker computes: a number (a loss) or nothing (NaN is never used as a sentinel).
using WorkFn = std::function<double()>;

/// Runs `work` on the libuv pool and settles a Promise: resolved with the returned number, or
/// rejected with an Error whose `code` is one of the kCode* constants. C++ exceptions of every kind
/// are caught in the worker (libtorch's c10::Error derives from std::exception).
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, WorkFn work, std::vector<Napi::ObjectReference> pins);
  Napi::Promise promise() { return deferred_.Promise(); }

  /// Queues a worker and returns its promise.
  static Napi::Promise start(Napi::Env env, WorkFn work, std::vector<Napi::ObjectReference> pins);

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& error) override;

 private:
  void fail(const char* code, std::string message);

  Napi::Promise::Deferred deferred_;
  WorkFn work_;
  std::vector<Napi::ObjectReference> pins_;
  double result_ = 0.0;
  std::string error_argument_, error_expected_, error_received_;
  bool failed_ = false;
  std::string error_code_;
  std::string error_message_;
};

/// Builds an Error with a `code` property.
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace mmesid::addon
