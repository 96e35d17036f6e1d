// The one door to BLAS for the kernels: single-precision GEMM on row-major buffers.
// Linked against the system CBLAS (OpenBLAS, OpenMP variant, on Debian).
#pragma once

#include <cstdint>

namespace mmesid::kernels {

/// C[m, n] = alpha · op(A) · op(B) + beta · C, all row-major.
/// op(A) is [m, k]: A is [m, k] (lda >= k) or, when trans_a, [k, m] (lda >= m); likewise B.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

/// Name of the BLAS library the kernels were built against (for diagnostics).
const char* blas_name();

}  // namespace mmesid::kernels
