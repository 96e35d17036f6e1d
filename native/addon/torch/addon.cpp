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
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/generated/variable_factories.h>
#include <torch/version.h>

#include <cstring>
#include <string>

#include "addon/common/napi_util.h"
#include "gemm.h"
#include "torch/bench/composites.h"
#include "torch/ops/kernel_ops.h"

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

/// Forward (and, when gradY is given, backward) of the LoRA op; `y` is written when given.
Napi::Value LoraLinearImpl(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const auto x = r.f32("x"), weight = r.f32("weight"), bias = r.f32_optional("bias");
  const auto lora_a = r.f32("loraA"), lora_b = r.f32("loraB");
  const auto y = r.f32_optional("y"), grad_y = r.f32_optional("gradY");
  const auto grad_x = r.f32_optional("gradX"), grad_a = r.f32_optional("gradA");
  const auto grad_b = r.f32_optional("gradB"), grad_bias = r.f32_optional("gradBias");
  const int64_t rows = r.integer("rows"), in_dim = r.integer("inDim"), out_dim = r.integer("outDim");
  const int64_t rank = r.integer("rank");
  const double scale = r.number("scale");
  return PromiseWorker::start(
      r.env(),
      [=]() {
        at::Tensor tx = view(x, {rows, in_dim}, grad_x.data != nullptr);
        at::Tensor tw = view(weight, {out_dim, in_dim});
        c10::optional<at::Tensor> tbias;
        if (bias.data) tbias = view(bias, {out_dim}, grad_bias.data != nullptr);
        at::Tensor ta = view(lora_a, {rank, in_dim}, grad_a.data != nullptr);
        at::Tensor tb = view(lora_b, {out_dim, rank}, grad_b.data != nullptr);
        at::Tensor out = torch_ops::lora_linear(tx, tw, tbias, ta, tb, scale);
        copy_out(out.detach(), y, "y");
        if (grad_y.data && out.requires_grad()) {
          torch::autograd::backward({out}, {view(grad_y, {rows, out_dim})});
          copy_out(tx.grad(), grad_x, "gradX");
          copy_out(ta.grad(), grad_a, "gradA");
          copy_out(tb.grad(), grad_b, "gradB");
          if (tbias) copy_out(tbias->grad(), grad_bias, "gradBias");
        }
        return 0.0;
      },
      r.take_pins());
}

/// Bench-only: runs one libtorch eager composite (the same-run baseline of `npm run bench`).
/// options.op: "rqGreedy" | "mmd" | "infoNce" | "linear" | "lora", plus that op's buffers.
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
  throw Napi::TypeError::New(r.env(), "Unknown composite op: " + op);
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
  exports.Set("loraLinearBackward", Napi::Function::New(env, LoraLinearImpl, "loraLinearBackward"));
  return exports;
}

}  // namespace
}  // namespace mmesid::addon

static Napi::Object InitTorchAddon(Napi::Env env, Napi::Object exports) {
  return mmesid::addon::Init(env, exports);
}

NODE_API_MODULE(mmesid_torch, InitTorchAddon)
