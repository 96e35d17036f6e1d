#include "gemm.h"

#include <algorithm>

#include "common.h"

#ifdef MMESID_HAVE_CBLAS
#include <cblas.h>
#else
#include <omp.h>
#endif

namespace mmesid::kernels {

#ifdef MMESID_HAVE_CBLAS

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

#else

// Built without a BLAS: a cache-blocked loop nest, parallel over row blocks of C. Correct for every
// shape, an order of magnitude slower than OpenBLAS; the build prints a warning when it is used.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  constexpr int64_t kBlock = 64;
  const auto at = [&](int64_t i, int64_t p) { return trans_a ? a[p * lda + i] : a[i * lda + p]; };
  const auto bt = [&](int64_t p, int64_t j) { return trans_b ? b[j * ldb + p] : b[p * ldb + j]; };
#pragma omp parallel for schedule(dynamic, 1) if (!omp_in_parallel())
  for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
    const int64_t i1 = std::min(m, i0 + kBlock);
    for (int64_t i = i0; i < i1; ++i) {
      float* crow = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) crow[j] = beta == 0.0f ? 0.0f : beta * crow[j];
    }
    for (int64_t p0 = 0; p0 < k; p0 += kBlock) {
      const int64_t p1 = std::min(k, p0 + kBlock);
      for (int64_t i = i0; i < i1; ++i) {
        float* crow = c + i * ldc;
        for (int64_t p = p0; p < p1; ++p) {
          const float av = alpha * at(i, p);
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) crow[j] += av * bt(p, j);
        }
      }
    }
  }
}

#endif

const char* blas_name() {
  return MMESID_BLAS_NAME;
}

}  // namespace mmesid::kernels
