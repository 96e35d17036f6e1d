// CUDA twin of rq_encode (contract: ../rq_encode.h, declared in kernels_cuda.h).
//
// Explicit-residual beam search, tiled over items so no buffer is [n, K]: per tile of T items the
// workspace holds the live beams' residuals [T·B, d], their scores against one level [T·B, K], and
// their errors and code histories. Per level:
//   1. sgemm (cuda_common.cuh tiled launcher): ip = R · C_lᵀ, [T·nb, K];
//   2. rq_select_forward_kernel, one block per item: the nb2 best (beam, code) candidates by
//      rq_candidate_before on ‖r‖² + ‖c‖² − 2⟨r, c⟩ (rq_extended_error). Small beams (<= kLocalTop):
//      every thread keeps its own sorted top list (rq_topk_insert) over a strided share of the
//      candidates, then nb2 block-wide rounds pick the next best among those lists. Larger beams:
//      nb2 block-wide rounds straight over all candidates ("best strictly after the previous
//      winner" — the order is total, so no marks are needed). O(nb2 · nb · K) work per item: correct
//      for any beam, fast only for small ones;
//   3. rq_extend_forward_kernel, one block per new beam: residual = parent residual − codeword, its
//      ‖r‖² recomputed exactly, code history copied.
// Finally rq_finish_forward_kernel writes the best sequence and computes sq_error directly from the
// chosen codewords (fp32 residual, double sum — as the CPU kernel does).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../rq_encode_math.h"
#include "cuda_common.cuh"
#include "kernels_cuda.h"

namespace mmesid::kernels::cuda {

namespace {

constexpr int kThreads = 128;  // every kernel here: 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kLocalTop = 8;                            // per-thread list size of the small-beam selection
constexpr int64_t kWorkspaceFloats = int64_t{1} << 26;  // 256 MiB of tile workspace
constexpr int64_t kMaxTileRows = int64_t{1} << 20;      // T·B rows (sgemm grid.y limit / 32 is 2^21)

struct Candidate {
  float err;
  int32_t parent;
  int32_t code;
  bool valid;
};

__device__ __forceinline__ bool better(const Candidate& a, const Candidate& b) {
  if (!a.valid) return false;
  if (!b.valid) return true;
  return rq_candidate_before(a.err, a.parent, a.code, b.err, b.parent, b.code);
}

__device__ __forceinline__ Candidate shuffle_down(const Candidate& c, int offset) {
  Candidate o;
  o.err = __shfl_down_sync(0xffffffffu, c.err, offset);
  o.parent = __shfl_down_sync(0xffffffffu, c.parent, offset);
  o.code = __shfl_down_sync(0xffffffffu, c.code, offset);
  o.valid = __shfl_down_sync(0xffffffffu, static_cast<int>(c.valid), offset) != 0;
  return o;
}

/// Best candidate of the block (by `better`), returned to every thread.
__device__ Candidate block_best(Candidate c) {
  __shared__ Candidate warp_best[kWarps];
  __shared__ Candidate result;
  for (int offset = 16; offset > 0; offset >>= 1) {
    const Candidate o = shuffle_down(c, offset);
    if (better(o, c)) c = o;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_best[warp] = c;
  __syncthreads();
  if (threadIdx.x == 0) {
    Candidate b = warp_best[0];
    for (int w = 1; w < kWarps; ++w) {
      if (better(warp_best[w], b)) b = warp_best[w];
    }
    result = b;
  }
  __syncthreads();
  const Candidate out = result;
  __syncthreads();
  return out;
}

template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_sum[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sum[warp] = v;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0) {
    for (int w = 0; w < kWarps; ++w) total += warp_sum[w];
  }
  __syncthreads();
  return total;  // valid in thread 0
}

/// norms[lc] = ‖codebooks[lc]‖² (double sum), one block per codeword.
__global__ void rq_norms_forward_kernel(const float* __restrict__ codebooks, int64_t d,
                                        float* __restrict__ norms) {
  const float* c = codebooks + static_cast<int64_t>(blockIdx.x) * d;
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += static_cast<double>(c[k]) * c[k];
  s = block_sum(s);
  if (threadIdx.x == 0) norms[blockIdx.x] = static_cast<float>(s);
}

/// Beam 0 of every item of the tile: residual = x, error = ‖x‖² (fp32, as the extend step).
__global__ void rq_init_forward_kernel(const float* __restrict__ x, int64_t d, float* __restrict__ residual,
                                       float* __restrict__ err) {
  const int64_t t = blockIdx.x;
  float s = 0.f;
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
    const float v = x[t * d + k];
    residual[t * d + k] = v;
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) err[t] = s;
}

/// Selects the nb2 best (parent beam, code) candidates of item blockIdx.x (see file comment).
__global__ void rq_select_forward_kernel(const float* __restrict__ ip, int64_t K, int64_t nb, int64_t nb2,
                                         const float* __restrict__ beam_err, const float* __restrict__ norms,
                                         int32_t* __restrict__ sel_parent, int32_t* __restrict__ sel_code) {
  const int64_t t = blockIdx.x;
  const int64_t total = nb * K;
  const float* ipt = ip + t * total;
  const float* errt = beam_err + t * nb;
  const auto candidate = [&](int64_t q) {
    const int64_t b = q / K, c = q - b * K;
    Candidate cand;
    cand.err = rq_extended_error(errt[b], norms[c], ipt[q]);
    cand.parent = static_cast<int32_t>(b);
    cand.code = static_cast<int32_t>(c);
    cand.valid = true;
    return cand;
  };
  Candidate prev;
  prev.valid = false;
  if (nb2 <= kLocalTop) {
    float e[kLocalTop];
    int32_t p[kLocalTop], c[kLocalTop];
    int count = 0;
    for (int64_t q = threadIdx.x; q < total; q += blockDim.x) {
      const Candidate cand = candidate(q);
      count = rq_topk_insert(e, p, c, count, static_cast<int>(nb2), cand.err, cand.parent, cand.code);
    }
    for (int64_t r = 0; r < nb2; ++r) {
      Candidate best;
      best.valid = false;
      for (int i = 0; i < count; ++i) {
        const Candidate cand{e[i], p[i], c[i], true};
        // Lists are sorted: the first entry after the previous winner is this thread's best.
        if (!prev.valid ||
            rq_candidate_before(prev.err, prev.parent, prev.code, cand.err, cand.parent, cand.code)) {
          best = cand;
          break;
        }
      }
      prev = block_best(best);
      if (threadIdx.x == 0) {
        sel_parent[t * nb2 + r] = prev.parent;
        sel_code[t * nb2 + r] = prev.code;
      }
    }
    return;
  }
  for (int64_t r = 0; r < nb2; ++r) {
    Candidate best;
    best.valid = false;
    for (int64_t q = threadIdx.x; q < total; q += blockDim.x) {
      const Candidate cand = candidate(q);
      if (prev.valid &&
          !rq_candidate_before(prev.err, prev.parent, prev.code, cand.err, cand.parent, cand.code)) {
        continue;
      }
      if (better(cand, best)) best = cand;
    }
    prev = block_best(best);
    if (threadIdx.x == 0) {
      sel_parent[t * nb2 + r] = prev.parent;
      sel_code[t * nb2 + r] = prev.code;
    }
  }
}

/// New beam row = (t, r): residual = parent residual − codeword, error = ‖residual‖², history.
__global__ void rq_extend_forward_kernel(const float* __restrict__ book, int64_t d, int64_t L, int64_t level,
                                         int64_t nb, int64_t nb2, const int32_t* __restrict__ sel_parent,
                                         const int32_t* __restrict__ sel_code,
                                         const float* __restrict__ residual,
                                         const int32_t* __restrict__ history,
                                         float* __restrict__ next_residual, float* __restrict__ next_err,
                                         int32_t* __restrict__ next_history) {
  const int64_t row = blockIdx.x;
  const int64_t t = row / nb2;
  const int64_t src = t * nb + sel_parent[row];
  const int32_t code = sel_code[row];
  const float* a = residual + src * d;
  const float* c = book + static_cast<int64_t>(code) * d;
  float* o = next_residual + row * d;
  float s = 0.f;
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
    const float v = a[k] - c[k];
    o[k] = v;
    s += v * v;
  }
  for (int64_t j = threadIdx.x; j <= level; j += blockDim.x) {
    next_history[row * L + j] = j < level ? history[src * L + j] : code;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) next_err[row] = s;
}

/// Writes the best sequence of item t (beam rank 0) and sq_error = ‖x − Σ_l C_l[code_l]‖².
__global__ void rq_finish_forward_kernel(const float* __restrict__ x, const float* __restrict__ codebooks,
                                         int64_t d, int64_t L, int64_t K, int64_t nb,
                                         const int32_t* __restrict__ history, int32_t* __restrict__ codes,
                                         float* __restrict__ sq_error) {
  const int64_t t = blockIdx.x;
  const int32_t* best = history + t * nb * L;
  for (int64_t l = threadIdx.x; l < L; l += blockDim.x) codes[t * L + l] = best[l];
  if (sq_error == nullptr) return;
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
    float r = x[t * d + k];
    for (int64_t l = 0; l < L; ++l) r -= codebooks[(l * K + best[l]) * d + k];
    s += static_cast<double>(r) * r;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) sq_error[t] = static_cast<float>(s);
}

/// Stream-ordered device allocation, freed on every path.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) check_cuda(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync (rq_encode)");
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* at(size_t byte_offset) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

inline size_t aligned(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

inline void check_launch(const char* what) {
  check_cuda(cudaGetLastError(), what);
}

}  // namespace

void rq_encode(const float* x, const float* codebooks, const RqEncodeShape& shape, int32_t* codes,
               float* sq_error, void* stream_ptr) {
  rq_check_arguments("cuda::rq_encode", x, codebooks, shape, codes);
  require(shape.dim <= INT32_MAX && shape.levels * shape.codebook_size <= INT32_MAX, "cuda::rq_encode",
          "dim and levels * codebook_size must fit in int32");
  const cudaStream_t stream = as_stream(stream_ptr);
  const int64_t n = shape.n, d = shape.dim, L = shape.levels, K = shape.codebook_size;
  const int64_t beam = shape.beam;

  // Tile: the workspace below stays within kWorkspaceFloats (at least one item) and T·B rows.
  const int64_t per_item = beam * (2 * d + K + 2 + 2 * L + 2);
  int64_t tile = std::max<int64_t>(1, kWorkspaceFloats / per_item);
  tile = std::min<int64_t>({tile, n, std::max<int64_t>(1, kMaxTileRows / beam)});
  const int64_t rows = tile * beam;

  size_t offset = 0;
  const auto reserve = [&](size_t bytes) {
    const size_t at = offset;
    offset += aligned(bytes);
    return at;
  };
  const size_t o_norms = reserve(sizeof(float) * L * K);
  const size_t o_r0 = reserve(sizeof(float) * rows * d), o_r1 = reserve(sizeof(float) * rows * d);
  const size_t o_ip = reserve(sizeof(float) * rows * K);
  const size_t o_e0 = reserve(sizeof(float) * rows), o_e1 = reserve(sizeof(float) * rows);
  const size_t o_h0 = reserve(sizeof(int32_t) * rows * L), o_h1 = reserve(sizeof(int32_t) * rows * L);
  const size_t o_sp = reserve(sizeof(int32_t) * rows), o_sc = reserve(sizeof(int32_t) * rows);
  DeviceBuffer work(offset, stream);
  float* norms = work.at<float>(o_norms);
  float* ip = work.at<float>(o_ip);
  int32_t* sel_parent = work.at<int32_t>(o_sp);
  int32_t* sel_code = work.at<int32_t>(o_sc);

  rq_norms_forward_kernel<<<static_cast<unsigned>(L * K), kThreads, 0, stream>>>(codebooks, d, norms);
  check_launch("rq_norms_forward_kernel launch");

  for (int64_t i0 = 0; i0 < n; i0 += tile) {
    const int64_t T = std::min(tile, n - i0);
    float* rc = work.at<float>(o_r0);
    float* rn = work.at<float>(o_r1);
    float* ec = work.at<float>(o_e0);
    float* en = work.at<float>(o_e1);
    int32_t* hc = work.at<int32_t>(o_h0);
    int32_t* hn = work.at<int32_t>(o_h1);
    rq_init_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, stream>>>(x + i0 * d, d, rc, ec);
    check_launch("rq_init_forward_kernel launch");
    int64_t nb = 1;
    for (int64_t l = 0; l < L; ++l) {
      const float* book = codebooks + l * K * d;
      const int64_t nb2 = rq_next_beam_count(nb, K, beam);
      sgemm(stream, false, true, static_cast<int>(T * nb), static_cast<int>(K), static_cast<int>(d), 1.f, rc,
            static_cast<int>(d), book, static_cast<int>(d), 0.f, ip, static_cast<int>(K));
      rq_select_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, stream>>>(
          ip, K, nb, nb2, ec, norms + l * K, sel_parent, sel_code);
      check_launch("rq_select_forward_kernel launch");
      rq_extend_forward_kernel<<<static_cast<unsigned>(T * nb2), kThreads, 0, stream>>>(
          book, d, L, l, nb, nb2, sel_parent, sel_code, rc, hc, rn, en, hn);
      check_launch("rq_extend_forward_kernel launch");
      std::swap(rc, rn);
      std::swap(ec, en);
      std::swap(hc, hn);
      nb = nb2;
    }
    rq_finish_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, stream>>>(
        x + i0 * d, codebooks, d, L, K, nb, hc, codes + i0 * L,
        sq_error == nullptr ? nullptr : sq_error + i0);
    check_launch("rq_finish_forward_kernel launch");
  }
}

}  // namespace mmesid::kernels::cuda
