// mmesid_torch.node: the libtorch side (for now: the kernels as autograd ops, so the numbers that
// model code will see can be checked against the core addon). Argument conversion and workers only.
//
// The exports take the same options objects as mmesid_core's, so every case of the kernel tests can be
// replayed through the autograd ops: forward through the op, `backward()` through libtorch's engine,
// gradients copied into the caller's buffers.
#include <napi.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/generated/variable_factories.h>
#include <torch/version.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "addon/common/napi_util.h"
#include "addon/torch/llm_exports.h"
#include "addon/torch/mmesid_exports.h"
#include "addon/torch/tokenize_bench_exports.h"
#include "addon/torch/tokenizer_exports.h"
#include "addon/torch/training_job.h"
#include "gemm.h"
#include "torch/bench/composites.h"
#include "torch/bench/sasrec_bench.h"
#include "torch/ops/kernel_ops.h"
#include "torch/train/sasrec_trainer.h"

namespace mmesid::addon {
namespace {

namespace k = mmesid::kernels;

/// A float32 tensor viewing JS memory (no copy); the worker's pins keep that memory alive.
at::Tensor view(const Pinned<float>& buffer, at::IntArrayRef shape, bool requires_grad = false) {
  at::Tensor t = at::from_blob(buffer.data, shape, at::TensorOptions().dtype(at::kFloat));
  if (requires_grad) t = t.detach().requires_grad_(true);
  return t;
}

void copy_out(const at::Tensor& source, const Pinned<float>& target, const char* name) {
  if (!target.data) return;
  if (!source.defined()) throw std::runtime_error(std::string("no gradient was produced for ") + name);
  const at::Tensor c = source.contiguous();
  if (static_cast<size_t>(c.numel()) != target.length) {
    throw std::runtime_error(std::string("gradient size mismatch for ") + name);
  }
  std::memcpy(target.data, c.data_ptr<float>(), target.length * sizeof(float));
}

Napi::Value RqEncode(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x");
  const auto codebooks = r.f32("codebooks");
  const auto codes = r.i32("codes");
  const auto sq_error = r.f32_optional("sqError");
  const int64_t n = r.integer("n"), dim = r.integer("dim"), levels = r.integer("levels");
  const int64_t size = r.integer("codebookSize"), beam = r.integer("beam");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        auto [c, e] = torch_ops::rq_encode(view(x, {n, dim}), view(codebooks, {levels, size, dim}), beam,
                                           sq_error.data != nullptr);
        const at::Tensor cc = c.contiguous();
        if (static_cast<size_t>(cc.numel()) != codes.length) throw std::runtime_error("codes size mismatch");
        std::memcpy(codes.data, cc.data_ptr<int32_t>(), codes.length * sizeof(int32_t));
        copy_out(e, sq_error, "sqError");
        return 0.0;
      },
      r.take_pins());
}

Napi::Value MmdGaussian(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x"), y = r.f32("y");
  const auto grad_x = r.f32_optional("gradX"), grad_y = r.f32_optional("gradY");
  const int64_t n = r.integer("n"), dim = r.integer("dim");
  k::GaussianBandwidth bandwidth;
  const std::vector<double> sigmas = r.numbers_optional("sigmas");
  bandwidth.relative = sigmas.empty();
  bandwidth.values = sigmas.empty() ? r.numbers_optional("alphas") : sigmas;
  return PromiseWorker::start(
      r.env(),
      [=]() {
        const bool grads = grad_x.data != nullptr;
        at::Tensor tx = view(x, {n, dim}, grads), ty = view(y, {n, dim}, grads);
        at::Tensor loss = torch_ops::mmd_gaussian(tx, ty, bandwidth);
        if (grads) {
          torch::autograd::backward({loss});
          copy_out(tx.grad(), grad_x, "gradX");
          copy_out(ty.grad(), grad_y, "gradY");
        }
        return loss.item<double>();
      },
      r.take_pins());
}

Napi::Value InfoNce(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto a = r.f32("a"), b = r.f32("b");
  const auto grad_a = r.f32_optional("gradA"), grad_b = r.f32_optional("gradB");
  const int64_t n = r.integer("n"), dim = r.integer("dim");
  const double temperature = r.number("temperature");
  const bool symmetric = r.boolean("symmetric");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        const bool grads = grad_a.data != nullptr;
        at::Tensor ta = view(a, {n, dim}, grads), tb = view(b, {n, dim}, grads);
        at::Tensor loss = torch_ops::info_nce(ta, tb, temperature, symmetric);
        if (grads) {
          torch::autograd::backward({loss});
          copy_out(ta.grad(), grad_a, "gradA");
          copy_out(tb.grad(), grad_b, "gradB");
        }
        return loss.item<double>();
      },
      r.take_pins());
}

/// Forward (and, when gradY is given, backward) of the LoRA op; `y` is written when given. With xLora
/// the op gets it as x_lora and gradXLora receives its gradient.
Napi::Value LoraLinearImpl(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x"), weight = r.f32("weight"), bias = r.f32_optional("bias");
  const auto x_lora = r.f32_optional("xLora");
  const auto lora_a = r.f32("loraA"), lora_b = r.f32("loraB");
  const auto y = r.f32_optional("y"), grad_y = r.f32_optional("gradY");
  const auto grad_x = r.f32_optional("gradX"), grad_a = r.f32_optional("gradA");
  const auto grad_x_lora = r.f32_optional("gradXLora");
  const auto grad_b = r.f32_optional("gradB"), grad_bias = r.f32_optional("gradBias");
  const int64_t rows = r.integer("rows"), in_dim = r.integer("inDim"), out_dim = r.integer("outDim");
  const int64_t rank = r.integer("rank");
  const double scale = r.number("scale");
  // The views below take their shapes from rows/inDim, so a short xLora would be read out of bounds.
  if (x_lora.data && x_lora.length != static_cast<size_t>(rows * in_dim)) {
    throw Napi::RangeError::New(r.env(), "Expected " + std::to_string(rows * in_dim) +
                                             " elements in xLora but received " +
                                             std::to_string(x_lora.length));
  }
  if (grad_x_lora.data && !x_lora.data) throw Napi::TypeError::New(r.env(), "gradXLora needs xLora");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        at::Tensor tx = view(x, {rows, in_dim}, grad_x.data != nullptr);
        at::Tensor tw = view(weight, {out_dim, in_dim});
        c10::optional<at::Tensor> tbias;
        if (bias.data) tbias = view(bias, {out_dim}, grad_bias.data != nullptr);
        c10::optional<at::Tensor> tx_lora;
        if (x_lora.data) tx_lora = view(x_lora, {rows, in_dim}, grad_x_lora.data != nullptr);
        at::Tensor ta = view(lora_a, {rank, in_dim}, grad_a.data != nullptr);
        at::Tensor tb = view(lora_b, {out_dim, rank}, grad_b.data != nullptr);
        at::Tensor out = torch_ops::lora_linear(tx, tw, tbias, ta, tb, scale, tx_lora);
        copy_out(out.detach(), y, "y");
        if (grad_y.data && out.requires_grad()) {
          torch::autograd::backward({out}, {view(grad_y, {rows, out_dim})});
          copy_out(tx.grad(), grad_x, "gradX");
          if (tx_lora) copy_out(tx_lora->grad(), grad_x_lora, "gradXLora");
          copy_out(ta.grad(), grad_a, "gradA");
          copy_out(tb.grad(), grad_b, "gradB");
          if (tbias) copy_out(tbias->grad(), grad_bias, "gradBias");
        }
        return 0.0;
      },
      r.take_pins());
}

/// Bench-only: runs one libtorch eager composite (the same-run baseline of `npm run bench`).
/// options.op: "rqGreedy" | "mmd" | "infoNce" | "linear" | "lora" | "sasrecTrain" | "sasrecEvaluate",
/// plus that op's buffers.
Napi::Value Composite(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  Napi::Value op_value = info[0].As<Napi::Object>().Get("op");
  if (!op_value.IsString()) throw Napi::TypeError::New(r.env(), "Expected a string for op");
  const std::string op = op_value.As<Napi::String>().Utf8Value();
  namespace b = mmesid::torch_bench;
  if (op == "rqGreedy") {
    const auto x = r.f32("x"), books = r.f32("codebooks");
    const auto codes = r.i32("codes");
    const int64_t n = r.integer("n"), dim = r.integer("dim"), levels = r.integer("levels");
    const int64_t size = r.integer("codebookSize");
    return PromiseWorker::start(
        r.env(),
        [=]() {
          b::rq_greedy(x.data, books.data, n, dim, levels, size, codes.data);
          return 0.0;
        },
        r.take_pins());
  }
  if (op == "mmd") {
    const auto x = r.f32("x"), y = r.f32("y"), gx = r.f32("gradX"), gy = r.f32("gradY");
    const int64_t n = r.integer("n"), dim = r.integer("dim");
    const std::vector<double> alphas = r.numbers_optional("alphas");
    return PromiseWorker::start(
        r.env(), [=]() { return b::mmd_forward_backward(x.data, y.data, n, dim, alphas, gx.data, gy.data); },
        r.take_pins());
  }
  if (op == "infoNce") {
    const auto a = r.f32("a"), bb = r.f32("b"), ga = r.f32("gradA"), gb = r.f32("gradB");
    const int64_t n = r.integer("n"), dim = r.integer("dim");
    const double temperature = r.number("temperature");
    const bool symmetric = r.boolean("symmetric");
    return PromiseWorker::start(
        r.env(),
        [=]() {
          return b::info_nce_forward_backward(a.data, bb.data, n, dim, temperature, symmetric, ga.data,
                                              gb.data);
        },
        r.take_pins());
  }
  if (op == "linear" || op == "lora") {
    const auto x = r.f32("x"), w = r.f32("weight"), gy = r.f32("gradY"), gx = r.f32("gradX");
    const int64_t rows = r.integer("rows"), in_dim = r.integer("inDim"), out_dim = r.integer("outDim");
    if (op == "linear") {
      return PromiseWorker::start(
          r.env(),
          [=]() {
            b::linear_forward_backward(x.data, w.data, gy.data, rows, in_dim, out_dim, gx.data);
            return 0.0;
          },
          r.take_pins());
    }
    const auto la = r.f32("loraA"), lb = r.f32("loraB"), ga = r.f32("gradA"), gb = r.f32("gradB");
    const int64_t rank = r.integer("rank");
    const double scale = r.number("scale");
    return PromiseWorker::start(
        r.env(),
        [=]() {
          b::lora_forward_backward(x.data, w.data, la.data, lb.data, gy.data, rows, in_dim, out_dim, rank,
                                   scale, gx.data, ga.data, gb.data);
          return 0.0;
        },
        r.take_pins());
  }
  if (op == "sasrecTrain" || op == "sasrecEvaluate") {
    models::SasrecConfig config;
    config.num_items = r.integer("numItems");
    config.dim = r.integer("dim");
    config.blocks = r.integer("blocks");
    config.heads = r.integer("heads");
    config.max_len = r.integer("maxLen");
    config.dropout = r.number("dropout");
    if (op == "sasrecTrain") {
      const auto x = r.i32("x"), pos = r.i32("pos"), neg = r.i32_optional("neg");
      const bool eager = r.boolean("eager"), bce = neg.data != nullptr;
      b::SasrecTrainBatches batches;
      batches.batch = r.integer("batch");
      batches.count = r.integer("count");
      const size_t expected = static_cast<size_t>(batches.count * batches.batch * config.max_len);
      if (x.length != expected || pos.length != expected || (bce && neg.length != expected))
        throw Napi::RangeError::New(r.env(), "Expected x, pos (and neg) of count × batch × maxLen");
      return PromiseWorker::start(
          r.env(),
          [=]() mutable {
            batches.x = x.data;
            batches.pos = pos.data;
            batches.neg = neg.data;
            return eager ? b::sasrec_train_eager(config, bce, batches)
                         : b::sasrec_train_ours(config, bce, batches);
          },
          r.take_pins());
    }
    const auto inputs = r.i32("inputs"), targets = r.i32("targets");
    const auto offsets = r.i32("historyOffsets"), history = r.i32("historyItems");
    b::SasrecEvalUsers users;
    users.users = static_cast<int64_t>(targets.length);
    users.eval_batch = r.integer("evalBatch");
    if (inputs.length != targets.length * static_cast<size_t>(config.max_len) ||
        offsets.length != targets.length + 1 ||
        static_cast<size_t>(offsets.data[targets.length]) != history.length)
      throw Napi::RangeError::New(r.env(), "Expected inputs [users, maxLen] and a history CSR of users rows");
    return PromiseWorker::start(
        r.env(),
        [=]() mutable {
          users.inputs = inputs.data;
          users.targets = targets.data;
          users.history_offsets = offsets.data;
          users.history_items = history.data;
          return b::sasrec_evaluate_eager(config, users);
        },
        r.take_pins());
  }
  throw Napi::TypeError::New(r.env(), "Unknown composite op: " + op);
}

// ---------------------------------------------------------------- SASRec training (own thread + TSFN)

/// A progress event crossing to the main thread.
struct SasrecEvent {
  bool is_epoch = false;
  train::SasrecStep step{};
  train::SasrecEpoch epoch{};
};

using SasrecJob = TrainingJob<train::SasrecTrainOptions, train::SasrecTrainResult, SasrecEvent>;

/// Only one SASRec training per process: ATen's default generator (seeded by the run) is process-wide.
std::atomic<bool> g_sasrec_busy{false};

Napi::Object metrics_object(Napi::Env env, const train::SasrecMetrics& m) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("users", Napi::Number::New(env, static_cast<double>(m.users)));
  auto list = [&](const std::vector<double>& values) {
    Napi::Array a = Napi::Array::New(env, values.size());
    for (size_t i = 0; i < values.size(); ++i)
      a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, values[i]));
    return a;
  };
  out.Set("hr", list(m.hr));
  out.Set("ndcg", list(m.ndcg));
  out.Set("mrr", list(m.mrr));
  return out;
}

Napi::Object epoch_object(Napi::Env env, const train::SasrecEpoch& e) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("epoch", Napi::Number::New(env, static_cast<double>(e.epoch)));
  out.Set("loss", Napi::Number::New(env, e.loss));
  out.Set("seconds", Napi::Number::New(env, e.seconds));
  out.Set("evalSeconds", Napi::Number::New(env, e.eval_seconds));
  out.Set("improved", Napi::Boolean::New(env, e.improved));
  out.Set("valid", metrics_object(env, e.valid));
  return out;
}

Napi::Object sasrec_event_to_js(Napi::Env env, const SasrecEvent& event) {
  if (event.is_epoch) {
    Napi::Object out = epoch_object(env, event.epoch);
    out.Set("kind", "epoch");
    return out;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", "step");
  out.Set("epoch", Napi::Number::New(env, static_cast<double>(event.step.epoch)));
  out.Set("step", Napi::Number::New(env, static_cast<double>(event.step.step)));
  out.Set("steps", Napi::Number::New(env, static_cast<double>(event.step.steps)));
  out.Set("loss", Napi::Number::New(env, event.step.loss));
  out.Set("samplesPerSecond", Napi::Number::New(env, event.step.samples_per_second));
  return out;
}

/// The resolved value of a finished run (typings: NativeSasrecResult).
Napi::Value sasrec_result_to_js(Napi::Env env, const train::SasrecTrainResult& r) {
  Napi::Object out = Napi::Object::New(env);
  Napi::Float32Array emb = Napi::Float32Array::New(env, r.item_emb.size());
  if (!r.item_emb.empty()) std::memcpy(emb.Data(), r.item_emb.data(), r.item_emb.size() * sizeof(float));
  out.Set("itemEmbeddings", emb);
  out.Set("parameters", named_tensors_to_js(env, r.parameters));
  Napi::Array epochs = Napi::Array::New(env, r.epochs.size());
  for (size_t i = 0; i < r.epochs.size(); ++i)
    epochs.Set(static_cast<uint32_t>(i), epoch_object(env, r.epochs[i]));
  out.Set("epochs", epochs);
  out.Set("bestEpoch", Napi::Number::New(env, static_cast<double>(r.best_epoch)));
  out.Set("stoppedEarly", Napi::Boolean::New(env, r.stopped_early));
  out.Set("trainingRows", Napi::Number::New(env, static_cast<double>(r.training_rows)));
  out.Set("resumedFromEpoch", Napi::Number::New(env, static_cast<double>(r.resumed_from_epoch)));
  out.Set("test", metrics_object(env, r.test));
  Napi::Array ks = Napi::Array::New(env, train::sasrec_ks().size());
  for (size_t i = 0; i < train::sasrec_ks().size(); ++i)
    ks.Set(static_cast<uint32_t>(i), train::sasrec_ks()[i]);
  out.Set("ks", ks);
  return out;
}

train::SasrecTrainResult run_sasrec(SasrecJob& job) {
  train::SasrecCallbacks cb;
  cb.cancelled = [&job] { return job.cancelled(); };
  cb.on_step = [&job](const train::SasrecStep& s) { job.post(SasrecEvent{false, s, {}}); };
  cb.on_epoch = [&job](const train::SasrecEpoch& e) { job.post(SasrecEvent{true, {}, e}); };
  return train::train_sasrec(job.options, cb);
}

/// sasrecTrain(options, onProgress) → { promise, cancel() }. Training runs on a thread of its own (not
/// the libuv pool); progress events arrive through a thread-safe function, which also keeps the event
/// loop alive until the run ends.
Napi::Value SasrecTrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionsReader r(info);
  if (info.Length() < 2 || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "Expected a progress function");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value loss = o.Get("loss");
  if (!loss.IsString()) throw Napi::TypeError::New(env, "Expected a string for loss");
  auto job = std::make_shared<SasrecJob>(env);
  train::SasrecTrainOptions& t = job->options;
  const auto offsets = r.i32("offsets"), items = r.i32("items");
  t.offsets.assign(offsets.data, offsets.data + offsets.length);
  t.items.assign(items.data, items.data + items.length);
  t.model.num_items = r.integer("numItems");
  t.model.dim = r.integer("dim");
  t.model.blocks = r.integer("blocks");
  t.model.heads = r.integer("heads");
  t.model.max_len = r.integer("maxLen");
  t.model.dropout = r.number("dropout");
  t.loss = loss.As<Napi::String>().Utf8Value();
  t.lr = r.number("lr");
  t.batch_size = r.integer("batchSize");
  t.epochs = r.integer("epochs");
  t.patience = r.integer("patience");
  t.seed = static_cast<uint64_t>(r.integer("seed"));
  t.threads = static_cast<int>(k::resolve_threads(static_cast<int>(r.integer("threads"))));
  Napi::Value checkpoint = o.Get("checkpoint");
  if (!checkpoint.IsUndefined() && !checkpoint.IsNull()) {
    if (!checkpoint.IsString()) throw Napi::TypeError::New(env, "Expected a string for checkpoint");
    t.checkpoint = checkpoint.As<Napi::String>().Utf8Value();
  }
  t.resume = r.boolean_or("resume", false);
  if (t.offsets.empty()) throw Napi::TypeError::New(env, "Expected a non-empty offsets array");
  return SasrecJob::start(env, info[1].As<Napi::Function>(), job, g_sasrec_busy, "SASRec", run_sasrec,
                          sasrec_event_to_js, sasrec_result_to_js);
}

// ---------------------------------------------------------------- SASRec scoring (trained weights)

/// sasrecScorer({ numItems, dim, blocks, heads, maxLen, parameters: [{ name, shape, data }] }) →
/// { score({ inputs, batch, scores }): Promise<void> }. The weights are copied once into a model that
/// the returned function owns; `inputs` int32 [batch, maxLen] (left-padded with 0, ids in [0, numItems]),
/// `scores` float32 [batch, numItems + 1] receives every item's score (column 0 = −inf).
Napi::Value SasrecScorer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OptionsReader r(info);
  models::SasrecConfig config;
  config.num_items = r.integer("numItems");
  config.dim = r.integer("dim");
  config.blocks = r.integer("blocks");
  config.heads = r.integer("heads");
  config.max_len = r.integer("maxLen");
  config.dropout = 0.0;
  Napi::Value list = info[0].As<Napi::Object>().Get("parameters");
  if (!list.IsArray()) throw Napi::TypeError::New(env, "Expected an array for parameters");
  Napi::Array entries = list.As<Napi::Array>();
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (uint32_t i = 0; i < entries.Length(); ++i) {
    Napi::Value e = entries.Get(i);
    if (!e.IsObject())
      throw Napi::TypeError::New(env, "Expected an object for parameters[" + std::to_string(i) + "]");
    Napi::Object o = e.As<Napi::Object>();
    Napi::Value name = o.Get("name"), shape = o.Get("shape"), data = o.Get("data");
    if (!name.IsString() || !shape.IsArray() || !data.IsTypedArray() ||
        data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw Napi::TypeError::New(
          env, "Expected { name: string, shape: number[], data: Float32Array } for parameters[" +
                   std::to_string(i) + "]");
    }
    std::vector<int64_t> sizes;
    int64_t numel = 1;
    Napi::Array dims = shape.As<Napi::Array>();
    for (uint32_t d = 0; d < dims.Length(); ++d) {
      Napi::Value v = dims.Get(d);
      if (!v.IsNumber() || v.As<Napi::Number>().Int64Value() < 0) {
        throw Napi::TypeError::New(
            env, "Expected non-negative integers in parameters[" + std::to_string(i) + "].shape");
      }
      sizes.push_back(v.As<Napi::Number>().Int64Value());
      numel *= sizes.back();
    }
    Napi::Float32Array values = data.As<Napi::Float32Array>();
    if (static_cast<int64_t>(values.ElementLength()) != numel) {
      throw Napi::TypeError::New(
          env, "parameters[" + std::to_string(i) + "].data length does not match its shape");
    }
    named.emplace_back(name.As<Napi::String>().Utf8Value(),
                       at::from_blob(values.Data(), sizes, at::TensorOptions().dtype(at::kFloat)).clone());
  }
  std::shared_ptr<const models::Sasrec> model;
  try {
    auto built = std::make_shared<models::Sasrec>(config);
    built->assign(named);
    model = std::move(built);
  } catch (const std::invalid_argument& e) {
    throw make_error(env, kCodeInvalidArgument, e.what());
  } catch (const c10::Error& e) {
    throw make_error(env, kCodeInvalidArgument, e.what_without_backtrace());
  }
  Napi::Object scorer = Napi::Object::New(env);
  scorer.Set("score",
             Napi::Function::New(
                 env,
                 [model](const Napi::CallbackInfo& ci) -> Napi::Value {
                   OptionsReader sr(ci);
                   const auto inputs = sr.i32("inputs");
                   const auto scores = sr.f32("scores");
                   const int64_t batch = sr.integer("batch");
                   const models::SasrecConfig& c = model->config();
                   if (batch < 1 || inputs.length != static_cast<size_t>(batch * c.max_len) ||
                       scores.length != static_cast<size_t>(batch * (c.num_items + 1))) {
                     throw Napi::TypeError::New(
                         ci.Env(), "Expected inputs [batch, maxLen] and scores [batch, numItems + 1]");
                   }
                   return PromiseWorker::start(
                       sr.env(),
                       [model, inputs, scores, batch]() {
                         const models::SasrecConfig& c = model->config();
                         for (size_t i = 0; i < inputs.length; ++i) {
                           if (inputs.data[i] < 0 || inputs.data[i] > c.num_items) {
                             throw std::invalid_argument(
                                 "inputs[" + std::to_string(i) + "] = " + std::to_string(inputs.data[i]) +
                                 " is not an item id in [0, " + std::to_string(c.num_items) + "]");
                           }
                         }
                         c10::InferenceMode inference;
                         const at::Tensor x = at::from_blob(inputs.data, {batch, c.max_len},
                                                            at::TensorOptions().dtype(at::kInt))
                                                  .to(at::kLong);
                         const at::Tensor out = model->score_last(x).contiguous();
                         std::memcpy(scores.data, out.data_ptr<float>(), scores.length * sizeof(float));
                         return 0.0;
                       },
                       sr.take_pins());
                 },
                 "score"));
  return scorer;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    throw Napi::TypeError::New(info.Env(), "Expected a positive integer thread count");
  }
  at::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("addon", "mmesid_torch");
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("blas", k::blas_name());
  out.Set("torchThreads", Napi::Number::New(env, at::get_num_threads()));
#ifdef MMESID_WITH_CUDA
  out.Set("cuda", Napi::Boolean::New(env, true));
#else
  out.Set("cuda", Napi::Boolean::New(env, false));
#endif
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Debian's libtorch starts with one intra-op thread; use every core unless told otherwise.
  at::set_num_threads(k::resolve_threads(0));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("rqEncode", Napi::Function::New(env, RqEncode, "rqEncode"));
  exports.Set("mmdGaussian", Napi::Function::New(env, MmdGaussian, "mmdGaussian"));
  exports.Set("infoNce", Napi::Function::New(env, InfoNce, "infoNce"));
  exports.Set("_composite", Napi::Function::New(env, Composite, "_composite"));
  exports.Set("loraLinear", Napi::Function::New(env, LoraLinearImpl, "loraLinear"));
  exports.Set("sasrecTrain", Napi::Function::New(env, SasrecTrain, "sasrecTrain"));
  exports.Set("sasrecScorer", Napi::Function::New(env, SasrecScorer, "sasrecScorer"));
  exports.Set("loraLinearBackward", Napi::Function::New(env, LoraLinearImpl, "loraLinearBackward"));
  register_tokenizer_exports(env, exports);
  register_tokenize_bench_exports(env, exports);
  register_llm_exports(env, exports);
  register_mmesid_exports(env, exports);
  return exports;
}

}  // namespace
}  // namespace mmesid::addon

static Napi::Object InitTorchAddon(Napi::Env env, Napi::Object exports) {
  return mmesid::addon::Init(env, exports);
}

NODE_API_MODULE(mmesid_torch, InitTorchAddon)
