#include "napi_util.h"

#include "common.h"

#include <omp.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>

namespace mmesid::addon {

OptionsReader::OptionsReader(const Napi::CallbackInfo& info) : env_(info.Env()) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(env_, "Expected an options object as the first argument");
  }
  options_ = info[0].As<Napi::Object>();
}

OptionsReader::OptionsReader(Napi::Env env, Napi::Object options) : env_(env), options_(options) {}

std::string OptionsReader::string(const char* key) {
  Napi::Value value = field(key);
  if (!value.IsString()) throw Napi::TypeError::New(env_, std::string("Expected a string for ") + key);
  return value.As<Napi::String>().Utf8Value();
}

std::vector<std::string> OptionsReader::strings(const char* key) {
  Napi::Value value = field(key);
  if (!value.IsArray())
    throw Napi::TypeError::New(env_, std::string("Expected an array of strings for ") + key);
  Napi::Array array = value.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsString())
      throw Napi::TypeError::New(env_, std::string("Expected an array of strings for ") + key);
    out.push_back(item.As<Napi::String>().Utf8Value());
  }
  return out;
}

OptionsReader OptionsReader::object(const char* key) {
  Napi::Value value = field(key);
  if (!value.IsObject()) throw Napi::TypeError::New(env_, std::string("Expected an object for ") + key);
  return OptionsReader(env_, value.As<Napi::Object>());
}

Napi::Value OptionsReader::field(const char* key) {
  return options_.Get(key);
}

Napi::TypedArray OptionsReader::typed(const char* key, napi_typedarray_type type, const char* type_name,
                                      bool optional) {
  Napi::Value value = field(key);
  if (optional && (value.IsUndefined() || value.IsNull())) return Napi::TypedArray();
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(env_, std::string("Expected ") + type_name + " for " + key);
  }
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  pins_.push_back(Napi::Persistent(array.As<Napi::Object>()));
  return array;
}

Pinned<float> OptionsReader::f32(const char* key) {
  Napi::TypedArray array = typed(key, napi_float32_array, "Float32Array", false);
  return {array.As<Napi::Float32Array>().Data(), array.ElementLength()};
}

Pinned<float> OptionsReader::f32_optional(const char* key) {
  Napi::TypedArray array = typed(key, napi_float32_array, "Float32Array", true);
  if (array.IsEmpty()) return {};
  return {array.As<Napi::Float32Array>().Data(), array.ElementLength()};
}

Pinned<int32_t> OptionsReader::i32(const char* key) {
  Napi::TypedArray array = typed(key, napi_int32_array, "Int32Array", false);
  return {array.As<Napi::Int32Array>().Data(), array.ElementLength()};
}

Pinned<int32_t> OptionsReader::i32_optional(const char* key) {
  Napi::TypedArray array = typed(key, napi_int32_array, "Int32Array", true);
  if (array.IsEmpty()) return {};
  return {array.As<Napi::Int32Array>().Data(), array.ElementLength()};
}

Pinned<double> OptionsReader::f64(const char* key) {
  Napi::TypedArray array = typed(key, napi_float64_array, "Float64Array", false);
  return {array.As<Napi::Float64Array>().Data(), array.ElementLength()};
}

int64_t OptionsReader::integer(const char* key) {
  Napi::Value value = field(key);
  if (!value.IsNumber()) throw Napi::TypeError::New(env_, std::string("Expected an integer for ") + key);
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::floor(v) != v || std::fabs(v) > 9007199254740991.0) {
    throw Napi::TypeError::New(env_, std::string("Expected an integer for ") + key);
  }
  return static_cast<int64_t>(v);
}

double OptionsReader::number(const char* key) {
  Napi::Value value = field(key);
  if (!value.IsNumber() || !std::isfinite(value.As<Napi::Number>().DoubleValue())) {
    throw Napi::TypeError::New(env_, std::string("Expected a finite number for ") + key);
  }
  return value.As<Napi::Number>().DoubleValue();
}

bool OptionsReader::boolean(const char* key) {
  Napi::Value value = field(key);
  if (!value.IsBoolean()) throw Napi::TypeError::New(env_, std::string("Expected a boolean for ") + key);
  return value.As<Napi::Boolean>().Value();
}

bool OptionsReader::boolean_or(const char* key, bool fallback) {
  Napi::Value value = field(key);
  if (value.IsUndefined() || value.IsNull()) return fallback;
  return boolean(key);
}

std::vector<double> OptionsReader::numbers_optional(const char* key) {
  Napi::Value value = field(key);
  std::vector<double> out;
  if (value.IsUndefined() || value.IsNull()) return out;
  if (!value.IsArray())
    throw Napi::TypeError::New(env_, std::string("Expected an array of numbers for ") + key);
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsNumber() || !std::isfinite(item.As<Napi::Number>().DoubleValue())) {
      throw Napi::TypeError::New(env_, std::string("Expected finite numbers in ") + key);
    }
    out.push_back(item.As<Napi::Number>().DoubleValue());
  }
  return out;
}

void check_finite_result(double loss, std::initializer_list<NamedBuffer> outputs,
                         std::initializer_list<NamedBuffer> inputs, const char* op, int threads) {
  bool finite = std::isfinite(loss);
  for (const NamedBuffer& out : outputs) {
    if (!finite) break;
    if (out.data && kernels::first_non_finite(out.data, out.count, threads) >= 0) finite = false;
  }
  if (finite) return;
  for (const NamedBuffer& in : inputs) {
    if (in.data) kernels::require_finite(in.data, in.count, in.row_width, in.name, threads);
  }
  throw std::runtime_error(std::string(op) +
                           ": the result overflowed to a non-finite value although every input is finite "
                           "(inputs too large for float32, or a temperature/bandwidth too small)");
}

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

PromiseWorker::PromiseWorker(Napi::Env env, WorkFn work, std::vector<Napi::ObjectReference> pins)
    : Napi::AsyncWorker(env, "mmesid.kernel"),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      pins_(std::move(pins)) {}

Napi::Promise PromiseWorker::start(Napi::Env env, WorkFn work, std::vector<Napi::ObjectReference> pins) {
  auto* worker = new PromiseWorker(env, std::move(work), std::move(pins));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

void PromiseWorker::fail(const char* code, std::string message) {
  failed_ = true;
  error_code_ = code;
  error_message_ = std::move(message);
}

namespace {

/// Nice value for kernel threads: MMESID_WORKER_NICE (0..19), default 5; 0 leaves priorities alone.
int worker_nice() {
  static const int value = [] {
    const char* env = std::getenv("MMESID_WORKER_NICE");
    if (!env) return 5;
    const int v = std::atoi(env);
    return v < 0 ? 0 : (v > 19 ? 19 : v);
  }();
  return value;
}

/// Lowers the scheduling priority of the calling libuv worker and its OpenMP team (which OpenBLAS also
/// runs on) once per thread, so on a machine whose cores are all busy with kernel work the event-loop
/// thread still gets a core as soon as it wakes: a Node service keeps answering while it computes.
void deprioritise_compute_threads() {
  const int nice = worker_nice();
  if (nice == 0) return;
  thread_local bool done = false;
  if (done) return;
  done = true;
  const auto lower = [nice] {
    thread_local bool lowered = false;
    if (lowered) return;
    lowered = true;
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    const int current = getpriority(PRIO_PROCESS, tid);
    if (current < nice) setpriority(PRIO_PROCESS, tid, nice);  // best effort; failure changes nothing else
  };
#pragma omp parallel num_threads(kernels::resolve_threads(0))
  lower();
}

}  // namespace

void PromiseWorker::Execute() {
  deprioritise_compute_threads();
  try {
    result_ = work_();
  } catch (const kernels::ArgumentError& e) {
    fail(kCodeInvalidArgument, e.what());
    error_argument_ = e.argument();
    error_expected_ = e.expected();
    error_received_ = e.received();
  } catch (const std::invalid_argument& e) {
    fail(kCodeInvalidArgument, e.what());
  } catch (const std::bad_alloc&) {
    fail(kCodeOutOfMemory, "out of memory in a native kernel");
  } catch (const std::exception& e) {
    fail(kCodeNative, e.what());
  } catch (...) {
    fail(kCodeNative, "unknown native exception");
  }
}

void PromiseWorker::OnOK() {
  Napi::HandleScope scope(Env());
  if (failed_) {
    Napi::Error error = make_error(Env(), error_code_, error_message_);
    if (!error_argument_.empty()) {
      error.Set("argument", Napi::String::New(Env(), error_argument_));
      error.Set("expected", Napi::String::New(Env(), error_expected_));
      error.Set("received", Napi::String::New(Env(), error_received_));
    }
    deferred_.Reject(error.Value());
  } else {
    deferred_.Resolve(Napi::Number::New(Env(), result_));
  }
}

void PromiseWorker::OnError(const Napi::Error& error) {
  Napi::HandleScope scope(Env());
  deferred_.Reject(make_error(Env(), kCodeNative, error.Message()).Value());
}

}  // namespace mmesid::addon
