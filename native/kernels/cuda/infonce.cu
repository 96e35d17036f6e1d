// CUDA twin of the InfoNCE kernel (contract in ../infonce.h, declared in kernels_cuda.h).
//
// Same maths as the CPU kernel through the shared loss_math.h helpers. Rows are normalised into
// workspace copies; a stats kernel streams 32-column similarity tiles past each block's 32 rows,
// keeps an online log-sum-exp per row (run with a and b swapped for the column statistics of the
// symmetric loss) and picks the positives off the diagonal tiles. The backward recomputes the tiles,
// forms dS (info_nce_dscore) and accumulates dÂ = dS·B̂/τ into rows the block owns; the same kernel
// with the roles swapped gives dB̂ = dSᵀ·Â/τ, so there are no atomics. The normalisation backward
// runs last, in place. Correctness over speed; workspace O(n·d), freed on every path.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "../infonce.h"
#include "../loss_math.h"
#include "cuda_common.cuh"
#include "kernels_cuda.h"

namespace mmesid::kernels::cuda {
namespace {

constexpr int kTile = 32;
constexpr int kRowGroups = 8;
constexpr int kRowsPerThread = kTile / kRowGroups;
constexpr int kReduceThreads = 256;

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    if (count > 0)
      check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count * sizeof(T), stream),
                 "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_;
};

/// Sum over a 1-D block of kReduceThreads threads, returned to every thread.
__device__ double block_sum_all(double v) {
  __shared__ double partial[kReduceThreads / 32];
  __shared__ double total;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int w = 0; w < kReduceThreads / 32; ++w) s += partial[w];
    total = s;
  }
  __syncthreads();
  const double out = total;
  __syncthreads();
  return out;
}

/// unit = v / max(‖v‖, eps) per row, with the row's inverse scale and whether its backward projects.
__global__ void info_nce_normalize_forward_kernel(const float* __restrict__ v, long long n, long long dim,
                                                  float* __restrict__ unit, float* __restrict__ inv_norm,
                                                  unsigned char* __restrict__ projects) {
  for (long long i = blockIdx.x; i < n; i += gridDim.x) {
    const float* r = v + i * dim;
    double sq = 0.0;
    for (long long k = threadIdx.x; k < dim; k += blockDim.x) sq += static_cast<double>(r[k]) * r[k];
    const double norm = sqrt(block_sum_all(sq));
    const double inv = normalize_inverse(norm);
    for (long long k = threadIdx.x; k < dim; k += blockDim.x)
      unit[i * dim + k] = static_cast<float>(r[k] * inv);
    if (threadIdx.x == 0) {
      inv_norm[i] = static_cast<float>(inv);
      projects[i] = normalize_projects(norm) ? 1 : 0;
    }
  }
}

/// acc[q] = ⟨xs[i0 + ty + 8q], ys[j0 + tx]⟩ through shared-memory tiles (zero outside the matrix).
__device__ __forceinline__ void similarity_tile(const float* __restrict__ xs, const float* __restrict__ ys,
                                                long long n, long long dim, long long i0, long long j0,
                                                float (&tile_i)[kTile][kTile + 1],
                                                float (&tile_j)[kTile][kTile + 1],
                                                float (&acc)[kRowsPerThread]) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int q = 0; q < kRowsPerThread; ++q) acc[q] = 0.f;
  for (long long k0 = 0; k0 < dim; k0 += kTile) {
    for (int q = 0; q < kRowsPerThread; ++q) {
      const int r = ty + kRowGroups * q;
      const long long k = k0 + tx;
      tile_i[r][tx] = (i0 + r < n && k < dim) ? xs[(i0 + r) * dim + k] : 0.f;
      tile_j[r][tx] = (j0 + r < n && k < dim) ? ys[(j0 + r) * dim + k] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTile; ++kk) {
      const float b = tile_j[tx][kk];
#pragma unroll
      for (int q = 0; q < kRowsPerThread; ++q) acc[q] += tile_i[ty + kRowGroups * q][kk] * b;
    }
    __syncthreads();
  }
}

/// lse[i] = log Σ_j exp(⟨xs_i, ys_j⟩/τ): one block per 32 rows, online over 32-column tiles (a warp is
/// one row group, so a tile row reduces with shuffles). With `positive`, also writes the diagonal
/// s_ii from the same tiles, so a one-element row gives lse − s_ii = 0 exactly.
__global__ void __launch_bounds__(kTile* kRowGroups)
    info_nce_lse_forward_kernel(const float* __restrict__ xs, const float* __restrict__ ys, long long n,
                                long long dim, float inv_tau, float* __restrict__ lse,
                                float* __restrict__ positive) {
  __shared__ float tile_i[kTile][kTile + 1];
  __shared__ float tile_j[kTile][kTile + 1];
  const long long i0 = static_cast<long long>(blockIdx.x) * kTile;
  LseAccumulator<float> row_lse[kRowsPerThread];
  for (long long j0 = 0; j0 < n; j0 += kTile) {
    float acc[kRowsPerThread];
    similarity_tile(xs, ys, n, dim, i0, j0, tile_i, tile_j, acc);
    const bool valid = j0 + threadIdx.x < n;
    for (int q = 0; q < kRowsPerThread; ++q) {
      const float s = valid ? acc[q] * inv_tau : -INFINITY;
      if (positive != nullptr && valid && i0 + threadIdx.y + kRowGroups * q == j0 + threadIdx.x) {
        positive[j0 + threadIdx.x] = s;
      }
      float m = s;
      for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
      float e = valid ? hd_exp(s - m) : 0.f;
      for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
      row_lse[q].merge(m, e);
    }
  }
  if (threadIdx.x == 0) {
    for (int q = 0; q < kRowsPerThread; ++q) {
      const long long i = i0 + threadIdx.y + kRowGroups * q;
      if (i < n) lse[i] = row_lse[q].value();
    }
  }
}

/// dX[i] = Σ_j dS(i, j)·Y_j/τ for the 32 rows the block owns, where dS(i, j) = info_nce_dscore with the
/// x-side statistics (lse_x, w_x) as the row direction and the y-side ones as the column direction.
__global__ void __launch_bounds__(kTile* kRowGroups)
    info_nce_tile_backward_kernel(const float* __restrict__ xs, const float* __restrict__ ys, long long n,
                                  long long dim, float inv_tau, const float* __restrict__ lse_x,
                                  const float* __restrict__ lse_y, float w_x, float w_y,
                                  float* __restrict__ dx) {
  __shared__ float tile_i[kTile][kTile + 1];
  __shared__ float tile_j[kTile][kTile + 1];
  __shared__ float dscore[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const long long i0 = static_cast<long long>(blockIdx.x) * kTile;
  for (int q = 0; q < kRowsPerThread; ++q) {
    const long long i = i0 + ty + kRowGroups * q;
    if (i < n) {
      for (long long k = tx; k < dim; k += kTile) dx[i * dim + k] = 0.f;
    }
  }
  const float diagonal = info_nce_diagonal_term(w_x, w_y);
  for (long long j0 = 0; j0 < n; j0 += kTile) {
    float acc[kRowsPerThread];
    similarity_tile(xs, ys, n, dim, i0, j0, tile_i, tile_j, acc);
    const long long j = j0 + tx;
    for (int q = 0; q < kRowsPerThread; ++q) {
      const int r = ty + kRowGroups * q;
      const long long i = i0 + r;
      float g = 0.f;
      if (i < n && j < n) {
        g = info_nce_dscore(acc[q] * inv_tau, w_x != 0.f ? lse_x[i] : 0.f, w_y != 0.f ? lse_y[j] : 0.f, w_x,
                            w_y);
        if (i == j) g -= diagonal;
      }
      dscore[r][tx] = g * inv_tau;
    }
    __syncthreads();
    for (long long k0 = 0; k0 < dim; k0 += kTile) {
      for (int q = 0; q < kRowsPerThread; ++q) {
        const int r = ty + kRowGroups * q;
        const long long k = k0 + tx;
        tile_j[r][tx] = (j0 + r < n && k < dim) ? ys[(j0 + r) * dim + k] : 0.f;
      }
      __syncthreads();
      for (int q = 0; q < kRowsPerThread; ++q) {
        const int r = ty + kRowGroups * q;
        float s = 0.f;
#pragma unroll 8
        for (int jj = 0; jj < kTile; ++jj) s += dscore[r][jj] * tile_j[jj][tx];
        const long long i = i0 + r, k = k0 + tx;
        if (i < n && k < dim) dx[i * dim + k] += s;
      }
      __syncthreads();
    }
  }
}

/// In place: g ← (g − û(û·g))·inv, or g·inv for clamped rows.
__global__ void info_nce_normalize_backward_kernel(float* __restrict__ g, const float* __restrict__ unit,
                                                   const float* __restrict__ inv_norm,
                                                   const unsigned char* __restrict__ projects, long long n,
                                                   long long dim) {
  for (long long i = blockIdx.x; i < n; i += gridDim.x) {
    float* gi = g + i * dim;
    const float* u = unit + i * dim;
    double dot = 0.0;
    for (long long k = threadIdx.x; k < dim; k += blockDim.x) dot += static_cast<double>(u[k]) * gi[k];
    dot = block_sum_all(dot);
    const float proj = projects[i] ? static_cast<float>(dot) : 0.f;
    const float inv = inv_norm[i];
    for (long long k = threadIdx.x; k < dim; k += blockDim.x) gi[k] = (gi[k] - u[k] * proj) * inv;
  }
}

void check_launch(const char* what) {
  check_cuda(cudaGetLastError(), what);
}

}  // namespace

double info_nce(const float* a, const float* b, int64_t n, int64_t dim, double temperature, bool symmetric,
                float* grad_a, float* grad_b, void* stream) {
  const char* what = "info_nce";
  require(n >= 1, what, "n must be >= 1, got " + std::to_string(n));
  require(dim >= 1, what, "dim must be >= 1, got " + std::to_string(dim));
  require(temperature > 0, what, "temperature must be > 0, got " + std::to_string(temperature));
  require((grad_a == nullptr) == (grad_b == nullptr), what,
          "grad_a and grad_b must be both given or both null");
  const cudaStream_t s = as_stream(stream);
  const size_t nd = static_cast<size_t>(n * dim), nn = static_cast<size_t>(n);

  DeviceBuffer<float> ah(nd, s), bh(nd, s), inv_a(nn, s), inv_b(nn, s), lse_row(nn, s),
      lse_col(symmetric ? nn : 0, s);
  DeviceBuffer<unsigned char> proj_a(nn, s), proj_b(nn, s);
  DeviceBuffer<float> positive(nn, s);
  const unsigned row_blocks = grid_for(n, 1);
  const unsigned tiles = static_cast<unsigned>((n + kTile - 1) / kTile);
  const dim3 block(kTile, kRowGroups);
  const float inv_tau = static_cast<float>(1.0 / temperature);

  info_nce_normalize_forward_kernel<<<row_blocks, kReduceThreads, 0, s>>>(a, n, dim, ah.get(), inv_a.get(),
                                                                          proj_a.get());
  check_launch("info_nce_normalize_forward_kernel launch");
  info_nce_normalize_forward_kernel<<<row_blocks, kReduceThreads, 0, s>>>(b, n, dim, bh.get(), inv_b.get(),
                                                                          proj_b.get());
  check_launch("info_nce_normalize_forward_kernel launch");
  info_nce_lse_forward_kernel<<<tiles, block, 0, s>>>(ah.get(), bh.get(), n, dim, inv_tau, lse_row.get(),
                                                      positive.get());
  check_launch("info_nce_lse_forward_kernel launch");
  if (symmetric) {
    info_nce_lse_forward_kernel<<<tiles, block, 0, s>>>(bh.get(), ah.get(), n, dim, inv_tau, lse_col.get(),
                                                        nullptr);
    check_launch("info_nce_lse_forward_kernel launch");
  }

  double w_row, w_col;
  info_nce_weights(n, symmetric, w_row, w_col);
  if (grad_a) {
    info_nce_tile_backward_kernel<<<tiles, block, 0, s>>>(ah.get(), bh.get(), n, dim, inv_tau, lse_row.get(),
                                                          lse_col.get(), static_cast<float>(w_row),
                                                          static_cast<float>(w_col), grad_a);
    check_launch("info_nce_tile_backward_kernel launch");
    info_nce_tile_backward_kernel<<<tiles, block, 0, s>>>(bh.get(), ah.get(), n, dim, inv_tau, lse_col.get(),
                                                          lse_row.get(), static_cast<float>(w_col),
                                                          static_cast<float>(w_row), grad_b);
    check_launch("info_nce_tile_backward_kernel launch");
    info_nce_normalize_backward_kernel<<<row_blocks, kReduceThreads, 0, s>>>(grad_a, ah.get(), inv_a.get(),
                                                                             proj_a.get(), n, dim);
    check_launch("info_nce_normalize_backward_kernel launch");
    info_nce_normalize_backward_kernel<<<row_blocks, kReduceThreads, 0, s>>>(grad_b, bh.get(), inv_b.get(),
                                                                             proj_b.get(), n, dim);
    check_launch("info_nce_normalize_backward_kernel launch");
  }

  std::vector<float> lse_row_h(nn), lse_col_h(symmetric ? nn : 0);
  std::vector<float> positive_h(nn);
  check_cuda(cudaMemcpyAsync(lse_row_h.data(), lse_row.get(), nn * sizeof(float), cudaMemcpyDeviceToHost, s),
             "cudaMemcpyAsync");
  if (symmetric) {
    check_cuda(
        cudaMemcpyAsync(lse_col_h.data(), lse_col.get(), nn * sizeof(float), cudaMemcpyDeviceToHost, s),
        "cudaMemcpyAsync");
  }
  check_cuda(
      cudaMemcpyAsync(positive_h.data(), positive.get(), nn * sizeof(float), cudaMemcpyDeviceToHost, s),
      "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  double row_part = 0.0, col_part = 0.0;
  for (size_t i = 0; i < nn; ++i) {
    row_part += static_cast<double>(lse_row_h[i]) - static_cast<double>(positive_h[i]);
    if (symmetric) col_part += static_cast<double>(lse_col_h[i]) - static_cast<double>(positive_h[i]);
  }
  return w_row * row_part + w_col * col_part;
}

}  // namespace mmesid::kernels::cuda
