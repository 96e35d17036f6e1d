#include "addon/torch/llm_common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <new>
#include <stdexcept>

#include "common/errors.h"
#include "kernels/common.h"

namespace mmesid::addon {

/// The one catch ladder of this file's workers.
Failure capture(const std::exception_ptr& error) {
  Failure f;
  try {
    std::rethrow_exception(error);
  } catch (const FormatError& e) {
    f = {kCodeDataFormat, e.what(), e.file(), e.offset(), true};
  } catch (const std::invalid_argument& e) {
    f = {kCodeInvalidArgument, e.what()};
  } catch (const c10::Error& e) {
    f = {kCodeInvalidArgument, e.what_without_backtrace()};
  } catch (const std::bad_alloc&) {
    f = {kCodeOutOfMemory, "out of memory in the LLM"};
  } catch (const std::exception& e) {
    f = {kCodeNative, e.what()};
  } catch (...) {
    f = {kCodeNative, "unknown native exception"};
  }
  return f;
}

Napi::Error to_js(Napi::Env env, const Failure& f) {
  Napi::Error error = make_error(env, f.code, f.message);
  if (f.has_file) {
    error.Set("file", Napi::String::New(env, f.file));
    if (f.offset >= 0) error.Set("offset", Napi::Number::New(env, static_cast<double>(f.offset)));
  }
  return error;
}

models::Llama& require_model(LlmState& s) {
  if (!s.model) throw std::invalid_argument("the model was disposed");
  return *s.model;
}

/// Locks `s` for a synchronous call or throws ERR_MMESID_NATIVE when a worker holds it.
std::unique_lock<std::mutex> lock_now(Napi::Env env, LlmState& s, const char* what) {
  std::unique_lock<std::mutex> lock(s.mutex, std::try_to_lock);
  if (!lock.owns_lock())
    throw make_error(
        env, kCodeNative,
        std::string(what) + ": the model is busy (a forward, generate or adapter call is running)");
  if (!s.model) throw make_error(env, kCodeInvalidArgument, std::string(what) + ": the model was disposed");
  return lock;
}

at::ScalarType parse_dtype(Napi::Env env, const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw Napi::TypeError::New(
      env, "Expected \"float32\", \"bfloat16\" or \"float16\" for dtype but received \"" + name + "\"");
}

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      return "other";
  }
}

models::LlamaConfig read_config(OptionsReader c) {
  models::LlamaConfig config;
  config.hidden_size = c.integer("hiddenSize");
  config.intermediate_size = c.integer("intermediateSize");
  config.num_hidden_layers = c.integer("numHiddenLayers");
  config.num_attention_heads = c.integer("numAttentionHeads");
  config.num_key_value_heads = c.integer("numKeyValueHeads");
  config.head_dim = c.integer("headDim");
  config.vocab_size = c.integer("vocabSize");
  config.max_position_embeddings = c.integer("maxPositionEmbeddings");
  config.rms_norm_eps = c.number("rmsNormEps");
  config.rope_theta = c.number("ropeTheta");
  config.tie_word_embeddings = c.boolean("tieWordEmbeddings");
  config.attention_bias = c.boolean("attentionBias");
  config.mlp_bias = c.boolean("mlpBias");
  OptionsReader s = c.object("ropeScaling");
  config.rope_scaling.type = s.string("type");
  config.rope_scaling.factor = s.number("factor");
  config.rope_scaling.low_freq_factor = s.number("lowFreqFactor");
  config.rope_scaling.high_freq_factor = s.number("highFreqFactor");
  config.rope_scaling.original_max_position_embeddings = s.integer("originalMaxPositionEmbeddings");
  return config;
}

/// Sets ATen's intra-op threads for this call (a process-wide setting; each call states its own).
void use_threads(int threads) {
  if (threads > 0 && at::get_num_threads() != threads) at::set_num_threads(threads);
}

at::Tensor int32_to_long(const Pinned<int32_t>& p, at::IntArrayRef shape) {
  return at::from_blob(p.data, shape, at::TensorOptions().dtype(at::kInt)).to(at::kLong);
}

void copy_float_out(const at::Tensor& source, const Pinned<float>& target, const char* name) {
  const at::Tensor c = source.detach().to(at::kFloat).cpu().contiguous();
  if (static_cast<size_t>(c.numel()) != target.length)
    throw std::invalid_argument(std::string(name) + ": expected a buffer of " + std::to_string(c.numel()) +
                                " floats but received " + std::to_string(target.length));
  std::memcpy(target.data, c.data_ptr<float>(), target.length * sizeof(float));
}

/// A worker body running `fn(model)` while holding the model's lock, with the model's thread count.
Task::Work with_model(std::shared_ptr<LlmState> state, std::function<void(models::Llama&)> fn) {
  return [state = std::move(state), fn = std::move(fn)] {
    const std::lock_guard<std::mutex> lock(state->mutex);
    models::Llama& model = require_model(*state);
    use_threads(state->threads);
    fn(model);
  };
}

std::string path_argument(const Napi::CallbackInfo& ci) {
  if (ci.Length() < 1 || !ci[0].IsString()) throw Napi::TypeError::New(ci.Env(), "Expected a file path");
  return ci[0].As<Napi::String>().Utf8Value();
}

Napi::Object step_to_js(Napi::Env env, const train::StepReport& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", static_cast<double>(s.step));
  o.Set("totalSteps", static_cast<double>(s.total_steps));
  o.Set("loss", s.loss);
  o.Set("lr", s.lr);
  o.Set("gradNorm", s.grad_norm);
  o.Set("skipped", s.skipped);
  o.Set("seconds", s.seconds);
  return o;
}

Napi::Value loop_result_to_js(Napi::Env env, const train::LoopResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("steps", static_cast<double>(r.steps));
  o.Set("resumedFrom", static_cast<double>(r.resumed_from));
  Napi::Float64Array losses = Napi::Float64Array::New(env, r.losses.size());
  for (size_t i = 0; i < r.losses.size(); ++i) losses[i] = r.losses[i];
  o.Set("losses", losses);
  return o;
}

train::LrSchedule parse_schedule(Napi::Env env, const std::string& name) {
  if (name == "constant") return train::LrSchedule::Constant;
  if (name == "linear") return train::LrSchedule::Linear;
  if (name == "cosine") return train::LrSchedule::Cosine;
  throw Napi::TypeError::New(
      env, "Expected \"constant\", \"linear\" or \"cosine\" for schedule but received \"" + name + "\"");
}

/// Reads the step loop's options (shared by every LLM trainer's export).
train::LoopOptions read_loop_options(Napi::Env env, OptionsReader& r) {
  train::LoopOptions loop;
  loop.total_steps = r.integer("totalSteps");
  loop.accumulation_steps = r.integer("accumulationSteps");
  loop.adam.lr = r.number("lr");
  loop.adam.weight_decay = r.number("weightDecay");
  loop.adam.beta1 = r.number("beta1");
  loop.adam.beta2 = r.number("beta2");
  loop.adam.eps = r.number("eps");
  loop.schedule.type = parse_schedule(env, r.string("schedule"));
  loop.schedule.warmup_steps = r.integer("warmupSteps");
  loop.max_grad_norm = r.number("maxGradNorm");
  loop.fp16_loss_scaling = r.boolean("fp16LossScaling");
  loop.seed = static_cast<uint64_t>(r.integer("seed"));
  loop.checkpoint_path = r.string("checkpointPath");
  loop.checkpoint_every = r.integer("checkpointEvery");
  loop.resume = r.boolean("resume");
  loop.fingerprint = r.string("fingerprint");
  return loop;
}

std::shared_ptr<LlmState> llm_state_of(Napi::Value handle) {
  if (!handle.IsObject()) throw Napi::TypeError::New(handle.Env(), "Expected an LLM handle (from llmLoad)");
  const Napi::Value v = handle.As<Napi::Object>().Get("_state");
  if (!v.IsExternal()) throw Napi::TypeError::New(handle.Env(), "Expected an LLM handle (from llmLoad)");
  return *v.As<Napi::External<std::shared_ptr<LlmState>>>().Data();
}

void attach_llm_state(Napi::Object handle, const std::shared_ptr<LlmState>& state) {
  auto* owned = new std::shared_ptr<LlmState>(state);
  handle.Set("_state", Napi::External<std::shared_ptr<LlmState>>::New(
                           handle.Env(), owned, [](Napi::Env, std::shared_ptr<LlmState>* p) { delete p; }));
}

}  // namespace mmesid::addon
