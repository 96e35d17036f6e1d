// Naive scalar oracle for rq_encode (see rq_encode.h): per item, explicit double-precision residual
// vectors for every beam, every (beam, code) candidate scored as ‖r − c‖² summed in double, all
// candidates fully sorted with rq_candidate_before, the first B kept. Single thread, no tiling.
#include <algorithm>
#include <vector>

#include "../rq_encode.h"
#include "../rq_encode_math.h"

namespace mmesid::kernels {

void rq_encode_reference(const float* x, const float* codebooks, const RqEncodeShape& shape, int32_t* codes,
                         float* sq_error) {
  rq_check_arguments("rq_encode_reference", x, codebooks, shape, codes);
  const int64_t n = shape.n, d = shape.dim, L = shape.levels, K = shape.codebook_size;
  const int64_t beam = shape.beam;

  struct Candidate {
    double err;
    int32_t parent;
    int32_t code;
  };
  const auto before = [](const Candidate& a, const Candidate& b) {
    return rq_candidate_before(a.err, a.parent, a.code, b.err, b.parent, b.code);
  };

  std::vector<Candidate> candidates;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    std::vector<std::vector<double>> residuals(1, std::vector<double>(xi, xi + d));
    std::vector<std::vector<int32_t>> sequences(1);
    for (int64_t l = 0; l < L; ++l) {
      const float* book = codebooks + l * K * d;
      candidates.clear();
      for (size_t b = 0; b < residuals.size(); ++b) {
        for (int64_t c = 0; c < K; ++c) {
          double err = 0.0;
          for (int64_t k = 0; k < d; ++k) {
            const double diff = residuals[b][k] - static_cast<double>(book[c * d + k]);
            err += diff * diff;
          }
          candidates.push_back({err, static_cast<int32_t>(b), static_cast<int32_t>(c)});
        }
      }
      std::sort(candidates.begin(), candidates.end(), before);
      const size_t kept = static_cast<size_t>(std::min<int64_t>(beam, candidates.size()));
      std::vector<std::vector<double>> next_residuals(kept);
      std::vector<std::vector<int32_t>> next_sequences(kept);
      for (size_t r = 0; r < kept; ++r) {
        const Candidate& cand = candidates[r];
        next_residuals[r] = residuals[cand.parent];
        for (int64_t k = 0; k < d; ++k) {
          next_residuals[r][k] -= static_cast<double>(book[cand.code * d + k]);
        }
        next_sequences[r] = sequences[cand.parent];
        next_sequences[r].push_back(cand.code);
      }
      residuals.swap(next_residuals);
      sequences.swap(next_sequences);
    }
    std::copy(sequences[0].begin(), sequences[0].end(), codes + i * L);
    if (sq_error != nullptr) {
      double total = 0.0;
      for (int64_t k = 0; k < d; ++k) {
        double recon = 0.0;
        for (int64_t l = 0; l < L; ++l) {
          recon += static_cast<double>(codebooks[(l * K + sequences[0][l]) * d + k]);
        }
        const double diff = static_cast<double>(xi[k]) - recon;
        total += diff * diff;
      }
      sq_error[i] = static_cast<float>(total);
    }
  }
}

}  // namespace mmesid::kernels
