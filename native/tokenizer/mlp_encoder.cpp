#include "mlp_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "common.h"
#include "gemm.h"
#include "rq_encode.h"

namespace mmesid::tokenizer {

namespace k = mmesid::kernels;

namespace {

int64_t widest_hidden(const ModalityModel& m) {
  int64_t widest = 0;
  for (size_t i = 0; i + 1 < m.layers.size(); ++i) widest = std::max(widest, m.layers[i].out_dim);
  return widest;
}

std::string layer_name(const ModalityModel& m, size_t i) {
  return "modality \"" + m.name + "\" encoder layer " + std::to_string(i);
}

void check_finite_weights(const std::vector<float>& values, const std::string& what) {
  const int64_t bad = k::first_non_finite(values.data(), static_cast<int64_t>(values.size()), 1);
  if (bad >= 0) {
    throw std::invalid_argument(what + " holds a non-finite value (" + std::to_string(values[bad]) +
                                " at index " + std::to_string(bad) + ")");
  }
}

/// Throws kernels::ArgumentError naming the first row of x [n, dim] with a NaN or ±Inf.
void require_finite_rows(const float* x, int64_t n, int64_t dim, int64_t row_offset, const std::string& label,
                         int threads) {
  const int64_t i = k::first_non_finite(x, n * dim, threads);
  if (i < 0) return;
  const float v = x[i];
  const std::string what = std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
  throw k::ArgumentError(
      label, "finite values",
      what + " at row " + std::to_string(row_offset + i / dim) + ", column " + std::to_string(i % dim));
}

/// A finite input can still overflow float32 inside the MLP; never hand the RQ kernel a NaN.
void require_finite_latent(const float* z, int64_t n, int64_t dim, int64_t row_offset,
                           const std::string& label, int threads) {
  const int64_t i = k::first_non_finite(z, n * dim, threads);
  if (i < 0) return;
  throw std::runtime_error("the encoder output of " + label + " row " + std::to_string(row_offset + i / dim) +
                           " overflowed float32 although the row is finite (input values too large)");
}

}  // namespace

void mlp_forward(const std::vector<LinearLayer>& layers, const float* x, int64_t n, float* z, float* hidden_a,
                 float* hidden_b, int threads) {
  if (n <= 0) return;
  const int t = k::resolve_threads(threads);
  const float* in = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LinearLayer& layer = layers[i];
    const bool last = i + 1 == layers.size();
    float* out = last ? z : (i % 2 == 0 ? hidden_a : hidden_b);
    const int64_t o = layer.out_dim;
    const float* bias = layer.bias.data();
#pragma omp parallel for schedule(static) num_threads(t) if (n * o >= (1 << 16))
    for (int64_t r = 0; r < n; ++r) std::memcpy(out + r * o, bias, static_cast<size_t>(o) * sizeof(float));
    k::sgemm(false, true, n, o, layer.in_dim, 1.0f, in, layer.in_dim, layer.weight.data(), layer.in_dim, 1.0f,
             out, o);
    if (!last) {
      const int64_t count = n * o;
#pragma omp parallel for simd schedule(static) num_threads(t) if (count >= (1 << 16))
      for (int64_t j = 0; j < count; ++j) out[j] = out[j] > 0.0f ? out[j] : 0.0f;
    }
    in = out;
  }
}

TokenizerModel::TokenizerModel(std::vector<ModalityModel> modalities) : modalities_(std::move(modalities)) {
  if (modalities_.empty()) throw std::invalid_argument("a tokenizer needs at least one modality");
  for (size_t mi = 0; mi < modalities_.size(); ++mi) {
    const ModalityModel& m = modalities_[mi];
    if (m.name.empty()) throw std::invalid_argument("modality " + std::to_string(mi) + " has an empty name");
    for (size_t mj = 0; mj < mi; ++mj) {
      if (modalities_[mj].name == m.name)
        throw std::invalid_argument("modality \"" + m.name + "\" appears twice");
    }
    if (m.layers.empty()) throw std::invalid_argument("modality \"" + m.name + "\" has no encoder layers");
    for (size_t i = 0; i < m.layers.size(); ++i) {
      const LinearLayer& l = m.layers[i];
      const std::string what = layer_name(m, i);
      if (l.in_dim < 1 || l.out_dim < 1) throw std::invalid_argument(what + " has a non-positive dimension");
      if (i > 0 && l.in_dim != m.layers[i - 1].out_dim) {
        throw std::invalid_argument(what + " takes " + std::to_string(l.in_dim) + " inputs but layer " +
                                    std::to_string(i - 1) + " produces " +
                                    std::to_string(m.layers[i - 1].out_dim));
      }
      if (static_cast<int64_t>(l.weight.size()) != l.out_dim * l.in_dim) {
        throw std::invalid_argument(what + " weight has " + std::to_string(l.weight.size()) +
                                    " values, expected [" + std::to_string(l.out_dim) + ", " +
                                    std::to_string(l.in_dim) + "]");
      }
      if (static_cast<int64_t>(l.bias.size()) != l.out_dim) {
        throw std::invalid_argument(what + " bias has " + std::to_string(l.bias.size()) +
                                    " values, expected " + std::to_string(l.out_dim));
      }
      check_finite_weights(l.weight, what + " weight");
      check_finite_weights(l.bias, what + " bias");
    }
    if (m.levels < 1 || m.codes < 1 || m.codes > 2147483647LL || m.code_dim < 1) {
      throw std::invalid_argument("modality \"" + m.name +
                                  "\" needs levels >= 1, 1 <= codes < 2^31, codeDim >= 1");
    }
    if (m.layers.back().out_dim != m.code_dim) {
      throw std::invalid_argument("modality \"" + m.name + "\": the last encoder layer produces " +
                                  std::to_string(m.layers.back().out_dim) + " values but codeDim is " +
                                  std::to_string(m.code_dim));
    }
    if (static_cast<int64_t>(m.codebooks.size()) != m.levels * m.codes * m.code_dim) {
      throw std::invalid_argument("modality \"" + m.name + "\" codebooks have " +
                                  std::to_string(m.codebooks.size()) + " values, expected [" +
                                  std::to_string(m.levels) + ", " + std::to_string(m.codes) + ", " +
                                  std::to_string(m.code_dim) + "]");
    }
    check_finite_weights(m.codebooks, "modality \"" + m.name + "\" codebooks");
  }
}

int TokenizerModel::find(const std::string& name) const {
  for (size_t i = 0; i < modalities_.size(); ++i) {
    if (modalities_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int64_t TokenizerModel::scratch_floats(int modality, int64_t n) const {
  const ModalityModel& m = modalities_.at(static_cast<size_t>(modality));
  return std::min(n, kEncodeTileRows) * (2 * widest_hidden(m) + m.code_dim);
}

int64_t TokenizerModel::bytes() const {
  int64_t total = 0;
  for (const ModalityModel& m : modalities_) {
    for (const LinearLayer& l : m.layers)
      total += static_cast<int64_t>((l.weight.size() + l.bias.size()) * sizeof(float));
    total += static_cast<int64_t>(m.codebooks.size() * sizeof(float));
  }
  return total;
}

void TokenizerModel::encode(int modality, const float* x, int64_t n, int32_t* codes, int threads,
                            int64_t row_offset, const std::string& label) const {
  if (modality < 0 || modality >= size())
    throw std::invalid_argument("no modality with index " + std::to_string(modality));
  if (n < 0) throw std::invalid_argument("a negative row count");
  if (n == 0) return;
  const ModalityModel& m = modalities_[static_cast<size_t>(modality)];
  const int64_t in_dim = m.input_dim(), e = m.code_dim, hidden = widest_hidden(m);
  require_finite_rows(x, n, in_dim, row_offset, label, threads);

  const int64_t tile = std::min(n, kEncodeTileRows);
  std::vector<float> scratch(static_cast<size_t>(tile * (2 * hidden + e)));
  float* z = scratch.data();
  float* hidden_a = z + tile * e;
  float* hidden_b = hidden_a + tile * hidden;
  k::RqEncodeShape shape;
  shape.dim = e;
  shape.levels = m.levels;
  shape.codebook_size = m.codes;
  shape.beam = 1;
  k::ScopedThreads guard(threads);
  for (int64_t start = 0; start < n; start += tile) {
    const int64_t rows = std::min(tile, n - start);
    mlp_forward(m.layers, x + start * in_dim, rows, z, hidden_a, hidden_b, threads);
    require_finite_latent(z, rows, e, row_offset + start, label, threads);
    shape.n = rows;
    k::rq_encode(z, m.codebooks.data(), shape, codes + start * m.levels, nullptr, threads);
  }
}

void TokenizerModel::encode_reference(int modality, const float* x, int64_t n, int32_t* codes,
                                      int64_t row_offset, const std::string& label) const {
  if (modality < 0 || modality >= size())
    throw std::invalid_argument("no modality with index " + std::to_string(modality));
  if (n <= 0) return;
  const ModalityModel& m = modalities_[static_cast<size_t>(modality)];
  require_finite_rows(x, n, m.input_dim(), row_offset, label, 1);
  std::vector<float> z(static_cast<size_t>(n * m.code_dim));
  mlp_forward_reference(m.layers, x, n, z.data());
  require_finite_latent(z.data(), n, m.code_dim, row_offset, label, 1);
  k::RqEncodeShape shape;
  shape.n = n;
  shape.dim = m.code_dim;
  shape.levels = m.levels;
  shape.codebook_size = m.codes;
  shape.beam = 1;
  k::rq_encode_reference(z.data(), m.codebooks.data(), shape, codes, nullptr);
}

}  // namespace mmesid::tokenizer
