// The MME-SID head's exports of mmesid_torch.node (native/torch/models/mmesid.h around a loaded Llama):
// creation, fine-tuning on a thread of its own, scoring and top-k, save/load, and the tensors the
// reports read. Argument conversion and workers only; typings/native.d.ts documents them (NativeMmesid*).
#include "addon/torch/mmesid_exports.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "addon/torch/llm_common.h"
#include "addon/torch/training_job.h"
#include "common/errors.h"
#include "torch/bench/memory.h"
#include "torch/io/safetensors.h"
#include "torch/models/mmesid.h"
#include "torch/train/mmesid_trainer.h"

namespace mmesid::addon {
namespace {

/// A head attached to a loaded Llama; every call takes the Llama's lock.
struct HeadState {
  std::shared_ptr<LlmState> llm;
  std::unique_ptr<models::MmesidHead> head;
  at::Tensor item_vectors;  ///< U [N, H], computed on first use after a change
  const at::Tensor& vectors() {
    if (!item_vectors.defined()) {
      const at::NoGradGuard no_grad;
      item_vectors = head->item_vectors(0, head->num_items()).contiguous();
    }
    return item_vectors;
  }
};

models::MmesidHead& require_head(HeadState& s) {
  if (!s.head) throw std::invalid_argument("the MME-SID head was disposed");
  return *s.head;
}

/// Reads histories given as { offsets: Float64Array [B + 1], items: Int32Array } into a prompt batch.
struct Histories {
  std::vector<int64_t> offsets;
  Pinned<int32_t> items;
  std::vector<int64_t> prefix, suffix;
  int64_t count() const { return static_cast<int64_t>(offsets.size()) - 1; }
};

Histories read_histories(OptionsReader& r) {
  Histories h;
  const auto offsets = r.f64("offsets");
  h.offsets.assign(offsets.data, offsets.data + offsets.length);
  h.items = r.i32("items");
  const auto prefix = r.i32("prefix"), suffix = r.i32("suffix");
  h.prefix.assign(prefix.data, prefix.data + prefix.length);
  h.suffix.assign(suffix.data, suffix.data + suffix.length);
  if (h.offsets.size() < 2 || h.offsets.front() != 0 ||
      h.offsets.back() != static_cast<int64_t>(h.items.length))
    throw Napi::TypeError::New(r.env(), "Expected offsets describing items");
  return h;
}

/// Rows per length group of inference batches (mmesid_last_hidden_by_length).
constexpr int64_t kInferenceGroupRows = 32;

/// h [B, H] of the histories (no grad); grouped by length unless `one_batch` (the eager baseline: one
/// batch padded to its longest history).
at::Tensor last_hidden(HeadState& s, const Histories& h, bool fused_lora = true, bool one_batch = false) {
  models::Llama& llm = require_model(*s.llm);
  const models::MmesidHead& head = require_head(s);
  models::MmesidPromptBatch batch;
  batch.offsets = h.offsets.data();
  batch.items = h.items.data;
  for (int64_t b = 0; b < h.count(); ++b) batch.rows.push_back(b);
  batch.prefix = &h.prefix;
  batch.suffix = &h.suffix;
  models::LlamaRunOptions run;
  run.fused_lora = fused_lora;
  if (one_batch) return models::mmesid_last_hidden(llm, head, batch, run);
  return models::mmesid_last_hidden_by_length(llm, head, batch, run, kInferenceGroupRows);
}

Napi::Float32Array float_array(Napi::Env env, const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kFloat).cpu().contiguous();
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(c.numel()));
  if (c.numel() > 0)
    std::memcpy(out.Data(), c.data_ptr<float>(), static_cast<size_t>(c.numel()) * sizeof(float));
  return out;
}

struct MmesidJobOptions {
  train::MmesidTrainOptions train;
  std::shared_ptr<HeadState> state;
};
using MmesidJob = TrainingJob<MmesidJobOptions, train::LoopResult, train::StepReport>;
std::atomic<bool> g_mmesid_busy{false};

Napi::Object make_head_handle(Napi::Env env, const std::shared_ptr<HeadState>& state);

// mmesidHead(llm, options) → Promise<NativeMmesidHead>
Napi::Value MmesidHeadCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "Expected (llm, options)");
  auto state = std::make_shared<HeadState>();
  state->llm = llm_state_of(info[0]);
  Napi::Object options = info[1].As<Napi::Object>();
  OptionsReader r(env, options);
  models::MmesidHeadConfig config;
  config.variant = r.string("variant");
  config.fusion = r.boolean("fusion");
  config.temperature = r.number("temperature");
  config.hidden = r.integer("hidden");
  config.score_chunk = r.integer("scoreChunk");
  const uint64_t seed = static_cast<uint64_t>(r.integer("seed"));
  const int64_t n = r.integer("numItems");
  const auto frequency = r.f64("frequency");
  if (static_cast<int64_t>(frequency.length) != n)
    throw Napi::TypeError::New(env, "Expected numItems frequencies");
  std::vector<models::MmesidModality> modalities;
  Napi::Value list = options.Get("modalities");
  if (!list.IsArray()) throw Napi::TypeError::New(env, "Expected an array for modalities");
  for (uint32_t i = 0; i < list.As<Napi::Array>().Length(); ++i) {
    Napi::Value e = list.As<Napi::Array>().Get(i);
    if (!e.IsObject()) throw Napi::TypeError::New(env, "Expected objects in modalities");
    OptionsReader m(env, e.As<Napi::Object>());
    models::MmesidModality modality;
    modality.name = m.string("name");
    const int64_t dim = m.integer("dim");
    const auto table = m.f32("table");
    if (static_cast<int64_t>(table.length) != n * dim)
      throw Napi::TypeError::New(env, "Expected a table of numItems × dim");
    modality.table = at::from_blob(table.data, {n, dim}, at::kFloat).clone();
    const auto sids = m.i32_optional("sids");
    if (sids.data) {
      const int64_t levels = m.integer("levels");
      if (static_cast<int64_t>(sids.length) != n * levels)
        throw Napi::TypeError::New(env, "Expected sids of numItems × levels");
      modality.sids = at::from_blob(sids.data, {n, levels}, at::kInt).to(at::kLong);
      const int64_t codes = m.integer("codes");
      modality.codes = codes;
      const auto codebooks = m.f32_optional("codebooks");
      if (codebooks.data) {
        if (static_cast<int64_t>(codebooks.length) != levels * codes * config.hidden)
          throw Napi::TypeError::New(env, "Expected codebooks of levels × codes × hidden");
        modality.codebooks =
            at::from_blob(codebooks.data, {levels, codes, config.hidden}, at::kFloat).clone();
      }
    }
    modalities.push_back(std::move(modality));
  }
  const at::Tensor freq = at::from_blob(frequency.data, {n}, at::kDouble).clone();
  std::vector<Napi::ObjectReference> pins = r.take_pins();
  return Task::start(
      env,
      [state, config, modalities, freq, seed] {
        state->head = std::make_unique<models::MmesidHead>(config, modalities, freq, seed);
      },
      [state](Napi::Env e) -> Napi::Value { return make_head_handle(e, state); }, std::move(pins));
}

// train(options, onProgress) → { promise, cancel() }
Napi::Value Train(const Napi::CallbackInfo& info, const std::shared_ptr<HeadState>& state) {
  Napi::Env env = info.Env();
  OptionsReader r(info);
  if (info.Length() < 2 || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "Expected a progress function");
  auto job = std::make_shared<MmesidJob>(env);
  train::MmesidTrainOptions& t = job->options.train;
  job->options.state = state;
  const auto offsets = r.f64("offsets");
  const auto items = r.i32("items"), targets = r.i32("targets");
  const auto prefix = r.i32("prefix"), suffix = r.i32("suffix");
  t.offsets.assign(offsets.data, offsets.data + offsets.length);
  t.items.assign(items.data, items.data + items.length);
  t.targets.assign(targets.data, targets.data + targets.length);
  t.prefix.assign(prefix.data, prefix.data + prefix.length);
  t.suffix.assign(suffix.data, suffix.data + suffix.length);
  t.micro_batch = r.integer("microBatch");
  t.loop = read_loop_options(env, r);
  t.loop.stop_at = r.integer("stopAt");
  t.loop.kind = {"mmesid.mmesid.checkpoint", 1, "MME-SID fine-tuning"};
  t.run.gradient_checkpointing = r.boolean("gradientCheckpointing");
  t.run.fused_lora = r.boolean_or("fusedLora", true);
  t.reference_head = r.boolean_or("referenceHead", false);
  return MmesidJob::start(
      env, info[1].As<Napi::Function>(), job, g_mmesid_busy, "MME-SID fine-tuning",
      [](MmesidJob& j) {
        HeadState& s = *j.options.state;
        const std::lock_guard<std::mutex> lock(s.llm->mutex);
        models::Llama& llm = require_model(*s.llm);
        models::MmesidHead& head = require_head(s);
        at::set_num_threads(s.llm->threads);
        s.item_vectors = at::Tensor();
        return train::train_mmesid(
            llm, head, j.options.train, [&j](const train::StepReport& step) { j.post(step); },
            [&j] { return j.cancelled(); });
      },
      step_to_js, loop_result_to_js);
}

Napi::Object make_head_handle(Napi::Env env, const std::shared_ptr<HeadState>& state) {
  Napi::Object handle = Napi::Object::New(env);
  auto method = [&](const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> fn) {
    handle.Set(name, Napi::Function::New(
                         env, [fn](const Napi::CallbackInfo& ci) -> Napi::Value { return fn(ci); }, name));
  };
  auto locked = [state](std::function<void(HeadState&)> fn) {
    return [state, fn = std::move(fn)] {
      const std::lock_guard<std::mutex> lock(state->llm->mutex);
      require_head(*state);
      use_threads(state->llm->threads);
      fn(*state);
    };
  };
  method("train", [state](const Napi::CallbackInfo& ci) { return Train(ci, state); });
  // score({ offsets, items, prefix, suffix, scores: Float32Array [B, N], fusedLora?, oneBatch? }): every
  // item's score (fusedLora false + oneBatch true: the benchmarks' eager baseline).
  method("score", [locked](const Napi::CallbackInfo& ci) -> Napi::Value {
    OptionsReader r(ci);
    auto h = std::make_shared<Histories>(read_histories(r));
    const auto scores = r.f32("scores");
    const bool fused_lora = r.boolean_or("fusedLora", true), one_batch = r.boolean_or("oneBatch", false);
    return Task::start(ci.Env(), locked([h, scores, fused_lora, one_batch](HeadState& s) {
                         const at::NoGradGuard no_grad;
                         copy_float_out(at::linear(last_hidden(s, *h, fused_lora, one_batch), s.vectors()),
                                        scores, "scores");
                       }),
                       nullptr, r.take_pins());
  });
  // topK({ offsets, items, prefix, suffix, k, excludeHistory, ids: Int32Array [B, k], values: Float32Array
  // [B, k] })
  method("topK", [locked](const Napi::CallbackInfo& ci) -> Napi::Value {
    OptionsReader r(ci);
    auto h = std::make_shared<Histories>(read_histories(r));
    const int64_t k = r.integer("k");
    const bool exclude = r.boolean("excludeHistory");
    const auto ids = r.i32("ids");
    const auto values = r.f32("values");
    return Task::start(ci.Env(), locked([h, k, exclude, ids, values](HeadState& s) {
                         const at::NoGradGuard no_grad;
                         at::Tensor scores = at::linear(last_hidden(s, *h), s.vectors()).contiguous();
                         float* data = scores.data_ptr<float>();
                         const int64_t n = scores.size(1);
                         for (int64_t b = 0; b < h->count(); ++b) {
                           data[b * n] = -std::numeric_limits<float>::infinity();  // the padding item
                           if (!exclude) continue;
                           for (int64_t i = h->offsets[b]; i < h->offsets[b + 1]; ++i) {
                             const int32_t item = h->items.data[i];
                             if (item > 0 && item < n)
                               data[b * n + item] = -std::numeric_limits<float>::infinity();
                           }
                         }
                         const auto [top_values, top_ids] = at::topk(scores, std::min(k, n - 1), 1);
                         const at::Tensor v = top_values.contiguous(), i = top_ids.to(at::kInt).contiguous();
                         if (static_cast<size_t>(i.numel()) != ids.length)
                           throw std::invalid_argument("topK: ids has the wrong size");
                         std::memcpy(ids.data, i.data_ptr<int32_t>(), ids.length * sizeof(int32_t));
                         std::memcpy(values.data, v.data_ptr<float>(), values.length * sizeof(float));
                       }),
                       nullptr, r.take_pins());
  });
  method("save", [locked](const Napi::CallbackInfo& ci) -> Napi::Value {
    const std::string path = path_argument(ci);
    return Task::start(
        ci.Env(), locked([path](HeadState& s) {
          io::save_safetensors(path, s.head->parameters(), {{"format", "pt"}, {"mmesid", "mmesid-head"}});
        }),
        nullptr);
  });
  method("load", [locked](const Napi::CallbackInfo& ci) -> Napi::Value {
    const std::string path = path_argument(ci);
    return Task::start(ci.Env(), locked([path](HeadState& s) {
                         const io::SafetensorsFile file(path);
                         std::vector<std::pair<std::string, at::Tensor>> named;
                         for (const auto& entry : file.tensors())
                           named.emplace_back(entry.name, file.load(entry, at::kFloat));
                         try {
                           s.head->assign(named);
                         } catch (const std::invalid_argument& e) {
                           throw FormatError(path, -1, e.what());
                         }
                         s.item_vectors = at::Tensor();
                       }),
                       nullptr);
  });
  // tensors(what, modality?) → Promise<Float32Array>: "itemInputs" [N, H], "targetItems" [N, H],
  // "itemVectors" [N, H], "fusionWeights" [N, 1 + M] (empty without fusion), "codes" [L, K, H] of a modality.
  method("tensor", [locked](const Napi::CallbackInfo& ci) -> Napi::Value {
    if (ci.Length() < 1 || !ci[0].IsString()) throw Napi::TypeError::New(ci.Env(), "Expected a tensor name");
    const std::string what = ci[0].As<Napi::String>().Utf8Value();
    const int64_t modality = ci.Length() > 1 && ci[1].IsNumber() ? ci[1].As<Napi::Number>().Int64Value() : 0;
    auto out = std::make_shared<at::Tensor>();
    return Task::start(
        ci.Env(), locked([what, modality, out](HeadState& s) {
          const at::NoGradGuard no_grad;
          const models::MmesidHead& head = *s.head;
          if (what == "itemInputs") {
            *out = head.item_inputs(at::arange(head.num_items(), at::TensorOptions().dtype(at::kLong)));
          } else if (what == "targetItems") {
            *out = head.target_table();
          } else if (what == "itemVectors") {
            *out = s.vectors();
          } else if (what == "fusionWeights") {
            *out = head.fusion_weights();
          } else if (what == "codes") {
            *out = head.code_tables(static_cast<size_t>(modality));
          } else {
            throw std::invalid_argument("unknown tensor \"" + what + "\"");
          }
        }),
        [out](Napi::Env e) -> Napi::Value {
          return out->defined() ? float_array(e, *out) : Napi::Float32Array::New(e, 0);
        });
  });
  // _loss({ h: Float32Array [B, H], targets: Int32Array [B], chunk, gradH: Float32Array, gradHead?,
  // reference? }) → Promise<number> (test-only): the chunked cross-entropy, its gradient w.r.t. h, and
  // (gradHead: a Float32Array of every head parameter's size, summed) the head's gradients concatenated in
  // parameterNames() order; reference: the head's plain loss. The head's .grad fields are cleared afterwards.
  method("_loss", [locked](const Napi::CallbackInfo& ci) -> Napi::Value {
    OptionsReader r(ci);
    const auto h = r.f32("h"), grad = r.f32("gradH"), grad_head = r.f32_optional("gradHead");
    const auto targets = r.i32("targets");
    const int64_t chunk = r.integer("chunk");
    const bool reference = r.boolean_or("reference", false);
    auto loss = std::make_shared<double>(0.0);
    return Task::start(
        ci.Env(), locked([h, grad, grad_head, targets, chunk, reference, loss](HeadState& s) {
          const int64_t b = static_cast<int64_t>(targets.length), hidden = s.head->config().hidden;
          at::Tensor x = at::from_blob(h.data, {b, hidden}, at::kFloat).clone().requires_grad_(true);
          const at::Tensor t = at::from_blob(targets.data, {b}, at::kInt).to(at::kLong);
          const at::Tensor l = s.head->loss(x, t, chunk, reference);
          l.backward();
          *loss = l.item<double>();
          copy_float_out(x.grad(), grad, "gradH");
          if (grad_head.data) {
            std::vector<at::Tensor> grads;
            for (const auto& [_, p] : s.head->parameters())
              grads.push_back(p.grad().defined() ? p.grad().reshape({-1})
                                                 : at::zeros({p.numel()}, at::kFloat));
            copy_float_out(at::cat(grads, 0), grad_head, "gradHead");
          }
          for (const auto& [_, p] : s.head->parameters()) p.mutable_grad() = at::Tensor();
        }),
        [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); }, r.take_pins());
  });
  method("parameterNames", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    const auto lock = lock_now(ci.Env(), *state->llm, "parameterNames");
    const auto& params = require_head(*state).parameters();
    Napi::Array out = Napi::Array::New(ci.Env(), params.size());
    for (size_t i = 0; i < params.size(); ++i) out.Set(static_cast<uint32_t>(i), params[i].first);
    return out;
  });
  method("dispose", [state](const Napi::CallbackInfo& ci) -> Napi::Value {
    return Task::start(
        ci.Env(),
        [state] {
          const std::lock_guard<std::mutex> lock(state->llm->mutex);
          state->head.reset();
          state->item_vectors = at::Tensor();
        },
        nullptr);
  });
  return handle;
}

}  // namespace

void register_mmesid_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("mmesidHead", Napi::Function::New(env, MmesidHeadCreate, "mmesidHead"));
  // Bench-only: the peak ATen tensor memory counter (torch/bench/memory.h), process-wide.
  exports.Set("_peakReset", Napi::Function::New(env, [](const Napi::CallbackInfo& ci) -> Napi::Value {
                torch_bench::start_peak_measurement();
                return Napi::Number::New(ci.Env(), static_cast<double>(torch_bench::live_tensor_bytes()));
              }));
  exports.Set("_peakBytes", Napi::Function::New(env, [](const Napi::CallbackInfo& ci) -> Napi::Value {
                return Napi::Number::New(ci.Env(), static_cast<double>(torch_bench::peak_tensor_bytes()));
              }));
}

}  // namespace mmesid::addon
