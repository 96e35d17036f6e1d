#include "tokenize_bench_exports.h"

#include <string>
#include <vector>

#include "addon/common/napi_util.h"
#include "torch/bench/tokenize_eager.h"

namespace mmesid::addon {
namespace {

Napi::Value TokenizeEager(const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  Napi::Env env = r.env();
  const auto x = r.f32("x");
  const auto codebooks = r.f32("codebooks");
  const auto out = r.i32("out");
  const int64_t n = r.integer("n"), levels = r.integer("levels"), size = r.integer("codes");
  const int64_t code_dim = r.integer("codeDim");
  std::vector<Napi::ObjectReference> pins = r.take_pins();
  const Napi::Value list = info[0].As<Napi::Object>().Get("layers");
  if (!list.IsArray() || list.As<Napi::Array>().Length() == 0) {
    throw Napi::TypeError::New(env, "Expected a non-empty array for layers");
  }
  std::vector<torch_bench::EagerLinear> layers;
  const Napi::Array array = list.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Object l = array.Get(i).As<Napi::Object>();
    const Napi::Value w = l.Get("weight"), b = l.Get("bias");
    if (!w.IsTypedArray() || w.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        !b.IsTypedArray() || b.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw Napi::TypeError::New(
          env, "Expected Float32Array weight and bias in layers[" + std::to_string(i) + "]");
    }
    torch_bench::EagerLinear layer{w.As<Napi::Float32Array>().Data(), b.As<Napi::Float32Array>().Data(),
                                   l.Get("inDim").As<Napi::Number>().Int64Value(),
                                   l.Get("outDim").As<Napi::Number>().Int64Value()};
    if (static_cast<int64_t>(w.As<Napi::Float32Array>().ElementLength()) != layer.in_dim * layer.out_dim ||
        static_cast<int64_t>(b.As<Napi::Float32Array>().ElementLength()) != layer.out_dim ||
        (i > 0 && layer.in_dim != layers.back().out_dim)) {
      throw Napi::TypeError::New(env, "Inconsistent shapes in layers[" + std::to_string(i) + "]");
    }
    layers.push_back(layer);
    pins.push_back(Napi::Persistent(w.As<Napi::Object>()));
    pins.push_back(Napi::Persistent(b.As<Napi::Object>()));
  }
  if (x.length != static_cast<size_t>(n * layers.front().in_dim) || layers.back().out_dim != code_dim ||
      codebooks.length != static_cast<size_t>(levels * size * code_dim) ||
      out.length != static_cast<size_t>(n * levels)) {
    throw Napi::TypeError::New(env, "Inconsistent shapes of x, codebooks or out");
  }
  return PromiseWorker::start(
      env,
      [=]() {
        torch_bench::tokenize_eager(x.data, n, layers, codebooks.data, levels, size, code_dim, out.data);
        return 0.0;
      },
      std::move(pins));
}

}  // namespace

void register_tokenize_bench_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("_tokenizeEager", Napi::Function::New(env, TokenizeEager, "_tokenizeEager"));
}

}  // namespace mmesid::addon
