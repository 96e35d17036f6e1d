// LoRA linear forward/backward on the CPU (contract: lora.h).
//
// Plan. The two frozen-weight GEMMs (x·Wᵀ and grad_y·W) carry ~99.6 % of the FLOPs and go through
// sgemm with beta = 1 onto an output that the low-rank path has already written, so y and grad_x are
// written once by our pass and then accumulated into by BLAS, never re-read in extra passes. The
// rank-r pieces are skinny (one dimension = r) and BLAS handles them poorly (3-4× slower at r = 8), so
// for r <= kLoopRankMax they are two hand-written, column-tiled, OpenMP kernels that each stream one big
// operand once:
//   reduce_pass:  P[i, k] = Σ_j G[i, j]·M[k, j]      (u = x·Aᵀ, v = grad_y·B)
//                 fused with grad_bᵀ[k, j] = Σ_i S[i, k]·G[i, j] and column sums of G (grad_bias),
//                 so grad_y is read once for v, grad_b and grad_bias together;
//   expand_pass:  O[i, j] = bias[j] + Σ_k S[i, k]·M[k, j]   (y's low-rank part, grad_x's low-rank part)
//                 fused with grad_a[k, j] = Σ_i S[i, k]·X[i, j], so x is read once for grad_x and grad_a.
// Larger ranks are ordinary GEMMs and use sgemm throughout (same fusion order).
//
// LoRA dropout (x_lora given): only the low-rank path's input changes (u = x_lora·Aᵀ, grad_a from
// x_lora), and the low-rank expansion of the backward goes to grad_x_lora instead of grad_x, which is
// then the base GEMM alone (beta = 0). Without x_lora every call below is the one made before x_lora
// existed, with the same arguments, so that path is bit-identical.
#include "lora.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "gemm.h"

namespace mmesid::kernels {
namespace {

// GCC/Clang vector extension: 8 floats (one AVX register with -march=native; two SSE ops otherwise).
typedef float Vec8 __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;
constexpr int kRowBlock = 4;
// Above this rank the low-rank products are real GEMMs and BLAS beats the streaming loops (measured
// crossover between r = 32 and 40 at in = 4096, out = 14336, rows 64 and 512, 2 threads).
constexpr int64_t kLoopRankMax = 32;

inline Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, Vec8 v) {
  std::memcpy(p, &v, sizeof v);
}
inline float hsum8(Vec8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/// Leading dimension for a [rank, n] operand whose rows are streamed side by side: a multiple of 16
/// floats that is an odd multiple of 64 bytes, so rows fall in different L1 sets (a row stride that is a
/// multiple of 4 KiB, e.g. n = 4096 or 14336, makes all r rows of a tile evict each other).
int64_t padded_ld(int64_t n) {
  int64_t ld = (n + 15) / 16 * 16;
  if ((ld / 16) % 2 == 0) ld += 16;
  return ld;
}

/// Work split of a [rows, n] pass: column tiles (multiples of 8 wide) × optional row chunks.
struct Plan {
  int64_t tile = 0, tiles = 0, row_chunk = 0, row_chunks = 0;
};

Plan make_plan(int64_t rows, int64_t n, int nthreads, bool split_rows) {
  Plan p;
  p.tile = 256;
  while (p.tile > 32 && (n + p.tile - 1) / p.tile < 4 * nthreads) p.tile /= 2;
  p.tiles = (n + p.tile - 1) / p.tile;
  p.row_chunks = 1;
  if (split_rows && p.tiles < 4 * nthreads) {
    const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
    p.row_chunks = std::min<int64_t>(blocks, (4 * nthreads + p.tiles - 1) / p.tiles);
  }
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  p.row_chunk = ((blocks + p.row_chunks - 1) / p.row_chunks) * kRowBlock;
  p.row_chunks = (rows + p.row_chunk - 1) / p.row_chunk;
  return p;
}

// NR rows of G (leading dim ldg) against the columns [j0, j1):
//   kV:  p[q, k] += Σ_j G[q, j]·M[k, j]                (M is [rank, ldm]; p has leading dim rank)
//   kGB: gbt[k, j - j0] += Σ_q S[q, k]·G[q, j]          (gbt is [rank, ldt] scratch)
//   kCS: colsum[j] += Σ_q G[q, j]
template <int NR, bool kV, bool kGB, bool kCS>
void reduce_block(const float* g, int64_t ldg, const float* m, int64_t ldm, int64_t rank, const float* s,
                  float* p, float* gbt, int64_t ldt, float* colsum, int64_t j0, int64_t j1) {
  const float* gr[NR];
  for (int q = 0; q < NR; ++q) gr[q] = g + q * ldg;
  if constexpr (kCS) {
    int64_t j = j0;
    for (; j + kLanes <= j1; j += kLanes) {
      Vec8 c = load8(colsum + j);
      for (int q = 0; q < NR; ++q) c += load8(gr[q] + j);
      store8(colsum + j, c);
    }
    for (; j < j1; ++j) {
      float c = colsum[j];
      for (int q = 0; q < NR; ++q) c += gr[q][j];
      colsum[j] = c;
    }
  }
  if constexpr (kV || kGB) {
    for (int64_t k = 0; k < rank; ++k) {
      const float* mk = kV ? m + k * ldm : nullptr;
      float* tk = kGB ? gbt + k * ldt : nullptr;
      float sq[NR];
      if constexpr (kGB) {
        for (int q = 0; q < NR; ++q) sq[q] = s[q * rank + k];
      }
      Vec8 acc[NR];
      for (int q = 0; q < NR; ++q) acc[q] = Vec8{};
      int64_t j = j0;
      for (; j + kLanes <= j1; j += kLanes) {
        Vec8 gv[NR];
        for (int q = 0; q < NR; ++q) gv[q] = load8(gr[q] + j);
        if constexpr (kV) {
          const Vec8 mv = load8(mk + j);
          for (int q = 0; q < NR; ++q) acc[q] += gv[q] * mv;
        }
        if constexpr (kGB) {
          Vec8 b = load8(tk + (j - j0));
          for (int q = 0; q < NR; ++q) b += sq[q] * gv[q];
          store8(tk + (j - j0), b);
        }
      }
      float tail[NR] = {};
      for (; j < j1; ++j) {
        float b = kGB ? tk[j - j0] : 0.f;
        for (int q = 0; q < NR; ++q) {
          if constexpr (kV) tail[q] += gr[q][j] * mk[j];
          if constexpr (kGB) b += sq[q] * gr[q][j];
        }
        if constexpr (kGB) tk[j - j0] = b;
      }
      if constexpr (kV) {
        for (int q = 0; q < NR; ++q) p[q * rank + k] += hsum8(acc[q]) + tail[q];
      }
    }
  }
}

template <bool kV, bool kGB, bool kCS>
void reduce_rows(int nr, const float* g, int64_t ldg, const float* m, int64_t ldm, int64_t rank,
                 const float* s, float* p, float* gbt, int64_t ldt, float* colsum, int64_t j0, int64_t j1) {
  switch (nr) {
    case 4:
      reduce_block<4, kV, kGB, kCS>(g, ldg, m, ldm, rank, s, p, gbt, ldt, colsum, j0, j1);
      break;
    case 3:
      reduce_block<3, kV, kGB, kCS>(g, ldg, m, ldm, rank, s, p, gbt, ldt, colsum, j0, j1);
      break;
    case 2:
      reduce_block<2, kV, kGB, kCS>(g, ldg, m, ldm, rank, s, p, gbt, ldt, colsum, j0, j1);
      break;
    default:
      reduce_block<1, kV, kGB, kCS>(g, ldg, m, ldm, rank, s, p, gbt, ldt, colsum, j0, j1);
      break;
  }
}

/// One streaming pass over G [rows, n] (see the file comment). Each output is optional:
/// out [rows, rank] = G·Mᵀ (M [rank, ldm]), grad_b [n, rank] = Gᵀ·S (S [rows, rank]), colsum [n];
/// all overwritten.
template <bool kV, bool kGB, bool kCS>
void reduce_pass_impl(const float* g, int64_t rows, int64_t n, const float* m, int64_t ldm, int64_t rank,
                      const float* s, float* out, float* grad_b, float* colsum, int nthreads) {
  const Plan plan = make_plan(rows, n, nthreads, !kGB && !kCS);
  const int64_t items = plan.tiles * plan.row_chunks;
  const int nt = static_cast<int>(std::min<int64_t>(nthreads, items));
  std::vector<float> partial(kV ? static_cast<size_t>(nt) * rows * rank : 0, 0.f);
  const int64_t ldt = padded_ld(plan.tile);
  std::vector<float> scratch(kGB ? static_cast<size_t>(nt) * rank * ldt : 0);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    float* p = kV ? partial.data() + static_cast<size_t>(t) * rows * rank : nullptr;
    float* gbt = kGB ? scratch.data() + static_cast<size_t>(t) * rank * ldt : nullptr;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t tile = item / plan.row_chunks, chunk = item % plan.row_chunks;
      const int64_t j0 = tile * plan.tile, j1 = std::min(n, j0 + plan.tile);
      const int64_t i0 = chunk * plan.row_chunk, i1 = std::min(rows, i0 + plan.row_chunk);
      if constexpr (kGB) std::fill(gbt, gbt + rank * ldt, 0.f);
      if constexpr (kCS) std::fill(colsum + j0, colsum + j1, 0.f);
      for (int64_t i = i0; i < i1; i += kRowBlock) {
        const int nr = static_cast<int>(std::min<int64_t>(kRowBlock, i1 - i));
        reduce_rows<kV, kGB, kCS>(nr, g + i * n, n, m, ldm, rank, kGB ? s + i * rank : nullptr,
                                  kV ? p + i * rank : nullptr, gbt, ldt, colsum, j0, j1);
      }
      if constexpr (kGB) {
        for (int64_t j = j0; j < j1; ++j) {
          for (int64_t k = 0; k < rank; ++k) grad_b[j * rank + k] = gbt[k * ldt + (j - j0)];
        }
      }
    }
    if constexpr (kV) {
      // Implicit barrier above: every thread's partial is complete.
#pragma omp for schedule(static)
      for (int64_t e = 0; e < rows * rank; ++e) {
        float acc = 0.f;
        for (int u = 0; u < nt; ++u) acc += partial[static_cast<size_t>(u) * rows * rank + e];
        out[e] = acc;
      }
    }
  }
}

void reduce_pass(const float* g, int64_t rows, int64_t n, const float* m, int64_t ldm, int64_t rank,
                 const float* s, float* out, float* grad_b, float* colsum, int nthreads) {
  const int key = (out ? 4 : 0) | (grad_b ? 2 : 0) | (colsum ? 1 : 0);
  switch (key) {
    case 7:
      reduce_pass_impl<true, true, true>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    case 6:
      reduce_pass_impl<true, true, false>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    case 5:
      reduce_pass_impl<true, false, true>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    case 4:
      reduce_pass_impl<true, false, false>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    case 3:
      reduce_pass_impl<false, true, true>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    case 2:
      reduce_pass_impl<false, true, false>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    case 1:
      reduce_pass_impl<false, false, true>(g, rows, n, m, ldm, rank, s, out, grad_b, colsum, nthreads);
      break;
    default:
      break;
  }
}

// NR rows, columns [j0, j1):
//   kOut: o[q, j] = bias[j] (or 0) + Σ_k S[q, k]·M[k, j]       (M is [rank, ldm])
//   kGA:  gat[k, j - j0] += Σ_q S[q, k]·X[q, j]              (gat is [rank, ldt] scratch)
template <int NR, bool kOut, bool kGA>
void expand_block(const float* s, int64_t rank, const float* m, int64_t ldm, const float* bias, float* o,
                  int64_t ldo, const float* x, int64_t ldx, float* gat, int64_t ldt, int64_t j0, int64_t j1) {
  int64_t j = j0;
  for (; j + kLanes <= j1; j += kLanes) {
    Vec8 acc[NR], xv[NR];
    if constexpr (kOut) {
      const Vec8 b0 = bias ? load8(bias + j) : Vec8{};
      for (int q = 0; q < NR; ++q) acc[q] = b0;
    }
    if constexpr (kGA) {
      for (int q = 0; q < NR; ++q) xv[q] = load8(x + q * ldx + j);
    }
    for (int64_t k = 0; k < rank; ++k) {
      Vec8 mv{}, gv{};
      if constexpr (kOut) mv = load8(m + k * ldm + j);
      if constexpr (kGA) gv = load8(gat + k * ldt + (j - j0));
      for (int q = 0; q < NR; ++q) {
        const float sk = s[q * rank + k];
        if constexpr (kOut) acc[q] += sk * mv;
        if constexpr (kGA) gv += sk * xv[q];
      }
      if constexpr (kGA) store8(gat + k * ldt + (j - j0), gv);
    }
    if constexpr (kOut) {
      for (int q = 0; q < NR; ++q) store8(o + q * ldo + j, acc[q]);
    }
  }
  for (; j < j1; ++j) {
    float acc[NR];
    for (int q = 0; q < NR; ++q) acc[q] = (kOut && bias) ? bias[j] : 0.f;
    for (int64_t k = 0; k < rank; ++k) {
      float gv = kGA ? gat[k * ldt + (j - j0)] : 0.f;
      for (int q = 0; q < NR; ++q) {
        const float sk = s[q * rank + k];
        if constexpr (kOut) acc[q] += sk * m[k * ldm + j];
        if constexpr (kGA) gv += sk * x[q * ldx + j];
      }
      if constexpr (kGA) gat[k * ldt + (j - j0)] = gv;
    }
    if constexpr (kOut) {
      for (int q = 0; q < NR; ++q) o[q * ldo + j] = acc[q];
    }
  }
}

template <bool kOut, bool kGA>
void expand_rows(int nr, const float* s, int64_t rank, const float* m, int64_t ldm, int64_t n,
                 const float* bias, float* o, const float* x, float* gat, int64_t ldt, int64_t j0,
                 int64_t j1) {
  switch (nr) {
    case 4:
      expand_block<4, kOut, kGA>(s, rank, m, ldm, bias, o, n, x, n, gat, ldt, j0, j1);
      break;
    case 3:
      expand_block<3, kOut, kGA>(s, rank, m, ldm, bias, o, n, x, n, gat, ldt, j0, j1);
      break;
    case 2:
      expand_block<2, kOut, kGA>(s, rank, m, ldm, bias, o, n, x, n, gat, ldt, j0, j1);
      break;
    default:
      expand_block<1, kOut, kGA>(s, rank, m, ldm, bias, o, n, x, n, gat, ldt, j0, j1);
      break;
  }
}

/// One streaming pass producing out [rows, n] = bias + S·M (S [rows, rank], M [rank, ldm]; optional)
/// and grad_a [rank, n] = Sᵀ·X (X [rows, n]; optional), both overwritten. grad_a is accumulated in a
/// per-thread tile with a padded stride and copied out once per tile.
template <bool kOut, bool kGA>
void expand_pass_impl(const float* s, int64_t rows, int64_t rank, const float* m, int64_t ldm, int64_t n,
                      const float* bias, float* out, const float* x, float* grad_a, int nthreads) {
  const Plan plan = make_plan(rows, n, nthreads, !kGA);
  const int64_t items = plan.tiles * plan.row_chunks;
  const int nt = static_cast<int>(std::min<int64_t>(nthreads, items));
  const int64_t ldt = padded_ld(plan.tile);
  std::vector<float> scratch(kGA ? static_cast<size_t>(nt) * rank * ldt : 0);
#pragma omp parallel num_threads(nt)
  {
    float* gat = kGA ? scratch.data() + static_cast<size_t>(omp_get_thread_num()) * rank * ldt : nullptr;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t tile = item / plan.row_chunks, chunk = item % plan.row_chunks;
      const int64_t j0 = tile * plan.tile, j1 = std::min(n, j0 + plan.tile);
      const int64_t i0 = chunk * plan.row_chunk, i1 = std::min(rows, i0 + plan.row_chunk);
      if constexpr (kGA) std::fill(gat, gat + rank * ldt, 0.f);
      for (int64_t i = i0; i < i1; i += kRowBlock) {
        const int nr = static_cast<int>(std::min<int64_t>(kRowBlock, i1 - i));
        expand_rows<kOut, kGA>(nr, s + i * rank, rank, m, ldm, n, bias, kOut ? out + i * n : nullptr,
                               kGA ? x + i * n : nullptr, gat, ldt, j0, j1);
      }
      if constexpr (kGA) {
        for (int64_t k = 0; k < rank; ++k)
          std::copy(gat + k * ldt, gat + k * ldt + (j1 - j0), grad_a + k * n + j0);
      }
    }
  }
}

void expand_pass(const float* s, int64_t rows, int64_t rank, const float* m, int64_t ldm, int64_t n,
                 const float* bias, float* out, const float* x, float* grad_a, int nthreads) {
  if (out && grad_a)
    expand_pass_impl<true, true>(s, rows, rank, m, ldm, n, bias, out, x, grad_a, nthreads);
  else if (out)
    expand_pass_impl<true, false>(s, rows, rank, m, ldm, n, bias, out, x, grad_a, nthreads);
  else if (grad_a)
    expand_pass_impl<false, true>(s, rows, rank, m, ldm, n, bias, out, x, grad_a, nthreads);
}

/// dst [cols, ld] = transpose(src [rows_src, cols]) (ld >= rows_src); src is read once, in order.
void transpose(const float* src, int64_t rows_src, int64_t cols, float* dst, int64_t ld, int nthreads) {
  const int nt = rows_src * cols >= (1 << 16) ? nthreads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows_src; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = src[r * cols + c];
  }
}

/// dst [rows, ld] = src [rows, n] (ld >= n).
void copy_rows(const float* src, int64_t rows, int64_t n, float* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * n, src + (r + 1) * n, dst + r * ld);
}

/// out[i] = scale · in[i].
void scaled_copy(const float* in, int64_t count, float scale, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = scale * in[i];
}

/// colsum[j] = Σ_i g[i, j] (used on the BLAS path; the loop path fuses it into reduce_pass).
void column_sums(const float* g, int64_t rows, int64_t n, float* colsum, int nthreads) {
  reduce_pass(g, rows, n, nullptr, 0, 0, nullptr, nullptr, nullptr, colsum, nthreads);
}

void check_shape(const LoraShape& s) {
  const auto dim = [](int64_t v, const char* name) {
    if (v < 1) throw ArgumentError(name, "an integer >= 1", std::to_string(v));
  };
  dim(s.rows, "shape.rows");
  dim(s.in_dim, "shape.in_dim");
  dim(s.out_dim, "shape.out_dim");
  dim(s.rank, "shape.rank");
}

void check_buffer(const void* p, const char* name, const char* why = "") {
  if (!p) throw ArgumentError(name, std::string("a non-null buffer") + why, "null");
}

}  // namespace

void lora_linear_forward(const float* x, const float* x_lora, const float* weight, const float* bias,
                         const float* lora_a, const float* lora_b, const LoraShape& shape, float* y,
                         float* xa_out, int threads) {
  check_shape(shape);
  check_buffer(x, "x");
  check_buffer(weight, "weight");
  check_buffer(lora_a, "lora_a");
  check_buffer(lora_b, "lora_b");
  check_buffer(y, "y");
  ScopedThreads guard(threads);
  const int nthreads = guard.count();
  const int64_t rows = shape.rows, in = shape.in_dim, out = shape.out_dim, r = shape.rank;
  const float* xl = x_lora ? x_lora : x;  // the low-rank path's input

  std::vector<float> u_store(xa_out ? 0 : rows * r);
  float* u = xa_out ? xa_out : u_store.data();
  std::vector<float> su(rows * r);
  if (r <= kLoopRankMax) {
    const int64_t lda = padded_ld(in), ldb = padded_ld(out);
    std::vector<float> ap(r * lda), bt(r * ldb);
    copy_rows(lora_a, r, in, ap.data(), lda);
    reduce_pass(xl, rows, in, ap.data(), lda, r, nullptr, u, nullptr, nullptr, nthreads);
    scaled_copy(u, rows * r, shape.scale, su.data());
    transpose(lora_b, out, r, bt.data(), ldb, nthreads);
    expand_pass(su.data(), rows, r, bt.data(), ldb, out, bias, y, nullptr, nullptr, nthreads);
  } else {
    sgemm(false, true, rows, r, in, 1.f, xl, in, lora_a, in, 0.f, u, r);
    if (bias) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
      for (int64_t i = 0; i < rows; ++i) std::copy(bias, bias + out, y + i * out);
    }
    sgemm(false, true, rows, out, r, shape.scale, u, r, lora_b, r, bias ? 1.f : 0.f, y, out);
  }
  sgemm(false, true, rows, out, in, 1.f, x, in, weight, in, 1.f, y, out);
}

void lora_linear_backward(const float* x, const float* x_lora, const float* weight, const float* lora_a,
                          const float* lora_b, const float* grad_y, const float* xa, const LoraShape& shape,
                          float* grad_x, float* grad_x_lora, float* grad_a, float* grad_b, float* grad_bias,
                          int threads) {
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
  // The low-rank path's input: x_lora (drop(x)) when given, else x.
  const float* xl = x_lora ? x_lora : x;
  if (grad_a || (grad_b && !xa)) check_buffer(xl, "x", " (grad_a, or grad_b without xa, is requested)");
  ScopedThreads guard(threads);
  const int nthreads = guard.count();
  const int64_t rows = shape.rows, in = shape.in_dim, out = shape.out_dim, r = shape.rank;
  const float scale = shape.scale;
  // Where scale·v·A goes: into grad_x (the base GEMM then accumulates onto it, beta = 1) or, with
  // x_lora, into grad_x_lora (grad_x is then the base GEMM alone, beta = 0).
  float* grad_low = x_lora ? grad_x_lora : grad_x;
  const bool need_v = grad_low || grad_a;
  const bool loops = r <= kLoopRankMax;

  // A with a padded stride (the loop path streams its rows side by side).
  const int64_t lda = padded_ld(in);
  std::vector<float> ap;
  if (loops && (need_v || (grad_b && !xa))) {
    ap.resize(r * lda);
    copy_rows(lora_a, r, in, ap.data(), lda);
  }

  // su = scale·(x·Aᵀ), needed only for grad_b.
  std::vector<float> su;
  if (grad_b) {
    su.resize(rows * r);
    if (xa) {
      scaled_copy(xa, rows * r, scale, su.data());
    } else {
      std::vector<float> u(rows * r);
      if (loops)
        reduce_pass(xl, rows, in, ap.data(), lda, r, nullptr, u.data(), nullptr, nullptr, nthreads);
      else
        sgemm(false, true, rows, r, in, 1.f, xl, in, lora_a, in, 0.f, u.data(), r);
      scaled_copy(u.data(), rows * r, scale, su.data());
    }
  }

  std::vector<float> v(need_v ? rows * r : 0);
  if (loops) {
    if (need_v || grad_b || grad_bias) {
      const int64_t ldb = padded_ld(out);
      std::vector<float> bt(need_v ? r * ldb : 0);
      if (need_v) transpose(lora_b, out, r, bt.data(), ldb, nthreads);
      reduce_pass(grad_y, rows, out, need_v ? bt.data() : nullptr, ldb, r, grad_b ? su.data() : nullptr,
                  need_v ? v.data() : nullptr, grad_b, grad_bias, nthreads);
    }
    if (need_v) {
      std::vector<float> sv(rows * r);
      scaled_copy(v.data(), rows * r, scale, sv.data());
      expand_pass(sv.data(), rows, r, ap.data(), lda, in, nullptr, grad_low, xl, grad_a, nthreads);
    }
  } else {
    if (need_v) {
      sgemm(false, false, rows, r, out, 1.f, grad_y, out, lora_b, r, 0.f, v.data(), r);
      if (grad_low) sgemm(false, false, rows, in, r, scale, v.data(), r, lora_a, in, 0.f, grad_low, in);
      if (grad_a) sgemm(true, false, r, in, rows, scale, v.data(), r, xl, in, 0.f, grad_a, in);
    }
    if (grad_b) sgemm(true, false, out, r, rows, 1.f, grad_y, out, su.data(), r, 0.f, grad_b, r);
    if (grad_bias) column_sums(grad_y, rows, out, grad_bias, nthreads);
  }
  if (grad_x) {
    sgemm(false, false, rows, in, out, 1.f, grad_y, out, weight, in, x_lora ? 0.f : 1.f, grad_x, in);
  }
}

}  // namespace mmesid::kernels
