// Naive oracle of mlp_forward (see mlp_encoder.h): per row and output, the bias plus the dot product
// accumulated in double, rounded to float32 once, then ReLU between layers. No BLAS, single thread.
#include <algorithm>
#include <vector>

#include "../mlp_encoder.h"

namespace mmesid::tokenizer {

void mlp_forward_reference(const std::vector<LinearLayer>& layers, const float* x, int64_t n, float* z) {
  if (n <= 0 || layers.empty()) return;
  std::vector<float> in(x, x + n * layers.front().in_dim), out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LinearLayer& l = layers[i];
    const bool last = i + 1 == layers.size();
    out.assign(static_cast<size_t>(n * l.out_dim), 0.0f);
    for (int64_t r = 0; r < n; ++r) {
      const float* row = in.data() + r * l.in_dim;
      for (int64_t o = 0; o < l.out_dim; ++o) {
        const float* w = l.weight.data() + o * l.in_dim;
        double acc = l.bias[static_cast<size_t>(o)];
        for (int64_t p = 0; p < l.in_dim; ++p) acc += static_cast<double>(row[p]) * w[p];
        const float v = static_cast<float>(acc);
        out[static_cast<size_t>(r * l.out_dim + o)] = last || v > 0.0f ? v : 0.0f;
      }
    }
    in.swap(out);
  }
  std::copy(in.begin(), in.end(), z);
}

}  // namespace mmesid::tokenizer
