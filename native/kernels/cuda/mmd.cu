// CUDA twin of the MK-MMD kernel (contract in ../mmd.h, declared in kernels_cuda.h).
//
// Same maths as the CPU kernel, through the shared loss_math.h helpers: z = [x; y] is centred (double
// mean), σ² comes from the centred squared norms (summed on the host in double, which also lets the
// zero-distance check throw), then one fused kernel walks the full 2n × 2n matrix: each block owns 32
// rows of z, loops over all 32-column tiles, builds the Gram tile in shared memory, turns it into
// kernel values (loss) and gradient coefficients M, and accumulates −M·Z_J into its own gradient rows
// (no atomics); rowsum(M)⊙z is added at the end. Correctness over speed: the symmetry of the kernel
// matrix is not exploited here. Workspace O(n·d), freed on every path.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "../loss_math.h"
#include "../mmd.h"
#include "cuda_common.cuh"
#include "kernels_cuda.h"

namespace mmesid::kernels::cuda {
namespace {

constexpr int kTile = 32;      // rows and columns of a tile; block = kTile × kRowGroups threads
constexpr int kRowGroups = 8;  // each thread covers kTile / kRowGroups rows of a tile
constexpr int kRowsPerThread = kTile / kRowGroups;
constexpr int kReduceThreads = 256;

/// Device buffer allocated and freed on a stream (RAII: freed on every path, never throws on free).
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

__device__ __forceinline__ const float* z_row(const float* x, const float* y, long long n, long long dim,
                                              long long p) {
  return p < n ? x + p * dim : y + (p - n) * dim;
}

__device__ __forceinline__ float* grad_row(float* gx, float* gy, long long n, long long dim, long long p) {
  return p < n ? gx + p * dim : gy + (p - n) * dim;
}

/// Sum over a block of kReduceThreads threads; the result is valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double partial[kReduceThreads / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < kReduceThreads / 32; ++w) s += partial[w];
  }
  __syncthreads();
  return s;
}

/// mean[k] = Σ_p z_pk / 2n, one thread per column (coalesced across the warp).
__global__ void mmd_mean_forward_kernel(const float* __restrict__ x, const float* __restrict__ y, long long n,
                                        long long dim, double* __restrict__ mean) {
  for (long long k = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; k < dim;
       k += static_cast<long long>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (long long p = 0; p < 2 * n; ++p) s += z_row(x, y, n, dim, p)[k];
    mean[k] = s / static_cast<double>(2 * n);
  }
}

/// Centred rows (float), their squared norms (of the float rows) and Σ‖z_p − z̄‖² per row (double).
__global__ void mmd_centre_forward_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                          long long n, long long dim, const double* __restrict__ mean,
                                          float* __restrict__ zc, float* __restrict__ sq_norm,
                                          double* __restrict__ sq_row) {
  for (long long p = blockIdx.x; p < 2 * n; p += gridDim.x) {
    const float* z = z_row(x, y, n, dim, p);
    double sq = 0.0, sqf = 0.0;
    for (long long k = threadIdx.x; k < dim; k += blockDim.x) {
      const double c = static_cast<double>(z[k]) - mean[k];
      const float cf = static_cast<float>(c);
      zc[p * dim + k] = cf;
      sq += c * c;
      sqf += static_cast<double>(cf) * cf;
    }
    sq = block_sum(sq);
    sqf = block_sum(sqf);
    if (threadIdx.x == 0) {
      sq_row[p] = sq;
      sq_norm[p] = static_cast<float>(sqf);
    }
  }
}

/// One block per 32 rows of z: loss partial (and, with Grad, the gradient rows) over all columns.
template <bool Grad>
__global__ void __launch_bounds__(kTile* kRowGroups)
    mmd_tile_backward_kernel(const float* __restrict__ zc, const float* __restrict__ sq_norm, long long n,
                             long long dim, const float* __restrict__ coef, int kernels,
                             float* __restrict__ grad_x, float* __restrict__ grad_y,
                             double* __restrict__ loss_partial) {
  __shared__ float tile_i[kTile][kTile + 1];
  __shared__ float tile_j[kTile][kTile + 1];
  __shared__ float coef_m[kTile][kTile + 1];
  __shared__ double loss_warp[kRowGroups];
  const long long rows = 2 * n;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const long long i0 = static_cast<long long>(blockIdx.x) * kTile;
  float rowsum[kRowsPerThread] = {0.f, 0.f, 0.f, 0.f};
  double loss = 0.0;

  if (Grad) {
    for (int q = 0; q < kRowsPerThread; ++q) {
      const long long p = i0 + ty + kRowGroups * q;
      if (p >= rows) continue;
      float* out = grad_row(grad_x, grad_y, n, dim, p);
      for (long long k = tx; k < dim; k += kTile) out[k] = 0.f;
    }
  }

  for (long long j0 = 0; j0 < rows; j0 += kTile) {
    float acc[kRowsPerThread] = {0.f, 0.f, 0.f, 0.f};
    for (long long k0 = 0; k0 < dim; k0 += kTile) {
      for (int q = 0; q < kRowsPerThread; ++q) {
        const int r = ty + kRowGroups * q;
        const long long k = k0 + tx;
        tile_i[r][tx] = (i0 + r < rows && k < dim) ? zc[(i0 + r) * dim + k] : 0.f;
        tile_j[r][tx] = (j0 + r < rows && k < dim) ? zc[(j0 + r) * dim + k] : 0.f;
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
    const long long col = j0 + tx;
    for (int q = 0; q < kRowsPerThread; ++q) {
      const int r = ty + kRowGroups * q;
      const long long p = i0 + r;
      float m = 0.f;
      if (p < rows && col < rows) {
        float d2 = sq_norm[p] + sq_norm[col] - 2.f * acc[q];
        d2 = d2 < 0.f ? 0.f : d2;
        float value, slope;
        mk_gaussian(d2, coef, kernels, ScalarExp(), value, slope);
        const double w = mmd_pair_weight(p, col, n);
        loss += w * value;
        m = mmd_grad_coefficient(static_cast<float>(w), slope);
      }
      rowsum[q] += m;
      if (Grad) coef_m[r][tx] = m;
    }
    if (Grad) {
      __syncthreads();
      for (long long k0 = 0; k0 < dim; k0 += kTile) {
        for (int q = 0; q < kRowsPerThread; ++q) {
          const int r = ty + kRowGroups * q;
          const long long k = k0 + tx;
          tile_j[r][tx] = (j0 + r < rows && k < dim) ? zc[(j0 + r) * dim + k] : 0.f;
        }
        __syncthreads();
        for (int q = 0; q < kRowsPerThread; ++q) {
          const int r = ty + kRowGroups * q;
          float s = 0.f;
#pragma unroll 8
          for (int j = 0; j < kTile; ++j) s += coef_m[r][j] * tile_j[j][tx];
          const long long p = i0 + r, k = k0 + tx;
          if (p < rows && k < dim) grad_row(grad_x, grad_y, n, dim, p)[k] -= s;
        }
        __syncthreads();
      }
    }
  }

  if (Grad) {
    for (int q = 0; q < kRowsPerThread; ++q) {
      float rs = rowsum[q];
      for (int off = 16; off > 0; off >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, off);
      const long long p = i0 + ty + kRowGroups * q;
      if (p >= rows) continue;
      float* out = grad_row(grad_x, grad_y, n, dim, p);
      const float* z = zc + p * dim;
      for (long long k = tx; k < dim; k += kTile) out[k] += rs * z[k];
    }
  }
  for (int off = 16; off > 0; off >>= 1) loss += __shfl_xor_sync(0xffffffffu, loss, off);
  if (tx == 0) loss_warp[ty] = loss;
  __syncthreads();
  if (tx == 0 && ty == 0) {
    double s = 0.0;
    for (int w = 0; w < kRowGroups; ++w) s += loss_warp[w];
    loss_partial[blockIdx.x] = s;
  }
}

void validate(int64_t n, int64_t dim, const GaussianBandwidth& bandwidth, const float* grad_x,
              const float* grad_y) {
  const char* what = "mmd_gaussian";
  require(n >= 2, what, "n must be >= 2 (the estimator divides by n - 1), got " + std::to_string(n));
  require(dim >= 1, what, "dim must be >= 1, got " + std::to_string(dim));
  require(!bandwidth.values.empty(), what, "the bandwidth list is empty");
  for (double v : bandwidth.values) {
    require(v > 0, what, std::string("bandwidth values must be positive, got ") + std::to_string(v));
  }
  require((grad_x == nullptr) == (grad_y == nullptr), what,
          "grad_x and grad_y must be both given or both null");
}

}  // namespace

double mmd_gaussian(const float* x, const float* y, int64_t n, int64_t dim,
                    const GaussianBandwidth& bandwidth, float* grad_x, float* grad_y, void* stream) {
  validate(n, dim, bandwidth, grad_x, grad_y);
  const cudaStream_t s = as_stream(stream);
  const long long rows = 2 * n;
  const size_t kernels = bandwidth.values.size();

  DeviceBuffer<double> mean(static_cast<size_t>(dim), s), sq_row(static_cast<size_t>(rows), s);
  DeviceBuffer<float> zc(static_cast<size_t>(rows * dim), s), sq_norm(static_cast<size_t>(rows), s),
      coef(kernels, s);
  const unsigned row_tiles = static_cast<unsigned>((rows + kTile - 1) / kTile);
  DeviceBuffer<double> loss_partial(row_tiles, s);

  mmd_mean_forward_kernel<<<grid_for(dim, kReduceThreads), kReduceThreads, 0, s>>>(x, y, n, dim, mean.get());
  check_cuda(cudaGetLastError(), "mmd_mean_forward_kernel launch");
  mmd_centre_forward_kernel<<<grid_for(rows, 1), kReduceThreads, 0, s>>>(x, y, n, dim, mean.get(), zc.get(),
                                                                         sq_norm.get(), sq_row.get());
  check_cuda(cudaGetLastError(), "mmd_centre_forward_kernel launch");

  std::vector<double> sq_host(static_cast<size_t>(rows));
  check_cuda(cudaMemcpyAsync(sq_host.data(), sq_row.get(), rows * sizeof(double), cudaMemcpyDeviceToHost, s),
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  double sq_sum = 0.0;
  for (double v : sq_host) sq_sum += v;
  std::vector<float> coef_host(kernels);
  for (size_t k = 0; k < kernels; ++k) {
    double sigma2;
    if (bandwidth.relative) {
      const double mean_d2 = mmd_mean_pair_distance(sq_sum, n);
      require(!(mean_d2 <= 0), "mmd_gaussian",
              "the mean pairwise squared distance of the batch is zero (all rows equal): relative bandwidths "
              "are undefined");
      sigma2 = bandwidth.values[k] * mean_d2;
    } else {
      sigma2 = bandwidth.values[k] * bandwidth.values[k];
    }
    coef_host[k] = static_cast<float>(mmd_kernel_coefficient(sigma2));
  }
  check_cuda(
      cudaMemcpyAsync(coef.get(), coef_host.data(), kernels * sizeof(float), cudaMemcpyHostToDevice, s),
      "cudaMemcpyAsync");

  const dim3 block(kTile, kRowGroups);
  if (grad_x) {
    mmd_tile_backward_kernel<true><<<row_tiles, block, 0, s>>>(zc.get(), sq_norm.get(), n, dim, coef.get(),
                                                               static_cast<int>(kernels), grad_x, grad_y,
                                                               loss_partial.get());
  } else {
    mmd_tile_backward_kernel<false><<<row_tiles, block, 0, s>>>(zc.get(), sq_norm.get(), n, dim, coef.get(),
                                                                static_cast<int>(kernels), nullptr, nullptr,
                                                                loss_partial.get());
  }
  check_cuda(cudaGetLastError(), "mmd_tile_backward_kernel launch");
  std::vector<double> partial_host(row_tiles);
  check_cuda(cudaMemcpyAsync(partial_host.data(), loss_partial.get(), row_tiles * sizeof(double),
                             cudaMemcpyDeviceToHost, s),
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  double loss = 0.0;
  for (double v : partial_host) loss += v;
  return loss + mmd_constant(n);
}

}  // namespace mmesid::kernels::cuda
