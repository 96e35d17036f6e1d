// The N-API side of a long training run, shared by every training export (SASRec, the tokenizer, later
// the LLM): the run goes on a std::thread of its own (never the libuv pool, which it would block for
// minutes); progress events cross to the main thread through a ThreadSafeFunction (which also keeps the
// event loop alive until the run ends); cancellation is an atomic flag the loop polls; the promise is
// settled on the main thread by the TSFN's finalizer after the thread was joined. One run of a kind per
// process at a time (ATen's default generator, seeded by the run, is process-wide), enforced by a flag.
//
// JS sees `{ promise, cancel() }`. Errors: TrainingCancelled → ERR_MMESID_CANCELLED,
// std::invalid_argument → ERR_MMESID_INVALID_ARGUMENT, std::bad_alloc → ERR_MMESID_OUT_OF_MEMORY,
// anything else → ERR_MMESID_NATIVE; a second run while one is going throws ERR_MMESID_NATIVE
// synchronously.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <napi.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "addon/common/napi_util.h"
#include "torch/train/cancelled.h"

namespace mmesid::addon {

/// One training run: its options (filled by the export before start_training), its result, and the
/// channel its loop reports through.
template <class Options, class Result, class Event>
class TrainingJob {
 public:
  using EventToJs = Napi::Object (*)(Napi::Env, const Event&);

  explicit TrainingJob(Napi::Env env) : deferred_(Napi::Promise::Deferred::New(env)) {}

  Options options;

  /// From the training thread: whether JS asked to cancel.
  bool cancelled() const { return cancel_.load(std::memory_order_relaxed); }

  /// From the training thread: queues an event for the JS callback (dropped once the channel closes).
  void post(const Event& event) {
    auto* copy = new Event(event);
    const EventToJs to_js = event_to_js_;
    auto deliver = [to_js](Napi::Env env, Napi::Function callback, Event* raw) {
      std::unique_ptr<Event> owned(raw);
      if (env == nullptr || callback.IsEmpty()) return;
      try {
        callback.Call({to_js(env, *owned)});
      } catch (const Napi::Error&) {
        // A throwing progress callback must not end the process; the TS facade never passes one.
      }
    };
    if (progress_.NonBlockingCall(copy, deliver) != napi_ok) delete copy;
  }

  /// Starts `run(job)` on a thread of its own and returns `{ promise, cancel }`. The promise resolves
  /// with `result_to_js(result)`. `what` names the run in messages ("SASRec", "tokenizer").
  /// @throws Napi::Error (ERR_MMESID_NATIVE) when a run guarded by `busy` is already going.
  static Napi::Value start(Napi::Env env, Napi::Function on_progress, std::shared_ptr<TrainingJob> job,
                           std::atomic<bool>& busy, const std::string& what,
                           std::function<Result(TrainingJob&)> run, EventToJs event_to_js,
                           Napi::Value (*result_to_js)(Napi::Env, const Result&)) {
    job->event_to_js_ = event_to_js;
    job->previous_threads_ = at::get_num_threads();
    bool expected = false;
    if (!busy.compare_exchange_strong(expected, true))
      throw make_error(env, kCodeNative, "a " + what + " training is already running in this process");
    try {
      job->progress_ = Napi::ThreadSafeFunction::New(
          env, on_progress, "mmesid." + what, 0, 1, [job, &busy, result_to_js](Napi::Env fenv) {
            if (job->thread_.joinable()) job->thread_.join();
            busy.store(false);
            Napi::HandleScope scope(fenv);
            if (job->failed_) {
              job->deferred_.Reject(make_error(fenv, job->error_code_, job->error_message_).Value());
            } else {
              job->deferred_.Resolve(result_to_js(fenv, job->result_));
            }
          });
    } catch (...) {
      busy.store(false);
      throw;
    }
    try {
      job->thread_ = std::thread([job, what, run = std::move(run)] { job->execute(what, run); });
    } catch (const std::exception& e) {
      job->fail(kCodeNative, std::string("could not start the training thread: ") + e.what());
      job->progress_.Release();
    }
    Napi::Object handle = Napi::Object::New(env);
    handle.Set("promise", job->deferred_.Promise());
    handle.Set("cancel", Napi::Function::New(
                             env,
                             [job](const Napi::CallbackInfo& ci) {
                               job->cancel_.store(true);
                               return ci.Env().Undefined();
                             },
                             "cancel"));
    return handle;
  }

 private:
  void fail(const char* code, std::string message) {
    failed_ = true;
    error_code_ = code;
    error_message_ = std::move(message);
  }

  /// The training thread's body: one catch ladder, then the channel is released (→ the finalizer).
  void execute(const std::string& what, const std::function<Result(TrainingJob&)>& run) {
    // Training sets ATen's thread count, which is partly process-wide (the count new threads start
    // with); put back what the process had so the other exports keep their setting.
    struct RestoreThreads {
      int threads;
      ~RestoreThreads() { at::set_num_threads(threads); }
    } restore{previous_threads_};
    try {
      result_ = run(*this);
    } catch (const train::TrainingCancelled& e) {
      fail(kCodeCancelled, e.what());
    } catch (const c10::Error& e) {
      fail(kCodeNative, e.what_without_backtrace());
    } catch (const std::invalid_argument& e) {
      fail(kCodeInvalidArgument, e.what());
    } catch (const std::bad_alloc&) {
      fail(kCodeOutOfMemory, "out of memory in the " + what + " training");
    } catch (const std::exception& e) {
      fail(kCodeNative, e.what());
    } catch (...) {
      fail(kCodeNative, "unknown native exception in the " + what + " training");
    }
    progress_.Release();
  }

  std::atomic<bool> cancel_{false};
  Napi::Promise::Deferred deferred_;
  Napi::ThreadSafeFunction progress_;
  std::thread thread_;
  EventToJs event_to_js_ = nullptr;
  int previous_threads_ = 1;
  Result result_{};
  bool failed_ = false;
  std::string error_code_, error_message_;
};

/// [{ name, shape, data: Float32Array }] of named float32 tensors (copied), in order.
template <class Named>
Napi::Array named_tensors_to_js(Napi::Env env, const Named& named) {
  Napi::Array out = Napi::Array::New(env, named.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& [name, t] = named[i];
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", name);
    Napi::Array shape = Napi::Array::New(env, static_cast<size_t>(t.dim()));
    for (int64_t d = 0; d < t.dim(); ++d) shape.Set(static_cast<uint32_t>(d), static_cast<double>(t.size(d)));
    entry.Set("shape", shape);
    const size_t count = static_cast<size_t>(t.numel());
    Napi::Float32Array data = Napi::Float32Array::New(env, count);
    if (count > 0) std::memcpy(data.Data(), t.template data_ptr<float>(), count * sizeof(float));
    entry.Set("data", data);
    out.Set(static_cast<uint32_t>(i), entry);
  }
  return out;
}

}  // namespace mmesid::addon
