#include "addon/torch/llm_exports.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "addon/common/napi_util.h"
#include "addon/torch/llm_common.h"
#include "addon/torch/training_job.h"
#include "common/errors.h"
#include "kernels/common.h"
#include "torch/bench/memory.h"
#include "torch/io/hf_checkpoint.h"
#include "torch/io/safetensors.h"
#include "torch/models/llama.h"
#include "torch/models/llama_generate.h"
#include "torch/train/lm_trainer.h"

namespace mmesid::addon {
namespace {

Napi::Object make_handle(Napi::Env env, std::shared_ptr<LlmState> state);
// llmLoad({ files, config, dtype, device, threads }) → Promise<NativeLlm>
Napi::Value LlmLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionsReader o(info);
  const std::vector<std::string> files = o.strings("files");
  if (files.empty()) throw Napi::TypeError::New(env, "Expected at least one file for files");
  const models::LlamaConfig config = read_config(o.object("config"));
  const at::ScalarType dtype = parse_dtype(env, o.string("dtype"));
  const std::string device_name = o.string("device");
  const int threads = static_cast<int>(o.integer("threads"));
  auto state = std::make_shared<LlmState>();
  state->threads = threads > 0 ? threads : kernels::resolve_threads(0);
  return Task::start(
      env,
      [state, files, config, dtype, device_name] {
        use_threads(state->threads);
        const c10::Device device(device_name);  // throws c10::Error for a malformed name
        if (device.is_cuda() && !at::hasCUDA())
          throw std::invalid_argument("device " + device_name +
                                      " was requested but this libtorch has no CUDA support");
        const at::NoGradGuard no_grad;
        auto weights = io::load_llama_weights(files, config, dtype, device);
        state->model = std::make_unique<models::Llama>(config, std::move(weights));
      },
      [state](Napi::Env e) -> Napi::Value { return make_handle(e, state); });
}

// forward({ inputIds? | inputsEmbeds?, batch, length, attentionMask?, positionIds?, hidden?, logits? }) →
// Promise<void>
Napi::Value Forward(const Napi::CallbackInfo& info, const std::shared_ptr<LlmState>& state) {
  OptionsReader r(info);
  const int64_t batch = r.integer("batch"), length = r.integer("length");
  const auto ids = r.i32_optional("inputIds");
  const auto embeds = r.f32_optional("inputsEmbeds");
  const auto mask = r.i32_optional("attentionMask");
  const auto positions = r.i32_optional("positionIds");
  const auto hidden_out = r.f32_optional("hidden");
  const auto logits_out = r.f32_optional("logits");
  const bool training = r.boolean_or("training", false);
  return Task::start(
      r.env(),
      with_model(
          state,
          [=](models::Llama& model) {
            const at::NoGradGuard no_grad;
            const int64_t h = model.config().hidden_size;
            at::Tensor x;
            if (ids.data) {
              x = model.embed(int32_to_long(ids, {batch, length}));
            } else {
              if (static_cast<int64_t>(embeds.length) != batch * length * h)
                throw std::invalid_argument("inputsEmbeds: expected batch × length × hidden = " +
                                            std::to_string(batch * length * h) + " floats");
              x = at::from_blob(embeds.data, {batch, length, h}, at::TensorOptions().dtype(at::kFloat))
                      .to(model.device(), model.dtype());
            }
            const at::Tensor m = mask.data ? int32_to_long(mask, {batch, length}) : at::Tensor();
            const at::Tensor p = positions.data ? int32_to_long(positions, {batch, length}) : at::Tensor();
            models::LlamaRunOptions run;
            run.training = training;
            const at::Tensor hidden = model.forward(x, m, p, nullptr, run);
            if (hidden_out.data) copy_float_out(hidden, hidden_out, "hidden");
            if (logits_out.data) copy_float_out(model.logits(hidden), logits_out, "logits");
          }),
      nullptr, r.take_pins());
}

// generate({ promptIds, maxNewTokens, greedy, temperature, topK, topP, seed, stopIds }) → Promise<Int32Array>
Napi::Value Generate(const Napi::CallbackInfo& info, const std::shared_ptr<LlmState>& state) {
  OptionsReader r(info);
  const auto prompt = r.i32("promptIds");
  const auto stops = r.i32("stopIds");
  models::GenerateOptions o;
  o.max_new_tokens = r.integer("maxNewTokens");
  o.greedy = r.boolean("greedy");
  o.temperature = r.number("temperature");
  o.top_k = r.integer("topK");
  o.top_p = r.number("topP");
  o.seed = static_cast<uint64_t>(r.integer("seed"));
  std::vector<int64_t> prompt_ids(prompt.data, prompt.data + prompt.length);
  o.stop_ids.assign(stops.data, stops.data + stops.length);
  auto out = std::make_shared<std::vector<int64_t>>();
  state->cancel_generation.store(false);
  return Task::start(
      r.env(),
      with_model(state,
                 [state, o, prompt_ids, out](models::Llama& model) {
                   *out = models::generate(model, prompt_ids, o,
                                           [state] { return state->cancel_generation.load(); });
                 }),
      [out](Napi::Env env) -> Napi::Value {
        Napi::Int32Array ids = Napi::Int32Array::New(env, out->size());
        for (size_t i = 0; i < out->size(); ++i) ids[i] = static_cast<int32_t>((*out)[i]);
        return ids;
      },
      r.take_pins());
}

// _gradientProbe({ inputIds, batch, length, training, seed }) → Promise<{ loss, loraGradNorms, baseGradients
// }> Next-token cross-entropy on inputIds, one backward: which tensors received a gradient.
Napi::Value GradientProbe(const Napi::CallbackInfo& info, const std::shared_ptr<LlmState>& state) {
  OptionsReader r(info);
  const int64_t batch = r.integer("batch"), length = r.integer("length");
  const auto ids = r.i32("inputIds");
  const bool training = r.boolean("training");
  struct Out {
    double loss = 0;
    std::vector<double> norms;
    int64_t base = 0;
  };
  auto out = std::make_shared<Out>();
  return Task::start(
      r.env(),
      with_model(state,
                 [=](models::Llama& model) {
                   if (length < 2) throw std::invalid_argument("_gradientProbe: length must be >= 2");
                   const at::Tensor tokens = int32_to_long(ids, {batch, length});
                   const auto lora = model.lora_parameters();
                   for (const auto& [_, p] : lora) p.mutable_grad() = at::Tensor();
                   models::LlamaRunOptions run;
                   run.training = training;
                   const at::Tensor hidden =
                       model.forward(model.embed(tokens), at::Tensor(), at::Tensor(), nullptr, run);
                   const at::Tensor logits = model.logits(hidden.narrow(1, 0, length - 1));
                   const at::Tensor loss =
                       at::cross_entropy_loss(logits.reshape({-1, model.config().vocab_size}).to(at::kFloat),
                                              tokens.narrow(1, 1, length - 1).reshape({-1}));
                   if (loss.requires_grad()) loss.backward();
                   out->loss = loss.item<double>();
                   for (const auto& [_, p] : lora)
                     out->norms.push_back(p.grad().defined() ? p.grad().norm().item<double>() : -1.0);
                   for (const auto& [_, w] : model.base_weights())
                     if (w.requires_grad() || w.grad().defined()) ++out->base;
                   for (const auto& [_, p] : lora) p.mutable_grad() = at::Tensor();
                 }),
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("loss", out->loss);
        Napi::Float64Array norms = Napi::Float64Array::New(env, out->norms.size());
        for (size_t i = 0; i < out->norms.size(); ++i) norms[i] = out->norms[i];
        o.Set("loraGradNorms", norms);
        o.Set("baseGradients", Napi::Number::New(env, static_cast<double>(out->base)));
        return o;
      },
      r.take_pins());
}

// ---------------------------------------------------------------- LoRA language-model training

struct LmJobOptions {
  train::LmTrainOptions train;
  std::shared_ptr<LlmState> state;
};
using LmJob = TrainingJob<LmJobOptions, train::LoopResult, train::StepReport>;
std::atomic<bool> g_lm_busy{false};

// trainLora(options, onProgress) → { promise, cancel() }
Napi::Value TrainLora(const Napi::CallbackInfo& info, const std::shared_ptr<LlmState>& state) {
  Napi::Env env = info.Env();
  OptionsReader r(info);
  if (info.Length() < 2 || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "Expected a progress function");
  auto job = std::make_shared<LmJob>(env);
  train::LmTrainOptions& t = job->options.train;
  job->options.state = state;
  const auto offsets = r.f64("offsets");
  const auto tokens = r.i32("tokens");
  t.offsets.assign(offsets.data, offsets.data + offsets.length);
  t.tokens.assign(tokens.data, tokens.data + tokens.length);
  t.max_length = r.integer("maxLength");
  t.micro_batch = r.integer("microBatch");
  t.loop = read_loop_options(env, r);
  t.loop.kind = {"mmesid.llm-lora.checkpoint", 1, "LoRA fine-tuning"};
  t.run.gradient_checkpointing = r.boolean("gradientCheckpointing");
  const std::string autocast = r.string("autocast");
  t.run.autocast = autocast == "none" ? at::kFloat : parse_dtype(env, autocast);
  const int threads = state->threads;
  return LmJob::start(
      env, info[1].As<Napi::Function>(), job, g_lm_busy, "LoRA fine-tuning",
      [threads](LmJob& j) {
        const std::lock_guard<std::mutex> lock(j.options.state->mutex);
        models::Llama& model = require_model(*j.options.state);
        at::set_num_threads(threads);
        return train::train_lm_lora(
            model, j.options.train, [&j](const train::StepReport& s) { j.post(s); },
            [&j] { return j.cancelled(); });
      },
      step_to_js, loop_result_to_js);
}

Napi::Object make_handle(Napi::Env env, std::shared_ptr<LlmState> state) {
  Napi::Object handle = Napi::Object::New(env);
  attach_llm_state(handle, state);
  auto method = [&](const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> fn) {
    handle.Set(name, Napi::Function::New(
                         env, [fn](const Napi::CallbackInfo& ci) -> Napi::Value { return fn(ci); }, name));
  };
  method("forward", [state](const Napi::CallbackInfo& ci) { return Forward(ci, state); });
  method("generate", [state](const Napi::CallbackInfo& ci) { return Generate(ci, state); });
  method("cancelGeneration", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    state->cancel_generation.store(true);
    return ci.Env().Undefined();
  });
  method("_gradientProbe", [state](const Napi::CallbackInfo& ci) { return GradientProbe(ci, state); });
  method("trainLora", [state](const Napi::CallbackInfo& ci) { return TrainLora(ci, state); });
  method("info", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    Napi::Env e = ci.Env();
    const auto lock = lock_now(e, *state, "info");
    const models::Llama& m = *state->model;
    Napi::Object o = Napi::Object::New(e);
    double base = 0, lora = 0;
    for (const auto& [_, w] : m.base_weights()) base += static_cast<double>(w.numel());
    for (const auto& [_, p] : m.lora_parameters()) lora += static_cast<double>(p.numel());
    o.Set("dtype", dtype_name(m.dtype()));
    o.Set("device", m.device().str());
    o.Set("baseParameters", base);
    o.Set("loraParameters", lora);
    if (m.has_lora()) {
      Napi::Object l = Napi::Object::New(e);
      l.Set("rank", static_cast<double>(m.lora_config().rank));
      l.Set("alpha", m.lora_config().alpha);
      l.Set("dropout", m.lora_config().dropout);
      Napi::Array targets = Napi::Array::New(e, m.lora_config().target_modules.size());
      for (size_t i = 0; i < m.lora_config().target_modules.size(); ++i)
        targets.Set(i, m.lora_config().target_modules[i]);
      l.Set("targetModules", targets);
      o.Set("lora", l);
    } else {
      o.Set("lora", e.Null());
    }
    return o;
  });
  method("applyLora", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    Napi::Env e = ci.Env();
    OptionsReader o(ci);
    models::LoraConfig lora;
    lora.rank = o.integer("rank");
    lora.alpha = o.number("alpha");
    lora.dropout = o.number("dropout");
    lora.target_modules = o.strings("targetModules");
    const uint64_t seed = static_cast<uint64_t>(o.integer("seed"));
    const auto lock = lock_now(e, *state, "applyLora");
    try {
      state->model->apply_lora(lora, seed);
    } catch (...) {
      throw to_js(e, capture(std::current_exception()));
    }
    return e.Undefined();
  });
  method("loraTensors", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    Napi::Env e = ci.Env();
    const auto lock = lock_now(e, *state, "loraTensors");
    const auto params = state->model->lora_parameters();
    Napi::Array out = Napi::Array::New(e, params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      Napi::Object t = Napi::Object::New(e);
      t.Set("name", params[i].first);
      Napi::Array shape = Napi::Array::New(e, params[i].second.dim());
      for (int64_t d = 0; d < params[i].second.dim(); ++d)
        shape.Set(static_cast<uint32_t>(d), static_cast<double>(params[i].second.size(d)));
      t.Set("shape", shape);
      out.Set(i, t);
    }
    return out;
  });
  method("saveAdapter", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    Napi::Env e = ci.Env();
    const std::string path = path_argument(ci);
    return Task::start(
        e,
        with_model(state,
                   [path](models::Llama& model) {
                     if (!model.has_lora())
                       throw std::invalid_argument("saveAdapter: the model has no LoRA adapters");
                     io::save_safetensors(path, model.lora_parameters(), {{"format", "pt"}});
                   }),
        nullptr);
  });
  method("loadAdapter", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    Napi::Env e = ci.Env();
    const std::string path = path_argument(ci);
    return Task::start(
        e,
        with_model(state,
                   [path](models::Llama& model) {
                     const io::SafetensorsFile file(path);
                     std::vector<std::pair<std::string, at::Tensor>> named;
                     for (const auto& entry : file.tensors()) {
                       // PEFT writes "…lora_A.weight"; older versions may keep the adapter name
                       // ("…lora_A.default.weight").
                       std::string name = entry.name;
                       for (const char* adapter : {".lora_A.default.weight", ".lora_B.default.weight"}) {
                         const std::string a(adapter);
                         if (name.size() > a.size() && name.compare(name.size() - a.size(), a.size(), a) == 0)
                           name = name.substr(0, name.size() - a.size()) + a.substr(0, 7) + ".weight";
                       }
                       named.emplace_back(name, file.load(entry, model.dtype()).to(model.device()));
                     }
                     try {
                       model.load_lora(named);
                     } catch (const std::invalid_argument& err) {
                       throw FormatError(path, -1, err.what());
                     }
                   }),
        nullptr);
  });
  method("mergeLora", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    const auto lock = lock_now(ci.Env(), *state, "mergeLora");
    state->model->merge_lora();
    return ci.Env().Undefined();
  });
  method("dropLora", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    const auto lock = lock_now(ci.Env(), *state, "dropLora");
    state->model->drop_lora();
    return ci.Env().Undefined();
  });
  method("dispose", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    state->cancel_generation.store(true);
    return Task::start(
        ci.Env(),
        [state] {
          const std::lock_guard<std::mutex> lock(state->mutex);
          state->model.reset();
        },
        nullptr);
  });
  return handle;
}

// _safetensorsParse(bytes: Uint8Array) → { tensors: [{ name, dtype, shape, begin, end }], metadata }
// Test-only: the header validation of the reader on bytes in memory (the fuzz tests' entry point).
Napi::Value SafetensorsParse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "Expected a Uint8Array");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  io::SafetensorsHeader header;
  try {
    header = io::parse_safetensors_header(bytes.Data(), bytes.ByteLength(), bytes.ByteLength(), "<bytes>");
  } catch (...) {
    throw to_js(env, capture(std::current_exception()));
  }
  Napi::Object out = Napi::Object::New(env);
  Napi::Array tensors = Napi::Array::New(env, header.tensors.size());
  for (size_t i = 0; i < header.tensors.size(); ++i) {
    const auto& t = header.tensors[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("dtype", t.dtype);
    Napi::Array shape = Napi::Array::New(env, t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) shape.Set(d, static_cast<double>(t.shape[d]));
    o.Set("shape", shape);
    o.Set("begin", static_cast<double>(t.begin));
    o.Set("end", static_cast<double>(t.end));
    tensors.Set(i, o);
  }
  out.Set("tensors", tensors);
  Napi::Object meta = Napi::Object::New(env);
  for (const auto& [k, v] : header.metadata) meta.Set(k, v);
  out.Set("metadata", meta);
  out.Set("dataStart", static_cast<double>(header.data_start));
  return out;
}

// _llmBench({ config, seed, batch, length, rank, alpha, targetModules, fused, threads }) →
// Promise<{ step(): Promise<void>, peakBytes(): Promise<number>, parameters: number }> (bench-only):
// a random-weight Llama with LoRA adapters; step() runs one forward (last hidden states) and the
// backward of loss = mean(hidden²) on fixed random ids, with the adapters fused (the LoRA kernel) or as
// plain ATen ops (the eager baseline); peakBytes() runs one step and returns the peak tensor memory above
// what was live before it (activations, gradients, workspaces).
Napi::Value LlmBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionsReader r(info);
  const models::LlamaConfig config = read_config(r.object("config"));
  const uint64_t seed = static_cast<uint64_t>(r.integer("seed"));
  const int64_t batch = r.integer("batch"), length = r.integer("length");
  models::LoraConfig lora;
  lora.rank = r.integer("rank");
  lora.alpha = r.number("alpha");
  lora.target_modules = r.strings("targetModules");
  const bool fused = r.boolean("fused");
  auto state = std::make_shared<LlmState>();
  state->threads = static_cast<int>(r.integer("threads"));
  if (state->threads <= 0) state->threads = kernels::resolve_threads(0);
  auto ids = std::make_shared<at::Tensor>();
  return Task::start(
      env,
      [=] {
        use_threads(state->threads);
        state->model = std::make_unique<models::Llama>(config, models::random_llama_weights(config, seed));
        state->model->apply_lora(lora, seed + 1);
        // B = 0 would make ∂/∂A vanish; give B values so both adapter gradients are computed.
        const at::NoGradGuard no_grad;
        for (const auto& [name, p] : state->model->lora_parameters())
          if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.02);
        *ids = at::randint(config.vocab_size, {batch, length}, at::TensorOptions().dtype(at::kLong));
      },
      [state, ids, fused](Napi::Env e) -> Napi::Value {
        Napi::Object handle = Napi::Object::New(e);
        auto step = [state, ids, fused] {
          models::Llama& model = require_model(*state);
          use_threads(state->threads);
          models::LlamaRunOptions run;
          run.fused_lora = fused;
          const at::Tensor hidden =
              model.forward(model.embed(*ids), at::Tensor(), at::Tensor(), nullptr, run);
          hidden.pow(2).mean().backward();
          for (const auto& [_, p] : model.lora_parameters()) p.mutable_grad() = at::Tensor();
        };
        handle.Set("step", Napi::Function::New(e, [state, step](const Napi::CallbackInfo& ci) -> Napi::Value {
                     return Task::start(
                         ci.Env(),
                         [state, step] {
                           const std::lock_guard<std::mutex> lock(state->mutex);
                           step();
                         },
                         nullptr);
                   }));
        handle.Set("peakBytes",
                   Napi::Function::New(e, [state, step](const Napi::CallbackInfo& ci) -> Napi::Value {
                     auto peak = std::make_shared<int64_t>(0);
                     return Task::start(
                         ci.Env(),
                         [state, step, peak] {
                           const std::lock_guard<std::mutex> lock(state->mutex);
                           torch_bench::start_peak_measurement();
                           const int64_t before = torch_bench::live_tensor_bytes();
                           step();
                           *peak = torch_bench::peak_tensor_bytes() - before;
                         },
                         [peak](Napi::Env pe) -> Napi::Value {
                           return Napi::Number::New(pe, static_cast<double>(*peak));
                         });
                   }));
        double params = 0;
        for (const auto& [_, w] : state->model->base_weights()) params += static_cast<double>(w.numel());
        handle.Set("parameters", params);
        return handle;
      });
}

// llmWriteRandom({ config, seed, file }) → Promise<void>: a random-weight checkpoint (random_llama_weights:
// N(0, 0.02²) matrices, unit norm gains) as one safetensors file under HF names, written atomically.
Napi::Value LlmWriteRandom(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const models::LlamaConfig config = read_config(r.object("config"));
  const uint64_t seed = static_cast<uint64_t>(r.integer("seed"));
  const std::string file = r.string("file");
  return Task::start(
      info.Env(),
      [config, seed, file] {
        const auto weights = models::random_llama_weights(config, seed);
        std::vector<std::pair<std::string, at::Tensor>> ordered;
        for (const auto& spec : models::llama_tensor_table(config))
          ordered.emplace_back(spec.name, weights.at(spec.name));
        io::save_safetensors(file, ordered, {{"format", "pt"}});
      },
      nullptr);
}

// _lrMultipliers({ schedule, warmupSteps, totalSteps }) → Float64Array [totalSteps] (test-only)
Napi::Value LrMultipliers(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  train::ScheduleConfig schedule;
  schedule.type = parse_schedule(info.Env(), r.string("schedule"));
  schedule.warmup_steps = r.integer("warmupSteps");
  const int64_t total = r.integer("totalSteps");
  Napi::Float64Array out =
      Napi::Float64Array::New(info.Env(), static_cast<size_t>(std::max<int64_t>(0, total)));
  for (int64_t s = 0; s < total; ++s) out[static_cast<size_t>(s)] = train::lr_multiplier(schedule, s, total);
  return out;
}

// _clipGradNorm({ grads: Float32Array (every gradient concatenated), sizes: Float64Array, maxNorm }) →
// norm; `grads` is clipped in place (test-only).
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto grads = r.f32("grads");
  const auto sizes = r.f64("sizes");
  const double max_norm = r.number("maxNorm");
  std::vector<at::Tensor> params;
  size_t offset = 0;
  for (size_t i = 0; i < sizes.length; ++i) {
    const auto n = static_cast<int64_t>(sizes.data[i]);
    if (n < 0 || offset + static_cast<size_t>(n) > grads.length)
      throw Napi::TypeError::New(info.Env(), "sizes do not match grads");
    at::Tensor p = at::zeros({n}, at::kFloat).requires_grad_(true);
    p.mutable_grad() = at::from_blob(grads.data + offset, {n}, at::kFloat);
    params.push_back(p);
    offset += static_cast<size_t>(n);
  }
  return Napi::Number::New(info.Env(), train::clip_grad_norm(params, max_norm));
}

}  // namespace

void register_llm_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("_lrMultipliers", Napi::Function::New(env, LrMultipliers, "_lrMultipliers"));
  exports.Set("_llmBench", Napi::Function::New(env, LlmBench, "_llmBench"));
  exports.Set("llmWriteRandom", Napi::Function::New(env, LlmWriteRandom, "llmWriteRandom"));
  exports.Set("_clipGradNorm", Napi::Function::New(env, ClipGradNorm, "_clipGradNorm"));
  exports.Set("llmLoad", Napi::Function::New(env, LlmLoad, "llmLoad"));
  exports.Set("_safetensorsParse", Napi::Function::New(env, SafetensorsParse, "_safetensorsParse"));
}

}  // namespace mmesid::addon
