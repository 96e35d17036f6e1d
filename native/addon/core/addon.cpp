// mmesid_core.node: the kernels, no libtorch. Argument conversion and workers only; no maths here.
// Every export takes one fully-defaulted options object (lib/kernels.ts builds and validates it) and
// returns a Promise; output buffers are allocated by the caller and written in place.
#include <napi.h>

#include <omp.h>

#include <string>

#include "addon/common/napi_util.h"
#include "addon/core/tokenizer_exports.h"
#include "eval/ranking.h"
#include "gemm.h"
#include "infonce.h"
#include "lora.h"
#include "mmd.h"
#include "rq_encode.h"
#ifdef MMESID_WITH_CUDA
#include "cuda/kernels_cuda.h"
#endif

namespace mmesid::addon {
namespace {

namespace k = mmesid::kernels;

void require_length(Napi::Env env, size_t actual, int64_t expected, const char* name) {
  if (expected < 0 || actual != static_cast<size_t>(expected)) {
    throw Napi::RangeError::New(env, std::string("Expected ") + std::to_string(expected) + " elements in " +
                                         name + " but received " + std::to_string(actual));
  }
}

Napi::Value RqEncode(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x");
  const auto codebooks = r.f32("codebooks");
  const auto codes = r.i32("codes");
  const auto sq_error = r.f32_optional("sqError");
  k::RqEncodeShape shape;
  shape.n = r.integer("n");
  shape.dim = r.integer("dim");
  shape.levels = r.integer("levels");
  shape.codebook_size = r.integer("codebookSize");
  shape.beam = static_cast<int>(r.integer("beam"));
  const int threads = static_cast<int>(r.integer("threads"));
  const bool reference = r.boolean_or("_reference", false);
  const Napi::Value strategy_value = info[0].As<Napi::Object>().Get("_strategy");
  const int strategy = strategy_value.IsNumber() ? strategy_value.As<Napi::Number>().Int32Value() : 0;
  if (strategy < 0 || strategy > 2) throw Napi::RangeError::New(r.env(), "Expected _strategy in {0, 1, 2}");
  require_length(r.env(), x.length, shape.n * shape.dim, "x");
  require_length(r.env(), codebooks.length, shape.levels * shape.codebook_size * shape.dim, "codebooks");
  require_length(r.env(), codes.length, shape.n * shape.levels, "codes");
  if (sq_error.data) require_length(r.env(), sq_error.length, shape.n, "sqError");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        k::require_finite(x.data, shape.n * shape.dim, shape.dim, "options.x", threads);
        k::require_finite(codebooks.data, shape.levels * shape.codebook_size * shape.dim, shape.dim,
                          "options.codebooks", threads);
        if (reference) {
          k::rq_encode_reference(x.data, codebooks.data, shape, codes.data, sq_error.data);
        } else {
          k::detail::rq_encode_with_strategy(x.data, codebooks.data, shape, codes.data, sq_error.data,
                                             threads, strategy);
        }
        return 0.0;
      },
      r.take_pins());
}

Napi::Value MmdGaussian(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x");
  const auto y = r.f32("y");
  const auto grad_x = r.f32_optional("gradX");
  const auto grad_y = r.f32_optional("gradY");
  const int64_t n = r.integer("n");
  const int64_t dim = r.integer("dim");
  k::GaussianBandwidth bandwidth;
  const std::vector<double> sigmas = r.numbers_optional("sigmas");
  if (!sigmas.empty()) {
    bandwidth.values = sigmas;
    bandwidth.relative = false;
  } else {
    bandwidth.values = r.numbers_optional("alphas");
    bandwidth.relative = true;
  }
  const int threads = static_cast<int>(r.integer("threads"));
  const bool reference = r.boolean_or("_reference", false);
  require_length(r.env(), x.length, n * dim, "x");
  require_length(r.env(), y.length, n * dim, "y");
  if (grad_x.data || grad_y.data) {
    if (!grad_x.data || !grad_y.data) throw Napi::TypeError::New(r.env(), "gradX and gradY go together");
    require_length(r.env(), grad_x.length, n * dim, "gradX");
    require_length(r.env(), grad_y.length, n * dim, "gradY");
  }
  return PromiseWorker::start(
      r.env(),
      [=]() {
        const double loss =
            reference ? k::mmd_gaussian_reference(x.data, y.data, n, dim, bandwidth, grad_x.data, grad_y.data)
                      : k::mmd_gaussian(x.data, y.data, n, dim, bandwidth, grad_x.data, grad_y.data, threads);
        check_finite_result(loss,
                            {{grad_x.data, n * dim, dim, "gradX"}, {grad_y.data, n * dim, dim, "gradY"}},
                            {{x.data, n * dim, dim, "options.x"}, {y.data, n * dim, dim, "options.y"}},
                            "mmdGaussian", threads);
        return loss;
      },
      r.take_pins());
}

Napi::Value InfoNce(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto a = r.f32("a");
  const auto b = r.f32("b");
  const auto grad_a = r.f32_optional("gradA");
  const auto grad_b = r.f32_optional("gradB");
  const int64_t n = r.integer("n");
  const int64_t dim = r.integer("dim");
  const double temperature = r.number("temperature");
  const bool symmetric = r.boolean("symmetric");
  const int threads = static_cast<int>(r.integer("threads"));
  const bool reference = r.boolean_or("_reference", false);
  require_length(r.env(), a.length, n * dim, "a");
  require_length(r.env(), b.length, n * dim, "b");
  if (grad_a.data || grad_b.data) {
    if (!grad_a.data || !grad_b.data) throw Napi::TypeError::New(r.env(), "gradA and gradB go together");
    require_length(r.env(), grad_a.length, n * dim, "gradA");
    require_length(r.env(), grad_b.length, n * dim, "gradB");
  }
  return PromiseWorker::start(
      r.env(),
      [=]() {
        const double loss = reference ? k::info_nce_reference(a.data, b.data, n, dim, temperature, symmetric,
                                                              grad_a.data, grad_b.data)
                                      : k::info_nce(a.data, b.data, n, dim, temperature, symmetric,
                                                    grad_a.data, grad_b.data, threads);
        check_finite_result(
            loss, {{grad_a.data, n * dim, dim, "gradA"}, {grad_b.data, n * dim, dim, "gradB"}},
            {{a.data, n * dim, dim, "options.a"}, {b.data, n * dim, dim, "options.b"}}, "infoNce", threads);
        return loss;
      },
      r.take_pins());
}

struct LoraArgs {
  Pinned<float> x, x_lora, weight, bias, lora_a, lora_b;
  k::LoraShape shape;
  int threads = 0;
  bool reference = false;
};

LoraArgs read_lora(OptionsReader& r) {
  LoraArgs args;
  args.x = r.f32("x");
  args.x_lora = r.f32_optional("xLora");
  args.weight = r.f32("weight");
  args.bias = r.f32_optional("bias");
  args.lora_a = r.f32("loraA");
  args.lora_b = r.f32("loraB");
  args.shape.rows = r.integer("rows");
  args.shape.in_dim = r.integer("inDim");
  args.shape.out_dim = r.integer("outDim");
  args.shape.rank = r.integer("rank");
  args.shape.scale = static_cast<float>(r.number("scale"));
  args.threads = static_cast<int>(r.integer("threads"));
  args.reference = r.boolean_or("_reference", false);
  const auto& s = args.shape;
  require_length(r.env(), args.x.length, s.rows * s.in_dim, "x");
  if (args.x_lora.data) require_length(r.env(), args.x_lora.length, s.rows * s.in_dim, "xLora");
  require_length(r.env(), args.weight.length, s.out_dim * s.in_dim, "weight");
  if (args.bias.data) require_length(r.env(), args.bias.length, s.out_dim, "bias");
  require_length(r.env(), args.lora_a.length, s.rank * s.in_dim, "loraA");
  require_length(r.env(), args.lora_b.length, s.out_dim * s.rank, "loraB");
  return args;
}

NamedBuffer lora_input(const LoraArgs& a, int which) {
  const auto& s = a.shape;
  switch (which) {
    case 0:
      return {a.x.data, s.rows * s.in_dim, s.in_dim, "options.x"};
    case 1:
      return {a.weight.data, s.out_dim * s.in_dim, s.in_dim, "options.weight"};
    case 2:
      return {a.bias.data, s.out_dim, s.out_dim, "options.bias"};
    case 3:
      return {a.lora_a.data, s.rank * s.in_dim, s.in_dim, "options.loraA"};
    case 4:
      return {a.lora_b.data, s.out_dim * s.rank, s.rank, "options.loraB"};
    default:
      return {a.x_lora.data, s.rows * s.in_dim, s.in_dim, "options.xLora"};
  }
}

Napi::Value LoraLinear(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const LoraArgs args = read_lora(r);
  const auto y = r.f32("y");
  require_length(r.env(), y.length, args.shape.rows * args.shape.out_dim, "y");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        if (args.reference) {
          k::lora_linear_forward_reference(args.x.data, args.x_lora.data, args.weight.data, args.bias.data,
                                           args.lora_a.data, args.lora_b.data, args.shape, y.data);
        } else {
          k::lora_linear_forward(args.x.data, args.x_lora.data, args.weight.data, args.bias.data,
                                 args.lora_a.data, args.lora_b.data, args.shape, y.data, nullptr,
                                 args.threads);
        }
        const auto& s = args.shape;
        check_finite_result(0.0, {{y.data, s.rows * s.out_dim, s.out_dim, "y"}},
                            {lora_input(args, 0), lora_input(args, 5), lora_input(args, 1),
                             lora_input(args, 2), lora_input(args, 3), lora_input(args, 4)},
                            "loraLinear", args.threads);
        return 0.0;
      },
      r.take_pins());
}

Napi::Value LoraLinearBackward(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const LoraArgs args = read_lora(r);
  const auto grad_y = r.f32("gradY");
  const auto grad_x = r.f32_optional("gradX");
  const auto grad_x_lora = r.f32_optional("gradXLora");
  const auto grad_a = r.f32_optional("gradA");
  const auto grad_b = r.f32_optional("gradB");
  const auto grad_bias = r.f32_optional("gradBias");
  const auto& s = args.shape;
  require_length(r.env(), grad_y.length, s.rows * s.out_dim, "gradY");
  if (grad_x.data) require_length(r.env(), grad_x.length, s.rows * s.in_dim, "gradX");
  if (grad_x_lora.data) {
    if (!args.x_lora.data) throw Napi::TypeError::New(r.env(), "gradXLora needs xLora");
    require_length(r.env(), grad_x_lora.length, s.rows * s.in_dim, "gradXLora");
  }
  if (grad_a.data) require_length(r.env(), grad_a.length, s.rank * s.in_dim, "gradA");
  if (grad_b.data) require_length(r.env(), grad_b.length, s.out_dim * s.rank, "gradB");
  if (grad_bias.data) require_length(r.env(), grad_bias.length, s.out_dim, "gradBias");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        if (args.reference) {
          k::lora_linear_backward_reference(args.x.data, args.x_lora.data, args.weight.data, args.lora_a.data,
                                            args.lora_b.data, grad_y.data, args.shape, grad_x.data,
                                            grad_x_lora.data, grad_a.data, grad_b.data, grad_bias.data);
        } else {
          k::lora_linear_backward(args.x.data, args.x_lora.data, args.weight.data, args.lora_a.data,
                                  args.lora_b.data, grad_y.data, nullptr, args.shape, grad_x.data,
                                  grad_x_lora.data, grad_a.data, grad_b.data, grad_bias.data, args.threads);
        }
        check_finite_result(0.0,
                            {{grad_x.data, s.rows * s.in_dim, s.in_dim, "gradX"},
                             {grad_x_lora.data, s.rows * s.in_dim, s.in_dim, "gradXLora"},
                             {grad_a.data, s.rank * s.in_dim, s.in_dim, "gradA"},
                             {grad_b.data, s.out_dim * s.rank, s.rank, "gradB"},
                             {grad_bias.data, s.out_dim, s.out_dim, "gradBias"}},
                            {{grad_y.data, s.rows * s.out_dim, s.out_dim, "options.gradY"},
                             lora_input(args, 0),
                             lora_input(args, 5),
                             lora_input(args, 1),
                             lora_input(args, 3),
                             lora_input(args, 4)},
                            "loraLinearBackward", args.threads);
        return 0.0;
      },
      r.take_pins());
}

/// Bench-only: C[m, n] = A[m, k]·B[k, n] through the BLAS the kernels use (measures the SGEMM peak).
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto a = r.f32("a"), b = r.f32("b"), c = r.f32("c");
  const int64_t m = r.integer("m"), n = r.integer("n"), kk = r.integer("k");
  const int threads = static_cast<int>(r.integer("threads"));
  require_length(r.env(), a.length, m * kk, "a");
  require_length(r.env(), b.length, kk * n, "b");
  require_length(r.env(), c.length, m * n, "c");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        k::ScopedThreads guard(threads);
        k::sgemm(false, false, m, n, kk, 1.0f, a.data, kk, b.data, n, 0.0f, c.data, n);
        return 0.0;
      },
      r.take_pins());
}

/// Full-ranking evaluation of one batch of users (native/eval/ranking.h): writes ranks [batch] and the
/// metric sums [3 groups × (1 + 3 × |ks|)] in place.
Napi::Value EvaluateRanking(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto scores = r.f32("scores");
  const auto targets = r.i32("targets");
  const auto offsets = r.i32("historyOffsets");
  const auto history = r.i32("historyItems");
  const auto frequency = r.i32_optional("trainFrequency");
  const auto ranks = r.i32("ranks");
  const auto sums = r.f64("sums");
  mmesid::eval::RankingBatch batch;
  batch.batch = r.integer("batch");
  batch.num_items = r.integer("numItems");
  mmesid::eval::RankingConfig config;
  for (const double k : r.numbers_optional("ks")) config.ks.push_back(static_cast<int32_t>(k));
  config.cold_threshold = r.integer("coldThreshold");
  config.threads = static_cast<int>(r.integer("threads"));
  if (batch.batch < 0 || batch.num_items < 1)
    throw Napi::RangeError::New(r.env(), "Expected batch >= 0, numItems >= 1");
  require_length(r.env(), scores.length, batch.batch * (batch.num_items + 1), "scores");
  require_length(r.env(), targets.length, batch.batch, "targets");
  require_length(r.env(), offsets.length, batch.batch + 1, "historyOffsets");
  require_length(r.env(), ranks.length, batch.batch, "ranks");
  require_length(r.env(), sums.length, mmesid::eval::sums_length(static_cast<int64_t>(config.ks.size())),
                 "sums");
  if (frequency.data) require_length(r.env(), frequency.length, batch.num_items + 1, "trainFrequency");
  batch.scores = scores.data;
  batch.targets = targets.data;
  batch.history_offsets = offsets.data;
  batch.history_items = history.data;
  batch.history_length = static_cast<int64_t>(history.length);
  config.train_frequency = frequency.data;
  return PromiseWorker::start(
      r.env(),
      [=]() {
        mmesid::eval::evaluate_ranking(batch, config, ranks.data, sums.data);
        return 0.0;
      },
      r.take_pins());
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("addon", "mmesid_core");
  out.Set("blas", k::blas_name());
  out.Set("openmp", Napi::Number::New(env, _OPENMP));
  out.Set("hardwareThreads", Napi::Number::New(env, k::resolve_threads(0)));
#ifdef MMESID_WITH_CUDA
  out.Set("cuda", Napi::Boolean::New(env, true));
  out.Set("cudaArchitectures", MMESID_CUDA_ARCHITECTURES);
  out.Set("cudaDeviceAvailable", Napi::Boolean::New(env, k::cuda::device_available()));
#else
  out.Set("cuda", Napi::Boolean::New(env, false));
  out.Set("cudaDeviceAvailable", Napi::Boolean::New(env, false));
#endif
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("_sgemm", Napi::Function::New(env, Sgemm, "_sgemm"));
  exports.Set("rqEncode", Napi::Function::New(env, RqEncode, "rqEncode"));
  exports.Set("mmdGaussian", Napi::Function::New(env, MmdGaussian, "mmdGaussian"));
  exports.Set("infoNce", Napi::Function::New(env, InfoNce, "infoNce"));
  exports.Set("loraLinear", Napi::Function::New(env, LoraLinear, "loraLinear"));
  exports.Set("loraLinearBackward", Napi::Function::New(env, LoraLinearBackward, "loraLinearBackward"));
  exports.Set("evaluateRanking", Napi::Function::New(env, EvaluateRanking, "evaluateRanking"));
  register_tokenizer_exports(env, exports);
  return exports;
}

}  // namespace
}  // namespace mmesid::addon

static Napi::Object InitCoreAddon(Napi::Env env, Napi::Object exports) {
  return mmesid::addon::Init(env, exports);
}

NODE_API_MODULE(mmesid_core, InitCoreAddon)
