// Shared pieces of the LLM's N-API exports (llm_exports.cpp, mmesid_exports.cpp): the promise worker with
// the one catch ladder, the loaded model's state and lock, and the readers of the options every LLM
// trainer shares. Argument conversion only; no maths.
#pragma once

#include <ATen/core/Tensor.h>
#include <napi.h>

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "addon/common/napi_util.h"
#include "torch/models/llama.h"
#include "torch/train/train_loop.h"

namespace mmesid::addon {

inline constexpr const char* kCodeDataFormat = "ERR_MMESID_DATA_FORMAT";

/// What a failed native call reports to JS.
struct Failure {
  std::string code, message, file;
  int64_t offset = -1;
  bool has_file = false;
};

/// The one catch ladder of the LLM exports' workers: FormatError → ERR_MMESID_DATA_FORMAT (with file and
/// offset), std::invalid_argument and c10::Error → ERR_MMESID_INVALID_ARGUMENT, bad_alloc → OUT_OF_MEMORY,
/// anything else → ERR_MMESID_NATIVE.
Failure capture(const std::exception_ptr& error);
Napi::Error to_js(Napi::Env env, const Failure& f);

/// A promise-returning worker: `work` runs on the libuv pool, `done` builds the result on the main thread.
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise start(Napi::Env env, Work work, Done done,
                             std::vector<Napi::ObjectReference> pins = {}) {
    auto* task = new Task(env, std::move(work), std::move(done), std::move(pins));
    Napi::Promise promise = task->deferred_.Promise();
    task->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (...) {
      failure_ = capture(std::current_exception());
      failed_ = true;
    }
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (failed_) {
      deferred_.Reject(to_js(Env(), failure_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(to_js(Env(), capture(std::current_exception())).Value());
    }
  }
  void OnError(const Napi::Error& error) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_error(Env(), kCodeNative, error.Message()).Value());
  }

 private:
  Task(Napi::Env env, Work work, Done done, std::vector<Napi::ObjectReference> pins)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)),
        pins_(std::move(pins)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::vector<Napi::ObjectReference> pins_;
  Failure failure_;
  bool failed_ = false;
};

/// A loaded model and the lock every call on it takes (workers block on it; synchronous mutators refuse
/// to wait and report the model busy instead of freezing the event loop).
struct LlmState {
  std::mutex mutex;
  std::unique_ptr<models::Llama> model;
  int threads = 0;
  std::atomic<bool> cancel_generation{false};
};

/// The model, or std::invalid_argument when disposed.
models::Llama& require_model(LlmState& s);
/// Locks `s` for a synchronous call or throws ERR_MMESID_NATIVE when a worker holds it.
std::unique_lock<std::mutex> lock_now(Napi::Env env, LlmState& s, const char* what);
/// "float32" | "bfloat16" | "float16". @throws Napi::TypeError otherwise.
at::ScalarType parse_dtype(Napi::Env env, const std::string& name);
const char* dtype_name(at::ScalarType t);
/// NativeLlamaConfig (typings/native.d.ts) → LlamaConfig.
models::LlamaConfig read_config(OptionsReader c);
/// Sets ATen's intra-op threads for this call (a process-wide setting; each call states its own).
void use_threads(int threads);
at::Tensor int32_to_long(const Pinned<int32_t>& p, at::IntArrayRef shape);
/// Copies a tensor (any dtype/device) into a float32 JS buffer of exactly its size.
void copy_float_out(const at::Tensor& source, const Pinned<float>& target, const char* name);
/// A worker body running `fn(model)` while holding the model's lock, with the model's thread count.
Task::Work with_model(std::shared_ptr<LlmState> state, std::function<void(models::Llama&)> fn);
/// The first argument as a file path. @throws Napi::TypeError otherwise.
std::string path_argument(const Napi::CallbackInfo& ci);
/// A step report as the JS TrainStep.
Napi::Object step_to_js(Napi::Env env, const train::StepReport& s);
/// A loop result as the JS TrainResult.
Napi::Value loop_result_to_js(Napi::Env env, const train::LoopResult& r);
train::LrSchedule parse_schedule(Napi::Env env, const std::string& name);
/// Reads the step loop's options (NativeLoopOptions, shared by every LLM trainer's export).
train::LoopOptions read_loop_options(Napi::Env env, OptionsReader& r);
/// The LlmState behind a NativeLlm handle object (its hidden "_state"). @throws Napi::TypeError otherwise.
std::shared_ptr<LlmState> llm_state_of(Napi::Value handle);
/// Attaches `state` to a handle object (for llm_state_of).
void attach_llm_state(Napi::Object handle, const std::shared_ptr<LlmState>& state);

}  // namespace mmesid::addon
