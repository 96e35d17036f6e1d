#include "tokenizer_exports.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "addon/common/napi_util.h"
#include "addon/torch/training_job.h"
#include "kernels/common.h"
#include "torch/models/mm_rqvae.h"
#include "torch/train/tokenizer_trainer.h"

namespace mmesid::addon {
namespace {

using Named = std::vector<std::pair<std::string, at::Tensor>>;

std::string string_field(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("Expected a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

int64_t integer_field(Napi::Object o, const std::string& key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), "Expected an integer for " + key);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d)
    throw Napi::TypeError::New(o.Env(), "Expected an integer for " + key);
  return static_cast<int64_t>(d);
}

double number_or(Napi::Object o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

std::vector<int64_t> integers(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray())
    throw Napi::TypeError::New(o.Env(), std::string("Expected an array of integers for ") + key);
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value item = a.Get(i);
    const double d = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : 0.5;
    if (!std::isfinite(d) || std::floor(d) != d)
      throw Napi::TypeError::New(o.Env(), std::string("Expected an array of integers for ") + key);
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

/// [{ name, shape, data: Float32Array }] → named tensors (copied).
Named named_tensors(Napi::Env env, Napi::Value list, const char* key) {
  if (!list.IsArray()) throw Napi::TypeError::New(env, std::string("Expected an array for ") + key);
  Napi::Array entries = list.As<Napi::Array>();
  Named named;
  for (uint32_t i = 0; i < entries.Length(); ++i) {
    const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
    Napi::Value e = entries.Get(i);
    if (!e.IsObject()) throw Napi::TypeError::New(env, "Expected an object for " + where);
    Napi::Object o = e.As<Napi::Object>();
    Napi::Value name = o.Get("name"), data = o.Get("data");
    if (!name.IsString() || !data.IsTypedArray() ||
        data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw Napi::TypeError::New(
          env, "Expected { name: string, shape: number[], data: Float32Array } for " + where);
    }
    const std::vector<int64_t> sizes = integers(o, "shape");
    int64_t numel = 1;
    for (int64_t s : sizes) {
      if (s < 0) throw Napi::TypeError::New(env, "Expected non-negative integers in " + where + ".shape");
      numel *= s;
    }
    Napi::Float32Array values = data.As<Napi::Float32Array>();
    if (static_cast<int64_t>(values.ElementLength()) != numel)
      throw Napi::TypeError::New(env, where + ".data length does not match its shape");
    named.emplace_back(name.As<Napi::String>().Utf8Value(),
                       at::from_blob(values.Data(), sizes, at::TensorOptions().dtype(at::kFloat)).clone());
  }
  return named;
}

/// The architecture fields of a manifest: levels, codebookSize, codeDim, modalities [{ name, inputDim, hidden
/// }].
models::MmRqvaeConfig manifest_config(Napi::Object o) {
  Napi::Env env = o.Env();
  models::MmRqvaeConfig c;
  c.levels = integer_field(o, "levels");
  c.codes = integer_field(o, "codebookSize");
  c.code_dim = integer_field(o, "codeDim");
  Napi::Value mods = o.Get("modalities");
  if (!mods.IsArray()) throw Napi::TypeError::New(env, "Expected an array for modalities");
  Napi::Array a = mods.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject())
      throw Napi::TypeError::New(env, "Expected an object for modalities[" + std::to_string(i) + "]");
    Napi::Object m = v.As<Napi::Object>();
    c.modalities.push_back({string_field(m, "name"), integer_field(m, "inputDim"), integers(m, "hidden")});
  }
  return c;
}

/// Builds a model from a manifest's fields and weights on the main thread. Malformed arguments throw a
/// TypeError; weights that do not fit the architecture give an error message instead (the caller rejects
/// its promise with ERR_MMESID_INVALID_ARGUMENT, as for any other bad input of a Promise-returning export).
std::pair<std::shared_ptr<const models::MmRqvae>, std::string> build_model(Napi::Env env, Napi::Object o) {
  const models::MmRqvaeConfig config = manifest_config(o);
  const Named named = named_tensors(env, o.Get("weights"), "weights");
  try {
    auto model = std::make_shared<models::MmRqvae>(config);
    model->assign(named);
    return {std::move(model), std::string()};
  } catch (const std::invalid_argument& e) {
    return {nullptr, e.what()};
  } catch (const c10::Error& e) {
    return {nullptr, e.what_without_backtrace()};
  }
}

Napi::Value rejected(Napi::Env env, const std::string& message) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(make_error(env, kCodeInvalidArgument, message).Value());
  return deferred.Promise();
}

// ---------------------------------------------------------------- training (own thread + TSFN)

/// One training per process: ATen's default generator (seeded by the run) is process-wide.
std::atomic<bool> g_tokenizer_busy{false};

struct TokenizerEvent {
  bool is_epoch = false;
  train::TokenizerStep step{};
  train::TokenizerEpoch epoch{};
};

using TokenizerJob = TrainingJob<train::TokenizerTrainOptions, train::TokenizerTrainResult, TokenizerEvent>;

Napi::Object epoch_object(Napi::Env env, const train::TokenizerEpoch& e) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("epoch", Napi::Number::New(env, static_cast<double>(e.epoch)));
  out.Set("loss", Napi::Number::New(env, e.loss));
  out.Set("recon", Napi::Number::New(env, e.recon));
  out.Set("align", Napi::Number::New(env, e.align));
  out.Set("rq", Napi::Number::New(env, e.rq));
  out.Set("seconds", Napi::Number::New(env, e.seconds));
  out.Set("improved", Napi::Boolean::New(env, e.improved));
  return out;
}

Napi::Object tokenizer_event_to_js(Napi::Env env, const TokenizerEvent& event) {
  if (event.is_epoch) {
    Napi::Object out = epoch_object(env, event.epoch);
    out.Set("kind", "epoch");
    return out;
  }
  const train::TokenizerStep& s = event.step;
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", "step");
  out.Set("epoch", Napi::Number::New(env, static_cast<double>(s.epoch)));
  out.Set("step", Napi::Number::New(env, static_cast<double>(s.step)));
  out.Set("steps", Napi::Number::New(env, static_cast<double>(s.steps)));
  out.Set("loss", Napi::Number::New(env, s.loss));
  out.Set("recon", Napi::Number::New(env, s.recon));
  out.Set("align", Napi::Number::New(env, s.align));
  out.Set("rq", Napi::Number::New(env, s.rq));
  return out;
}

Napi::Float32Array float_array(Napi::Env env, const float* data, size_t count) {
  Napi::Float32Array a = Napi::Float32Array::New(env, count);
  if (count > 0) std::memcpy(a.Data(), data, count * sizeof(float));
  return a;
}

/// The resolved value of a finished run (typings: NativeRqvaeResult).
Napi::Value tokenizer_result_to_js(Napi::Env env, const train::TokenizerTrainResult& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("parameters", named_tensors_to_js(env, r.parameters));
  Napi::Array epochs = Napi::Array::New(env, r.epochs.size());
  for (size_t i = 0; i < r.epochs.size(); ++i)
    epochs.Set(static_cast<uint32_t>(i), epoch_object(env, r.epochs[i]));
  out.Set("epochs", epochs);
  out.Set("bestEpoch", Napi::Number::New(env, static_cast<double>(r.best_epoch)));
  out.Set("stoppedEarly", Napi::Boolean::New(env, r.stopped_early));
  out.Set("resumedFromEpoch", Napi::Number::New(env, static_cast<double>(r.resumed_from_epoch)));
  out.Set("numItems", Napi::Number::New(env, static_cast<double>(r.num_items)));
  Napi::Array mods = Napi::Array::New(env, r.modalities.size());
  for (size_t i = 0; i < r.modalities.size(); ++i) {
    const train::TokenizerModalityResult& m = r.modalities[i];
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", m.name);
    Napi::Int32Array codes = Napi::Int32Array::New(env, m.codes.size());
    if (!m.codes.empty()) std::memcpy(codes.Data(), m.codes.data(), m.codes.size() * sizeof(int32_t));
    entry.Set("codes", codes);
    entry.Set("quantized", float_array(env, m.quantized.data(), m.quantized.size()));
    entry.Set("reconMse", Napi::Number::New(env, m.recon_mse));
    mods.Set(static_cast<uint32_t>(i), entry);
  }
  out.Set("modalities", mods);
  return out;
}

train::TokenizerTrainResult run_training(TokenizerJob& job) {
  train::TokenizerCallbacks cb;
  cb.cancelled = [&job] { return job.cancelled(); };
  cb.on_step = [&job](const train::TokenizerStep& s) { job.post(TokenizerEvent{false, s, {}}); };
  cb.on_epoch = [&job](const train::TokenizerEpoch& e) { job.post(TokenizerEvent{true, {}, e}); };
  return train::train_tokenizer(job.options, cb);
}

/// tokenizerTrain(options, onProgress) → { promise, cancel() } (typings: NativeRqvaeTrainOptions).
Napi::Value TokenizerTrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionsReader r(info);
  if (info.Length() < 2 || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "Expected a progress function");
  Napi::Object o = info[0].As<Napi::Object>();
  auto job = std::make_shared<TokenizerJob>(env);
  train::TokenizerTrainOptions& t = job->options;
  Napi::Value tables = o.Get("tables");
  if (!tables.IsObject()) throw Napi::TypeError::New(env, "Expected an object for tables");
  for (const char* name : {"collab", "text", "visual"}) {
    Napi::Value v = tables.As<Napi::Object>().Get(name);
    if (v.IsUndefined() || v.IsNull()) continue;
    const std::string where = std::string("tables.") + name;
    if (!v.IsObject()) throw Napi::TypeError::New(env, "Expected an object for " + where);
    Napi::Object table = v.As<Napi::Object>();
    Napi::Value data = table.Get("data");
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, "Expected a Float32Array for " + where + ".data");
    train::TokenizerTable tt;
    tt.name = name;
    tt.rows = integer_field(table, "rows");
    tt.dim = integer_field(table, "dim");
    Napi::Float32Array values = data.As<Napi::Float32Array>();
    if (tt.rows < 0 || tt.dim < 0 || static_cast<int64_t>(values.ElementLength()) != tt.rows * tt.dim)
      throw Napi::TypeError::New(env, "Expected " + where + ".data of rows × dim values");
    tt.data.assign(values.Data(), values.Data() + values.ElementLength());
    t.tables.push_back(std::move(tt));
  }
  t.hidden = integers(o, "hidden");
  t.levels = r.integer("levels");
  t.codes = r.integer("codes");
  t.code_dim = r.integer("codeDim");
  t.loss.recon = string_field(o, "recon");
  t.loss.align = string_field(o, "align");
  t.loss.recon_weight = r.number("reconWeight");
  t.loss.align_weight = r.number("alignWeight");
  t.loss.beta = r.number("beta");
  t.loss.temperature = r.number("temperature");
  t.loss.infonce_symmetric = r.boolean_or("infonceSymmetric", false);
  t.loss.mmd_alpha = number_or(o, "mmdAlpha", 0.5);
  if (o.Has("residualGradient")) t.loss.residual_gradient = string_field(o, "residualGradient");
  t.loss.sinkhorn_levels = integers(o, "sinkhornLevels");
  t.loss.sinkhorn_epsilon = r.number("sinkhornEpsilon");
  t.loss.sinkhorn_iterations = r.integer("sinkhornIterations");
  t.kmeans_init = string_field(o, "kmeansInit");
  t.kmeans_iterations = static_cast<int64_t>(number_or(o, "kmeansIterations", 20));
  t.lr = r.number("lr");
  t.weight_decay = r.number("weightDecay");
  t.batch_size = r.integer("batchSize");
  t.epochs = r.integer("epochs");
  t.patience = r.integer("patience");
  t.seed = static_cast<uint64_t>(r.integer("seed"));
  t.threads = static_cast<int>(kernels::resolve_threads(static_cast<int>(r.integer("threads"))));
  Napi::Value checkpoint = o.Get("checkpoint");
  if (!checkpoint.IsUndefined() && !checkpoint.IsNull()) {
    if (!checkpoint.IsString()) throw Napi::TypeError::New(env, "Expected a string for checkpoint");
    t.checkpoint = checkpoint.As<Napi::String>().Utf8Value();
  }
  t.resume = r.boolean_or("resume", false);
  return TokenizerJob::start(env, info[1].As<Napi::Function>(), job, g_tokenizer_busy, "tokenizer",
                             run_training, tokenizer_event_to_js, tokenizer_result_to_js);
}

// ---------------------------------------------------------------- inference and probes

/// tokenizerEncode({ weights, levels, codebookSize, codeDim, modalities, modality, x, n, codes }) →
/// Promise<0>: codes int32 [n, L] of x float32 [n, inputDim] by the libtorch inference path.
Napi::Value TokenizerEncode(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  Napi::Object o = info[0].As<Napi::Object>();
  const auto built = build_model(r.env(), o);
  const std::shared_ptr<const models::MmRqvae> model = built.first;
  if (!model) return rejected(r.env(), built.second);
  const std::string modality = string_field(o, "modality");
  const int64_t m = model->modality_index(modality);
  if (m < 0) return rejected(r.env(), "tokenizer: the weights have no modality \"" + modality + "\"");
  const auto x = r.f32("x");
  const auto codes = r.i32("codes");
  const int64_t n = r.integer("n");
  const int64_t dim = model->config().modalities[m].input_dim, levels = model->config().levels;
  if (n < 0 || x.length != static_cast<size_t>(n * dim) || codes.length != static_cast<size_t>(n * levels))
    throw Napi::TypeError::New(r.env(), "Expected x [n, inputDim] and codes [n, levels]");
  return PromiseWorker::start(
      r.env(),
      [model, m, x, codes, n, dim]() {
        if (n == 0) return 0.0;
        const at::Tensor tx = at::from_blob(x.data, {n, dim}, at::TensorOptions().dtype(at::kFloat));
        const at::Tensor c = model->encode(m, tx).contiguous();
        std::memcpy(codes.data, c.data_ptr<int32_t>(), codes.length * sizeof(int32_t));
        return 0.0;
      },
      r.take_pins());
}

/// Test-only: _tokenizerSinkhorn({ distances [rows, cols], rows, cols, epsilon, iterations, codes [rows] }).
Napi::Value TokenizerSinkhorn(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto distances = r.f32("distances");
  const auto codes = r.i32("codes");
  const int64_t rows = r.integer("rows"), cols = r.integer("cols"), iterations = r.integer("iterations");
  const double epsilon = r.number("epsilon");
  if (rows < 1 || cols < 1 || distances.length != static_cast<size_t>(rows * cols) ||
      codes.length != static_cast<size_t>(rows))
    throw Napi::TypeError::New(r.env(), "Expected distances [rows, cols] and codes [rows]");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        const at::Tensor d =
            at::from_blob(distances.data, {rows, cols}, at::TensorOptions().dtype(at::kFloat));
        const at::Tensor c = models::sinkhorn_assign(d, epsilon, iterations).to(at::kInt).contiguous();
        std::memcpy(codes.data, c.data_ptr<int32_t>(), codes.length * sizeof(int32_t));
        return 0.0;
      },
      r.take_pins());
}

/// Test-only: _tokenizerRqProbe({ weights, manifest fields, modality, x, n, beta, frozen?, parameter?, codes,
/// grad }) → Promise<rq loss>. The modality's RQ loss of x (greedy codes, or the frozen ones), its codes
/// (written into `codes`) and ∂rq/∂parameter (default "<m>.encoder.0.weight", written into `grad`).
Napi::Value TokenizerRqProbe(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  Napi::Object o = info[0].As<Napi::Object>();
  const auto built = build_model(r.env(), o);
  const std::shared_ptr<const models::MmRqvae> model = built.first;
  if (!model) return rejected(r.env(), built.second);
  const std::string modality = string_field(o, "modality");
  const int64_t m = model->modality_index(modality);
  if (m < 0) return rejected(r.env(), "tokenizer: the weights have no modality \"" + modality + "\"");
  const auto x = r.f32("x");
  const auto frozen = r.i32_optional("frozen");
  const auto codes = r.i32("codes");
  const auto grad = r.f32("grad");
  const int64_t n = r.integer("n");
  models::MmRqvaeLossConfig loss;
  loss.beta = r.number("beta");
  if (o.Has("residualGradient")) loss.residual_gradient = string_field(o, "residualGradient");
  const int64_t dim = model->config().modalities[m].input_dim, levels = model->config().levels;
  Napi::Value parameter = o.Get("parameter");
  const std::string weight = parameter.IsString() ? parameter.As<Napi::String>().Utf8Value()
                                                  : model->config().modalities[m].name + ".encoder.0.weight";
  at::Tensor w;
  for (const auto& [name, p] : model->parameters()) {
    if (name == weight) w = p;
  }
  if (n < 2 || x.length != static_cast<size_t>(n * dim) || codes.length != static_cast<size_t>(n * levels) ||
      (frozen.data && frozen.length != codes.length) || !w.defined() ||
      grad.length != static_cast<size_t>(w.numel()))
    throw Napi::TypeError::New(r.env(),
                               "Expected x [n, inputDim], codes/frozen [n, levels], grad of the parameter");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        const c10::AutoGradMode grad_mode(true);
        const at::Tensor tx = at::from_blob(x.data, {n, dim}, at::TensorOptions().dtype(at::kFloat));
        at::Tensor fixed;
        if (frozen.data) fixed = at::from_blob(frozen.data, {n, levels}, at::TensorOptions().dtype(at::kInt));
        if (w.grad().defined()) w.mutable_grad().zero_();
        const models::MmRqvaeQuantized q = model->quantize(m, model->encode_z(m, tx), loss, false, fixed);
        torch::autograd::backward({q.rq_loss});
        const at::Tensor c = q.codes.to(at::kInt).contiguous();
        std::memcpy(codes.data, c.data_ptr<int32_t>(), codes.length * sizeof(int32_t));
        const at::Tensor g = w.grad().contiguous();
        std::memcpy(grad.data, g.data_ptr<float>(), grad.length * sizeof(float));
        return q.rq_loss.item<double>();
      },
      r.take_pins());
}

/// Test-only: _tokenizerKmeans({ x [n, dim], n, dim, k, iterations, constrained, seed, centroids [k, dim],
/// assignment [n] }) → Promise<0>; k-means as the trainer's initialisation runs it (sampler seeded by seed).
Napi::Value TokenizerKmeans(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x"), centroids = r.f32("centroids");
  const auto assignment = r.i32("assignment");
  const int64_t n = r.integer("n"), dim = r.integer("dim"), k = r.integer("k"),
                iterations = r.integer("iterations");
  const bool constrained = r.boolean("constrained");
  const uint64_t seed = static_cast<uint64_t>(r.integer("seed"));
  if (n < 1 || dim < 1 || k < 1 || x.length != static_cast<size_t>(n * dim) ||
      centroids.length != static_cast<size_t>(k * dim) || assignment.length != static_cast<size_t>(n))
    throw Napi::TypeError::New(r.env(), "Expected x [n, dim], centroids [k, dim] and assignment [n]");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        std::mt19937_64 rng(seed);
        const at::Tensor tx = at::from_blob(x.data, {n, dim}, at::TensorOptions().dtype(at::kFloat));
        const auto result = train::kmeans(tx, k, iterations, constrained, rng);
        const at::Tensor c = result.first.contiguous(), a = result.second.to(at::kInt).contiguous();
        std::memcpy(centroids.data, c.data_ptr<float>(), centroids.length * sizeof(float));
        std::memcpy(assignment.data, a.data_ptr<int32_t>(), assignment.length * sizeof(int32_t));
        return 0.0;
      },
      r.take_pins());
}

}  // namespace

void register_tokenizer_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenizerTrain", Napi::Function::New(env, TokenizerTrain, "tokenizerTrain"));
  exports.Set("tokenizerEncode", Napi::Function::New(env, TokenizerEncode, "tokenizerEncode"));
  exports.Set("_tokenizerSinkhorn", Napi::Function::New(env, TokenizerSinkhorn, "_tokenizerSinkhorn"));
  exports.Set("_tokenizerRqProbe", Napi::Function::New(env, TokenizerRqProbe, "_tokenizerRqProbe"));
  exports.Set("_tokenizerKmeans", Napi::Function::New(env, TokenizerKmeans, "_tokenizerKmeans"));
}

}  // namespace mmesid::addon
