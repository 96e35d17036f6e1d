#include "tokenizer_exports.h"

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "addon/common/napi_util.h"
#include "tokenizer/mlp_encoder.h"

namespace mmesid::addon {
namespace {

namespace tok = mmesid::tokenizer;

/// What a handle's functions share: the model until dispose(). Workers copy the shared_ptr, so the
/// weights outlive a dispose() that races with running encodes.
struct TokenizerState {
  std::mutex mutex;
  std::shared_ptr<const tok::TokenizerModel> model;

  std::shared_ptr<const tok::TokenizerModel> get() {
    std::lock_guard<std::mutex> lock(mutex);
    return model;
  }
};

Napi::Error invalid(Napi::Env env, const std::string& message) {
  return make_error(env, kCodeInvalidArgument, message);
}

int64_t integer_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw invalid(env, "Expected an integer for " + where + "." + key);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || static_cast<double>(static_cast<int64_t>(d)) != d) {
    throw invalid(env, "Expected a non-negative integer for " + where + "." + key);
  }
  return static_cast<int64_t>(d);
}

std::vector<float> floats_field(Napi::Env env, const Napi::Object& o, const char* key,
                                const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw invalid(env, "Expected a Float32Array for " + where + "." + key);
  }
  const Napi::Float32Array a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Object object_at(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject() || v.IsArray()) throw invalid(env, "Expected an object for " + where);
  return v.As<Napi::Object>();
}

Napi::Array array_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw invalid(env, "Expected an array for " + where + "." + key);
  return v.As<Napi::Array>();
}

tok::ModalityModel read_modality(Napi::Env env, const Napi::Object& o, const std::string& where) {
  tok::ModalityModel m;
  const Napi::Value name = o.Get("name");
  if (!name.IsString()) throw invalid(env, "Expected a string for " + where + ".name");
  m.name = name.As<Napi::String>().Utf8Value();
  const Napi::Array layers = array_field(env, o, "layers", where);
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    const std::string at = where + ".layers[" + std::to_string(i) + "]";
    const Napi::Object l = object_at(env, layers.Get(i), at);
    tok::LinearLayer layer;
    layer.in_dim = integer_field(env, l, "inDim", at);
    layer.out_dim = integer_field(env, l, "outDim", at);
    layer.weight = floats_field(env, l, "weight", at);
    layer.bias = floats_field(env, l, "bias", at);
    m.layers.push_back(std::move(layer));
  }
  m.levels = integer_field(env, o, "levels", where);
  m.codes = integer_field(env, o, "codes", where);
  m.code_dim = integer_field(env, o, "codeDim", where);
  m.codebooks = floats_field(env, o, "codebooks", where);
  return m;
}

std::string optional_string(const Napi::Object& o, const char* key, const std::string& fallback) {
  const Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}

Napi::Value Encode(const std::shared_ptr<TokenizerState>& state, const Napi::CallbackInfo& info) {
  OptionsReader r(info);
  const Napi::Object options = info[0].As<Napi::Object>();
  std::shared_ptr<const tok::TokenizerModel> model = state->get();
  if (!model) throw invalid(r.env(), "This tokenizer was disposed: encode() is no longer available");
  const std::string name = optional_string(options, "modality", "");
  const int modality = model->find(name);
  if (modality < 0)
    throw invalid(r.env(), "Expected a modality of this tokenizer but received \"" + name + "\"");
  const auto x = r.f32("x");
  const auto codes = r.i32("codes");
  const int64_t n = r.integer("n");
  const int threads = static_cast<int>(r.integer("threads"));
  const Napi::Value offset_value = options.Get("rowOffset");
  const int64_t row_offset = offset_value.IsUndefined() ? 0 : r.integer("rowOffset");
  const std::string label = optional_string(options, "label", "options.x");
  const bool reference = r.boolean_or("_reference", false);
  const tok::ModalityModel& m = model->modality(modality);
  if (n < 0 || x.length != static_cast<size_t>(n * m.input_dim())) {
    throw invalid(r.env(), "Expected x of [n=" + std::to_string(n) + ", inputDim=" +
                               std::to_string(m.input_dim()) + "] (" + std::to_string(n * m.input_dim()) +
                               " floats) but received " + std::to_string(x.length));
  }
  if (codes.length != static_cast<size_t>(n * m.levels)) {
    throw invalid(r.env(), "Expected codes of [n=" + std::to_string(n) +
                               ", levels=" + std::to_string(m.levels) + "] but received " +
                               std::to_string(codes.length) + " elements");
  }
  return PromiseWorker::start(
      r.env(),
      [model, modality, x, codes, n, threads, row_offset, label, reference]() {
        if (reference) {
          model->encode_reference(modality, x.data, n, codes.data, row_offset, label);
        } else {
          model->encode(modality, x.data, n, codes.data, threads, row_offset, label);
        }
        return 0.0;
      },
      r.take_pins());
}

Napi::Value TokenizerCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "Expected an options object");
  const Napi::Object options = info[0].As<Napi::Object>();
  const Napi::Array list = array_field(env, options, "modalities", "options");
  std::vector<tok::ModalityModel> modalities;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    const std::string where = "options.modalities[" + std::to_string(i) + "]";
    modalities.push_back(read_modality(env, object_at(env, list.Get(i), where), where));
  }
  auto state = std::make_shared<TokenizerState>();
  try {
    state->model = std::make_shared<const tok::TokenizerModel>(std::move(modalities));
  } catch (const std::bad_alloc&) {
    throw make_error(env, kCodeOutOfMemory, "out of memory while copying the tokenizer weights");
  } catch (const std::invalid_argument& e) {
    throw invalid(env, e.what());
  }

  Napi::Object handle = Napi::Object::New(env);
  handle.Set(
      "encode",
      Napi::Function::New(
          env, [state](const Napi::CallbackInfo& ci) -> Napi::Value { return Encode(state, ci); }, "encode"));
  handle.Set("dispose", Napi::Function::New(
                            env,
                            [state](const Napi::CallbackInfo& ci) -> Napi::Value {
                              std::shared_ptr<const tok::TokenizerModel> released;
                              {
                                std::lock_guard<std::mutex> lock(state->mutex);
                                released.swap(state->model);
                              }
                              // Freed here unless a running encode still holds it (then when it ends).
                              return ci.Env().Undefined();
                            },
                            "dispose"));
  handle.Set("bytes", Napi::Function::New(
                          env,
                          [state](const Napi::CallbackInfo& ci) -> Napi::Value {
                            const auto model = state->get();
                            return Napi::Number::New(ci.Env(),
                                                     model ? static_cast<double>(model->bytes()) : 0.0);
                          },
                          "bytes"));
  return handle;
}

}  // namespace

void register_tokenizer_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenizerCreate", Napi::Function::New(env, TokenizerCreate, "tokenizerCreate"));
}

}  // namespace mmesid::addon
