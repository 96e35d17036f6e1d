// Naive LoRA linear references (contract: ../lora.h): plain loops, double accumulation, written to be
// obviously right rather than fast. The low-rank intermediates u = x·Aᵀ and v = grad_y·B are kept in
// double so the references carry no float rounding of their own beyond the final store. With x_lora
// (LoRA dropout's drop(x)) the low-rank path reads x_lora and its input gradient is grad_x_lora; x_lora
// = nullptr is x_lora = x with that gradient summed into grad_x.
#include <string>
#include <vector>

#include "../lora.h"

namespace mmesid::kernels {
namespace {

void check_reference_shape(const LoraShape& s, const char* what) {
  require(s.rows >= 1 && s.in_dim >= 1 && s.out_dim >= 1 && s.rank >= 1, what,
          "rows, in_dim, out_dim and rank must be >= 1 (got rows=" + std::to_string(s.rows) +
              ", in_dim=" + std::to_string(s.in_dim) + ", out_dim=" + std::to_string(s.out_dim) +
              ", rank=" + std::to_string(s.rank) + ")");
}

/// u[i, k] = Σ_c x[i, c]·A[k, c], in double.
std::vector<double> project_down(const float* x, const float* lora_a, const LoraShape& s) {
  std::vector<double> u(static_cast<size_t>(s.rows * s.rank));
  for (int64_t i = 0; i < s.rows; ++i) {
    for (int64_t k = 0; k < s.rank; ++k) {
      double acc = 0.0;
      for (int64_t c = 0; c < s.in_dim; ++c) {
        acc += static_cast<double>(x[i * s.in_dim + c]) * lora_a[k * s.in_dim + c];
      }
      u[i * s.rank + k] = acc;
    }
  }
  return u;
}

}  // namespace

void lora_linear_forward_reference(const float* x, const float* x_lora, const float* weight,
                                   const float* bias, const float* lora_a, const float* lora_b,
                                   const LoraShape& shape, float* y) {
  check_reference_shape(shape, "lora_linear_forward_reference");
  const int64_t rows = shape.rows, in = shape.in_dim, out = shape.out_dim, r = shape.rank;
  const std::vector<double> u = project_down(x_lora ? x_lora : x, lora_a, shape);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < out; ++j) {
      double base = bias ? static_cast<double>(bias[j]) : 0.0;
      for (int64_t c = 0; c < in; ++c) base += static_cast<double>(x[i * in + c]) * weight[j * in + c];
      double low = 0.0;
      for (int64_t k = 0; k < r; ++k) low += u[i * r + k] * lora_b[j * r + k];
      y[i * out + j] = static_cast<float>(base + static_cast<double>(shape.scale) * low);
    }
  }
}

void lora_linear_backward_reference(const float* x, const float* x_lora, const float* weight,
                                    const float* lora_a, const float* lora_b, const float* grad_y,
                                    const LoraShape& shape, float* grad_x, float* grad_x_lora, float* grad_a,
                                    float* grad_b, float* grad_bias) {
  check_reference_shape(shape, "lora_linear_backward_reference");
  require(!grad_x_lora || x_lora, "lora_linear_backward_reference",
          "grad_x_lora needs x_lora (without it the low-rank gradient is part of grad_x)");
  const int64_t rows = shape.rows, in = shape.in_dim, out = shape.out_dim, r = shape.rank;
  const double scale = shape.scale;
  const float* xl = x_lora ? x_lora : x;  // the low-rank path's input

  // v[i, k] = Σ_j grad_y[i, j]·B[j, k]
  std::vector<double> v(static_cast<size_t>(rows * r));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < r; ++k) {
      double acc = 0.0;
      for (int64_t j = 0; j < out; ++j) acc += static_cast<double>(grad_y[i * out + j]) * lora_b[j * r + k];
      v[i * r + k] = acc;
    }
  }

  if (grad_x || grad_x_lora) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t c = 0; c < in; ++c) {
        double base = 0.0;
        for (int64_t j = 0; j < out; ++j)
          base += static_cast<double>(grad_y[i * out + j]) * weight[j * in + c];
        double low = 0.0;
        for (int64_t k = 0; k < r; ++k) low += v[i * r + k] * lora_a[k * in + c];
        if (x_lora) {
          if (grad_x) grad_x[i * in + c] = static_cast<float>(base);
          if (grad_x_lora) grad_x_lora[i * in + c] = static_cast<float>(scale * low);
        } else {
          grad_x[i * in + c] = static_cast<float>(base + scale * low);
        }
      }
    }
  }
  if (grad_a) {
    for (int64_t k = 0; k < r; ++k) {
      for (int64_t c = 0; c < in; ++c) {
        double acc = 0.0;
        for (int64_t i = 0; i < rows; ++i) acc += v[i * r + k] * xl[i * in + c];
        grad_a[k * in + c] = static_cast<float>(scale * acc);
      }
    }
  }
  if (grad_b) {
    const std::vector<double> u = project_down(xl, lora_a, shape);
    for (int64_t j = 0; j < out; ++j) {
      for (int64_t k = 0; k < r; ++k) {
        double acc = 0.0;
        for (int64_t i = 0; i < rows; ++i) acc += static_cast<double>(grad_y[i * out + j]) * u[i * r + k];
        grad_b[j * r + k] = static_cast<float>(scale * acc);
      }
    }
  }
  if (grad_bias) {
    for (int64_t j = 0; j < out; ++j) {
      double acc = 0.0;
      for (int64_t i = 0; i < rows; ++i) acc += grad_y[i * out + j];
      grad_bias[j] = static_cast<float>(acc);
    }
  }
}

}  // namespace mmesid::kernels
