// CUDA twin of the LoRA linear kernel (contract in ../lora.h, declared in kernels_cuda.h).
//
// Same fusion order as the CPU path: the low-rank term is written into y (forward) or grad_x
// (backward) first and the frozen-weight GEMM accumulates onto it with beta = 1, so neither output is
// re-read in an extra pass. The skinny reductions with a long inner dimension (u = x·Aᵀ, v = grad_y·B;
// [rows, r] outputs) use one block per output element (a tiled GEMM would give them only rows/32 blocks);
// the rank-r expansions (scale·u·Bᵀ + bias, scale·v·A) are one thread per output element for
// r <= kElementwiseRankMax and the tiled sgemm (cuda_common.cuh) above it, as are the big GEMMs and
// grad_a / grad_b. Workspace (u, v: rows·r floats) is stream-ordered and freed on every path.
//
// LoRA dropout (x_lora given), as on the CPU: u = x_lora·Aᵀ and grad_a = scale·vᵀ·x_lora; the rank-r
// expansion scale·v·A is written to grad_x_lora, and grad_x = grad_y·W is the base GEMM alone (beta = 0).
// Without x_lora every launch is the one made before x_lora existed.
#include <cuda_runtime.h>

#include <climits>
#include <string>

#include "../lora.h"
#include "cuda_common.cuh"
#include "kernels_cuda.h"

namespace mmesid::kernels::cuda {
namespace {

constexpr int kReduceThreads = 256;
constexpr int kElementwiseThreads = 256;
constexpr long long kElementwiseRankMax = 64;

/// Device buffer allocated and freed on a stream (RAII: freed on every path, never throws on free).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    if (count > 0) {
      check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count * sizeof(T), stream),
                 "cudaMallocAsync (lora)");
    }
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

/// Sum over a block of kReduceThreads threads; the result is valid in thread 0.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[kReduceThreads / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = 0.f;
  if (warp == 0) {
    v = lane < kReduceThreads / 32 ? partial[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  }
  __syncthreads();  // partial is reused by the next grid-stride iteration
  return v;
}

/// out[i, k] = Σ_j g[i, j]·M(k, j) with M(k, j) = m[k·ld_k + j·ld_j]; one block per (i, k).
__device__ __forceinline__ void rank_reduce(const float* __restrict__ g, long long rows, long long n,
                                            const float* __restrict__ m, long long ld_k, long long ld_j,
                                            long long rank, float* __restrict__ out) {
  for (long long p = blockIdx.x; p < rows * rank; p += gridDim.x) {
    const long long i = p / rank, k = p % rank;
    const float* gi = g + i * n;
    const float* mk = m + k * ld_k;
    float acc = 0.f;
    for (long long j = threadIdx.x; j < n; j += kReduceThreads) acc += gi[j] * mk[j * ld_j];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[p] = acc;
  }
}

/// u = x·Aᵀ: x [rows, in], A [r, in], u [rows, r].
__global__ void lora_down_forward_kernel(const float* __restrict__ x, const float* __restrict__ lora_a,
                                         long long rows, long long in, long long rank,
                                         float* __restrict__ u) {
  rank_reduce(x, rows, in, lora_a, in, 1, rank, u);
}

/// v = grad_y·B: grad_y [rows, out], B [out, r], v [rows, r].
__global__ void lora_down_backward_kernel(const float* __restrict__ grad_y, const float* __restrict__ lora_b,
                                          long long rows, long long out, long long rank,
                                          float* __restrict__ v) {
  rank_reduce(grad_y, rows, out, lora_b, 1, rank, rank, v);
}

/// y[i, j] = bias[j] (or 0) + scale·Σ_k u[i, k]·B[j, k]  (written, not accumulated).
__global__ void lora_up_forward_kernel(const float* __restrict__ u, const float* __restrict__ lora_b,
                                       const float* __restrict__ bias, long long rows, long long out,
                                       long long rank, float scale, float* __restrict__ y) {
  const long long total = rows * out;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long i = e / out, j = e % out;
    const float* ui = u + i * rank;
    const float* bj = lora_b + j * rank;
    float acc = 0.f;
    for (long long k = 0; k < rank; ++k) acc += ui[k] * bj[k];
    y[e] = (bias ? bias[j] : 0.f) + scale * acc;
  }
}

/// grad_x[i, c] = scale·Σ_k v[i, k]·A[k, c]  (written, not accumulated; grad_x_lora with x_lora).
__global__ void lora_up_backward_kernel(const float* __restrict__ v, const float* __restrict__ lora_a,
                                        long long rows, long long in, long long rank, float scale,
                                        float* __restrict__ grad_x) {
  const long long total = rows * in;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long i = e / in, c = e % in;
    const float* vi = v + i * rank;
    float acc = 0.f;
    for (long long k = 0; k < rank; ++k) acc += vi[k] * lora_a[k * in + c];
    grad_x[e] = scale * acc;
  }
}

/// y[i, j] = bias[j] (or 0): the initial value of y when the rank-r product goes through sgemm.
__global__ void lora_bias_forward_kernel(const float* __restrict__ bias, long long rows, long long out,
                                         float* __restrict__ y) {
  const long long total = rows * out;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    y[e] = bias ? bias[e % out] : 0.f;
  }
}

/// grad_bias[j] = Σ_i grad_y[i, j]  (one thread per column; consecutive threads read consecutive
/// columns, so every row read is coalesced).
__global__ void lora_bias_backward_kernel(const float* __restrict__ grad_y, long long rows, long long out,
                                          float* __restrict__ grad_bias) {
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < out;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (long long i = 0; i < rows; ++i) acc += grad_y[i * out + j];
    grad_bias[j] = acc;
  }
}

void check_shape(const LoraShape& s) {
  const auto dim = [](long long v, const char* name) {
    if (v < 1 || v > INT_MAX) throw ArgumentError(name, "an integer in [1, 2147483647]", std::to_string(v));
  };
  dim(s.rows, "shape.rows");
  dim(s.in_dim, "shape.in_dim");
  dim(s.out_dim, "shape.out_dim");
  dim(s.rank, "shape.rank");
}

void check_buffer(const void* p, const char* name, const char* why = "") {
  if (!p) throw ArgumentError(name, std::string("a non-null device buffer") + why, "null");
}

unsigned reduce_grid(long long pairs) {
  return static_cast<unsigned>(pairs < (1LL << 20) ? pairs : (1LL << 20));
}

void launch_down_forward(const float* x, const float* lora_a, const LoraShape& s, float* u, cudaStream_t st) {
  lora_down_forward_kernel<<<reduce_grid(s.rows * s.rank), kReduceThreads, 0, st>>>(x, lora_a, s.rows,
                                                                                    s.in_dim, s.rank, u);
  check_cuda(cudaGetLastError(), "lora_down_forward_kernel launch");
}

}  // namespace

void lora_linear_forward(const float* x, const float* x_lora, const float* weight, const float* bias,
                         const float* lora_a, const float* lora_b, const LoraShape& shape, float* y,
                         float* xa_out, void* stream) {
  check_shape(shape);
  check_buffer(x, "x");
  check_buffer(weight, "weight");
  check_buffer(lora_a, "lora_a");
  check_buffer(lora_b, "lora_b");
  check_buffer(y, "y");
  const cudaStream_t st = as_stream(stream);
  const int rows = static_cast<int>(shape.rows), in = static_cast<int>(shape.in_dim);
  const int out = static_cast<int>(shape.out_dim), r = static_cast<int>(shape.rank);

  const float* xl = x_lora ? x_lora : x;  // the low-rank path's input

  DeviceBuffer<float> u_store(xa_out ? 0 : static_cast<size_t>(rows) * r, st);
  float* u = xa_out ? xa_out : u_store.get();
  launch_down_forward(xl, lora_a, shape, u, st);
  if (r <= kElementwiseRankMax) {
    lora_up_forward_kernel<<<grid_for(static_cast<long long>(rows) * out, kElementwiseThreads),
                             kElementwiseThreads, 0, st>>>(u, lora_b, bias, rows, out, r, shape.scale, y);
    check_cuda(cudaGetLastError(), "lora_up_forward_kernel launch");
  } else {
    if (bias) {
      lora_bias_forward_kernel<<<grid_for(static_cast<long long>(rows) * out, kElementwiseThreads),
                                 kElementwiseThreads, 0, st>>>(bias, rows, out, y);
      check_cuda(cudaGetLastError(), "lora_bias_forward_kernel launch");
    }
    sgemm(st, false, true, rows, out, r, shape.scale, u, r, lora_b, r, bias ? 1.f : 0.f, y, out);
  }
  sgemm(st, false, true, rows, out, in, 1.f, x, in, weight, in, 1.f, y, out);
}

void lora_linear_backward(const float* x, const float* x_lora, const float* weight, const float* lora_a,
                          const float* lora_b, const float* grad_y, const float* xa, const LoraShape& shape,
                          float* grad_x, float* grad_x_lora, float* grad_a, float* grad_b, float* grad_bias,
                          void* stream) {
  check_shape(shape);
  check_buffer(grad_y, "grad_y");
  check_buffer(lora_a, "lora_a");
  check_buffer(lora_b, "lora_b");
  if (grad_x_lora && !x_lora) {
    throw ArgumentError("grad_x_lora",
                        "a null buffer when x_lora is null (the low-rank gradient is then in grad_x)",
                        "a buffer");
  }
  if (grad_x) check_buffer(weight, "weight", " (grad_x is requested)");
  const float* xl = x_lora ? x_lora : x;  // the low-rank path's input
  if (grad_a || (grad_b && !xa)) check_buffer(xl, "x", " (grad_a, or grad_b without xa, is requested)");
  const cudaStream_t st = as_stream(stream);
  const int rows = static_cast<int>(shape.rows), in = static_cast<int>(shape.in_dim);
  const int out = static_cast<int>(shape.out_dim), r = static_cast<int>(shape.rank);
  const float scale = shape.scale;
  // Where scale·v·A goes: grad_x (the base GEMM then accumulates onto it) or, with x_lora, grad_x_lora.
  float* grad_low = x_lora ? grad_x_lora : grad_x;
  const bool need_v = grad_low || grad_a;
  const size_t small = static_cast<size_t>(rows) * r;

  DeviceBuffer<float> u_store(grad_b && !xa ? small : 0, st);
  const float* u = xa;
  if (grad_b && !xa) {
    launch_down_forward(xl, lora_a, shape, u_store.get(), st);
    u = u_store.get();
  }
  DeviceBuffer<float> v(need_v ? small : 0, st);
  if (need_v) {
    lora_down_backward_kernel<<<reduce_grid(static_cast<long long>(rows) * r), kReduceThreads, 0, st>>>(
        grad_y, lora_b, rows, out, r, v.get());
    check_cuda(cudaGetLastError(), "lora_down_backward_kernel launch");
  }
  if (grad_low) {
    if (r <= kElementwiseRankMax) {
      lora_up_backward_kernel<<<grid_for(static_cast<long long>(rows) * in, kElementwiseThreads),
                                kElementwiseThreads, 0, st>>>(v.get(), lora_a, rows, in, r, scale, grad_low);
      check_cuda(cudaGetLastError(), "lora_up_backward_kernel launch");
    } else {
      sgemm(st, false, false, rows, in, r, scale, v.get(), r, lora_a, in, 0.f, grad_low, in);
    }
  }
  if (grad_x)
    sgemm(st, false, false, rows, in, out, 1.f, grad_y, out, weight, in, x_lora ? 0.f : 1.f, grad_x, in);
  if (grad_a) sgemm(st, true, false, r, in, rows, scale, v.get(), r, xl, in, 0.f, grad_a, in);
  if (grad_b) sgemm(st, true, false, out, r, rows, scale, grad_y, out, u, r, 0.f, grad_b, r);
  if (grad_bias) {
    lora_bias_backward_kernel<<<grid_for(out, kElementwiseThreads), kElementwiseThreads, 0, st>>>(
        grad_y, rows, out, grad_bias);
    check_cuda(cudaGetLastError(), "lora_bias_backward_kernel launch");
  }
}

}  // namespace mmesid::kernels::cuda
