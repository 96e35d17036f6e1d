// Shared helpers of the CUDA twins: error checking that turns CUDA failures into std::runtime_error
// (never abort), stream casting, grid sizing, and a shared-memory tiled SGEMM.
//
// The twins do not depend on cuBLAS: some CUDA installs (including the one on our build machines)
// ship nvcc and the runtime without it, and the GEMMs here are part of fused kernels anyway.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace mmesid::kernels::cuda {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

inline cudaStream_t as_stream(void* stream) {
  return static_cast<cudaStream_t>(stream);
}

inline unsigned grid_for(long long work, unsigned block) {
  const long long blocks = (work + block - 1) / block;
  return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

constexpr int kGemmTile = 32;

/// Row-major C[m, n] = alpha·op(A)·op(B) + beta·C, op(A) [m, k], op(B) [k, n]; 32×32 output tile per
/// block, 32×8 threads each computing 4 outputs, operands staged through shared memory.
template <bool TransA, bool TransB>
__global__ void sgemm_tiled_kernel(int m, int n, int k, float alpha, const float* __restrict__ a, int lda,
                                   const float* __restrict__ b, int ldb, float beta, float* __restrict__ c,
                                   int ldc) {
  __shared__ float tile_a[kGemmTile][kGemmTile + 1];
  __shared__ float tile_b[kGemmTile][kGemmTile + 1];
  const int row0 = blockIdx.y * kGemmTile;
  const int col0 = blockIdx.x * kGemmTile;
  const int tx = threadIdx.x;  // 0..31
  const int ty = threadIdx.y;  // 0..7
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int k0 = 0; k0 < k; k0 += kGemmTile) {
    for (int r = ty; r < kGemmTile; r += 8) {
      const int gi = row0 + r, gk = k0 + tx;
      float va = 0.f;
      if (gi < m && gk < k)
        va = TransA ? a[static_cast<long long>(gk) * lda + gi] : a[static_cast<long long>(gi) * lda + gk];
      tile_a[r][tx] = va;
      const int bk = k0 + r, bj = col0 + tx;
      float vb = 0.f;
      if (bk < k && bj < n)
        vb = TransB ? b[static_cast<long long>(bj) * ldb + bk] : b[static_cast<long long>(bk) * ldb + bj];
      tile_b[r][tx] = vb;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kGemmTile; ++kk) {
      const float bv = tile_b[kk][tx];
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] += tile_a[ty + 8 * q][kk] * bv;
    }
    __syncthreads();
  }
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int gi = row0 + ty + 8 * q, gj = col0 + tx;
    if (gi < m && gj < n) {
      float* out = c + static_cast<long long>(gi) * ldc + gj;
      *out = alpha * acc[q] + (beta == 0.f ? 0.f : beta * *out);
    }
  }
}

/// Host launcher for sgemm_tiled_kernel on `stream`. Throws std::runtime_error on a launch failure.
inline void sgemm(cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                  const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  const dim3 block(kGemmTile, 8);
  const dim3 grid((n + kGemmTile - 1) / kGemmTile, (m + kGemmTile - 1) / kGemmTile);
  if (!trans_a && !trans_b)
    sgemm_tiled_kernel<false, false>
        <<<grid, block, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else if (!trans_a && trans_b)
    sgemm_tiled_kernel<false, true><<<grid, block, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else if (trans_a && !trans_b)
    sgemm_tiled_kernel<true, false><<<grid, block, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    sgemm_tiled_kernel<true, true><<<grid, block, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  check_cuda(cudaGetLastError(), "sgemm_tiled_kernel launch");
}

}  // namespace mmesid::kernels::cuda
