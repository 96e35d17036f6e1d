// Optimized CPU residual-quantization encode (contract: rq_encode.h).
//
// Items are processed in tiles (one tile per OpenMP task, per-thread workspaces allocated up front);
// nothing of size [n, K] is ever materialised. Two strategies share the same selection code:
//
//  * explicit residuals — each tile keeps the residual of every live beam ([tile·B, d]) and, per
//    level, scores it against that level's K codewords (‖c‖² − 2⟨r, c⟩, plus ‖r‖² for beams). Costs
//    2·K·d FLOP per (beam, level); exact up to fp32 dot products. Used for greedy (at small d fused
//    into the microkernel: scores and a running argmin never leave registers) and for small batches
//    or oversized tables with beam search.
//  * cross-product LUT (FAISS's beam LUT) — one pass of the tile against all L·K codewords gives
//    ⟨x, c⟩, and ⟨s_beam, c⟩ is recovered from a precomputed table of codeword cross products, so
//    each extra beam costs K·l adds instead of 2·K·d FLOP. Used for beam search when the table (built
//    once per call, K²·L(L−1)/2 floats) pays for itself.
//
// Inner products go through a register-tiled microkernel (GCC vector extensions: AVX-512, AVX2 or
// 128-bit SSE/NEON, chosen at compile time) for small d, and through sgemm for large d.
#include "rq_encode.h"

#include <omp.h>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"
#include "rq_encode_math.h"

namespace mmesid::kernels {

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kMr = 8;
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kMr = 6;
#else
constexpr int kLanes = 4;
constexpr int kMr = 6;
#endif
constexpr int kNr = 2 * kLanes;  // codes per packed panel (two vectors)
typedef float VecF __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VecI __attribute__((vector_size(kLanes * sizeof(int32_t))));

constexpr int64_t kMicroMaxDim = 128;         // above: sgemm
constexpr int64_t kInsertMaxBeam = 64;        // above: gather + nth_element selection
constexpr int64_t kTileFloats = 1 << 16;      // score buffer per thread: 256 KiB (microkernel)...
constexpr int64_t kTileFloatsGemm = 1 << 18;  // ...1 MiB when sgemm needs tall tiles
constexpr int64_t kMaxTileItems = 256;
constexpr double kMaxCrossFloats = 32.0 * 1024 * 1024;  // LUT table cap (128 MiB)

inline int64_t round_up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

inline VecF load(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store(float* p, VecF v) {
  std::memcpy(p, &v, sizeof(v));
}

/// Bit i set when lane i of a comparison result is true (all-ones). Intrinsics where available, a
/// portable loop otherwise.
inline uint32_t lane_bits(VecI m) {
#if defined(__AVX512F__)
  __m512i v;
  std::memcpy(&v, &m, sizeof(v));
  return static_cast<uint32_t>(_mm512_cmplt_epi32_mask(v, _mm512_setzero_si512()));
#elif defined(__AVX__)
  __m256 v;
  std::memcpy(&v, &m, sizeof(v));
  return static_cast<uint32_t>(_mm256_movemask_ps(v));
#else
  uint32_t bits = 0;
  for (int i = 0; i < kLanes; ++i) bits |= static_cast<uint32_t>(m[i] != 0) << i;
  return bits;
#endif
}

/// Codebook tables computed once per call.
struct Prepared {
  int64_t d = 0, L = 0, K = 0, Kp = 0;  // Kp: K rounded up to a whole panel
  bool micro = false;
  const float* codebooks = nullptr;
  std::vector<float> norms;   // [L, Kp] ‖c‖², NaN in the padding so padded codes never win
  std::vector<float> packed;  // micro: [L, Kp / kNr, d, kNr] panels, zero padding
  std::vector<float> cross;   // LUT: level l at cross_offset[l], [l·K, Kp]: ⟨C_j[a], C_l[c]⟩
  std::vector<int64_t> cross_offset;

  const float* codeword(int64_t l, int64_t c) const { return codebooks + (l * K + c) * d; }
  const float* cross_row(int64_t l, int64_t j, int32_t code) const {
    return cross.data() + cross_offset[l] + (j * K + code) * Kp;
  }
};

/// out[r, c] = ⟨a_r, panel code c⟩ for kMr rows of a (stride lda) and kNr codes of one panel.
inline void micro_tile(const float* a, int64_t lda, const float* panel, int64_t d, float* out, int64_t ldo) {
  VecF acc0[kMr], acc1[kMr];
  for (int r = 0; r < kMr; ++r) {
    acc0[r] = VecF{};
    acc1[r] = VecF{};
  }
  for (int64_t k = 0; k < d; ++k) {
    const VecF b0 = load(panel + k * kNr);
    const VecF b1 = load(panel + k * kNr + kLanes);
    for (int r = 0; r < kMr; ++r) {
      const VecF ar = VecF{} + a[r * lda + k];
      acc0[r] += ar * b0;
      acc1[r] += ar * b1;
    }
  }
  for (int r = 0; r < kMr; ++r) {
    store(out + r * ldo, acc0[r]);
    store(out + r * ldo + kLanes, acc1[r]);
  }
}

/// Greedy step fused into the microkernel: for kMr rows of a, the code minimising
/// ‖c‖² − 2⟨a_r, c⟩ over the level's panels (rq_candidate_before order: ties to the lower code, NaN
/// last; padded codes have NaN norms). Scores never leave registers except per-lane running minima.
void micro_greedy_block(const float* a, int64_t d, const float* level, int64_t panels, const float* norms,
                        int32_t* best_code) {
  VecF best[kMr][2];
  VecI best_idx[kMr][2];
  VecI lane;
  for (int i = 0; i < kLanes; ++i) lane[i] = i;
  for (int64_t q = 0; q < panels; ++q) {
    const float* panel = level + q * d * kNr;
    VecF acc0[kMr], acc1[kMr];
    for (int r = 0; r < kMr; ++r) {
      acc0[r] = VecF{};
      acc1[r] = VecF{};
    }
    for (int64_t k = 0; k < d; ++k) {
      const VecF b0 = load(panel + k * kNr);
      const VecF b1 = load(panel + k * kNr + kLanes);
      for (int r = 0; r < kMr; ++r) {
        const VecF ar = VecF{} + a[r * d + k];
        acc0[r] += ar * b0;
        acc1[r] += ar * b1;
      }
    }
    const VecF n0 = load(norms + q * kNr), n1 = load(norms + q * kNr + kLanes);
    const VecI i0 = lane + static_cast<int32_t>(q * kNr), i1 = i0 + kLanes;
    for (int r = 0; r < kMr; ++r) {
      const VecF s0 = n0 - 2.f * acc0[r], s1 = n1 - 2.f * acc1[r];
      if (q == 0) {
        best[r][0] = s0;
        best[r][1] = s1;
        best_idx[r][0] = i0;
        best_idx[r][1] = i1;
        continue;
      }
      const VecI u0 = (s0 < best[r][0]) | ((best[r][0] != best[r][0]) & (s0 == s0));
      const VecI u1 = (s1 < best[r][1]) | ((best[r][1] != best[r][1]) & (s1 == s1));
      best[r][0] = u0 ? s0 : best[r][0];
      best[r][1] = u1 ? s1 : best[r][1];
      best_idx[r][0] = u0 ? i0 : best_idx[r][0];
      best_idx[r][1] = u1 ? i1 : best_idx[r][1];
    }
  }
  for (int r = 0; r < kMr; ++r) {
    float bv = best[r][0][0];
    int32_t bi = best_idx[r][0][0];
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < kLanes; ++i) {
        if (rq_candidate_before(best[r][h][i], 0, best_idx[r][h][i], bv, 0, bi)) {
          bv = best[r][h][i];
          bi = best_idx[r][h][i];
        }
      }
    }
    best_code[r] = bi;
  }
}

/// g[r, c] = ⟨a_r, C_l[c]⟩ for r < rows, c < Kp (stride ldg; padded codes give 0 in micro mode,
/// garbage otherwise — norms are NaN there). In micro mode `a` must hold round_up(rows, kMr) rows.
void level_inner_products(const Prepared& p, int64_t l, const float* a, int64_t rows, float* g, int64_t ldg) {
  if (!p.micro) {
    sgemm(false, true, rows, p.K, p.d, 1.f, a, p.d, p.codeword(l, 0), p.d, 0.f, g, ldg);
    return;
  }
  const int64_t panels = p.Kp / kNr, rows_p = round_up(rows, kMr);
  const float* level = p.packed.data() + l * p.Kp * p.d;
  for (int64_t q = 0; q < panels; ++q) {
    const float* panel = level + q * p.d * kNr;
    for (int64_t r0 = 0; r0 < rows_p; r0 += kMr) {
      micro_tile(a + r0 * p.d, p.d, panel, p.d, g + r0 * ldg + q * kNr, ldg);
    }
  }
}

/// Index of the best code by norms[c] − 2·ip[c] under rq_candidate_before (ties to the lower code,
/// NaN last). ip and norms must be readable up to round_up(K, kLanes).
int32_t greedy_argmin(const float* ip, const float* norms, int64_t K) {
  VecI idx;
  for (int i = 0; i < kLanes; ++i) idx[i] = i;
  VecF best = load(norms) - 2.f * load(ip);
  VecI best_idx = idx;
  const int64_t kv = round_up(K, kLanes);
  for (int64_t c = kLanes; c < kv; c += kLanes) {
    idx += kLanes;
    const VecF s = load(norms + c) - 2.f * load(ip + c);
    const VecI better = (s < best) | ((best != best) & (s == s));
    best = better ? s : best;
    best_idx = better ? idx : best_idx;
  }
  float bv = best[0];
  int32_t bi = best_idx[0];
  for (int i = 1; i < kLanes; ++i) {
    if (rq_candidate_before(best[i], 0, best_idx[i], bv, 0, bi)) {
      bv = best[i];
      bi = best_idx[i];
    }
  }
  return bi;
}

/// Top-B selection over the candidates of one item at one level: scores [rows, ld] (row = parent
/// beam rank, column = code < K).
///
/// A cheap vector pass splits the candidates into G >= B disjoint lane groups and takes each group's
/// minimum; when those are finite, the B-th smallest of them, tau, bounds the B-th best score from
/// above (the minima are B distinct candidates), so only candidates <= tau can enter, and the exact,
/// order-independent selection (rq_topk_insert or a sort) runs on those few — about B of them.
class Selector {
 public:
  /// Allocates everything select() may need for beams <= `beam` over `K` codes, so that nothing
  /// allocates (or throws) inside the parallel region.
  void reserve(int64_t beam, int64_t K) {
    err_.resize(beam);
    parent_.resize(beam);
    code_.resize(beam);
    minima_.reserve((beam + kLanes - 1) / kLanes * kLanes);
    if (beam > kInsertMaxBeam) pool_.reserve(beam * K);
  }

  void select(const float* scores, int64_t rows, int64_t ld, int64_t K, int64_t capacity) {
    capacity_ = capacity;
    count_ = 0;
    gather_ = capacity > kInsertMaxBeam;
    pool_.clear();
    const float tau = threshold(scores, rows, ld, K);
    if (tau < std::numeric_limits<float>::infinity()) {
      for (int64_t b = 0; b < rows; ++b) {
        const float* s = scores + b * ld;
        int64_t c = 0;
        for (; c + 2 * kLanes <= K; c += 2 * kLanes) {
          const uint32_t lo = lane_bits(load(s + c) <= tau);
          const uint32_t hi = lane_bits(load(s + c + kLanes) <= tau);
          uint64_t bits = lo | (static_cast<uint64_t>(hi) << kLanes);
          while (bits != 0) {
            const int64_t i = c + __builtin_ctzll(bits);
            bits &= bits - 1;
            offer(s[i], static_cast<int32_t>(b), static_cast<int32_t>(i));
          }
        }
        for (; c < K; ++c) {
          if (s[c] <= tau) offer(s[c], static_cast<int32_t>(b), static_cast<int32_t>(c));
        }
      }
    } else {
      for (int64_t b = 0; b < rows; ++b) {
        for (int64_t c = 0; c < K; ++c) {
          offer(scores[b * ld + c], static_cast<int32_t>(b), static_cast<int32_t>(c));
        }
      }
    }
    if (gather_) finish_gather();
  }

  int64_t count() const { return count_; }
  float err(int64_t r) const { return err_[r]; }
  int32_t parent(int64_t r) const { return parent_[r]; }
  int32_t code(int64_t r) const { return code_[r]; }

 private:
  struct Candidate {
    float err;
    int32_t parent;
    int32_t code;
  };

  /// tau as described above, or +inf when no valid bound is available (then everything is offered).
  float threshold(const float* scores, int64_t rows, int64_t ld, int64_t K) {
    const int64_t chunks_per_row = K / kLanes;
    const int64_t groups = (capacity_ + kLanes - 1) / kLanes;  // vectors of lane minima
    const float inf = std::numeric_limits<float>::infinity();
    if (chunks_per_row * rows < groups) return inf;
    minima_.assign(groups * kLanes, inf);
    float* m = minima_.data();
    const int64_t span = chunks_per_row * kLanes;
    if (groups == 1) {
      VecF acc = VecF{} + inf;
      for (int64_t b = 0; b < rows; ++b) {
        const float* s = scores + b * ld;
        for (int64_t c = 0; c < span; c += kLanes) {
          const VecF v = load(s + c);
          acc = v < acc ? v : acc;
        }
      }
      store(m, acc);
    } else {
      int64_t g = 0;
      for (int64_t b = 0; b < rows; ++b) {
        const float* s = scores + b * ld;
        for (int64_t c = 0; c < span; c += kLanes) {
          const VecF v = load(s + c), cur = load(m + g * kLanes);
          store(m + g * kLanes, v < cur ? v : cur);
          if (++g == groups) g = 0;
        }
      }
    }
    const int64_t total = groups * kLanes;
    if (capacity_ <= kInsertMaxBeam) {
      // B-th smallest by insertion into a sorted prefix (B small; most minima fail the first test).
      int64_t count = 0;
      for (int64_t i = 0; i < total; ++i) {
        const float v = m[i];
        if (count == capacity_ && !(v < m[count - 1])) continue;
        int64_t j = count < capacity_ ? count++ : count - 1;
        for (; j > 0 && v < m[j - 1]; --j) m[j] = m[j - 1];
        m[j] = v;
      }
      return m[capacity_ - 1];
    }
    std::nth_element(m, m + (capacity_ - 1), m + total);
    return m[capacity_ - 1];
  }

  void offer(float e, int32_t parent, int32_t code) {
    if (gather_) {
      pool_.push_back({e, parent, code});
    } else {
      count_ = rq_topk_insert(err_.data(), parent_.data(), code_.data(), static_cast<int>(count_),
                              static_cast<int>(capacity_), e, parent, code);
    }
  }

  void finish_gather() {
    const auto before = [](const Candidate& a, const Candidate& b) {
      return rq_candidate_before(a.err, a.parent, a.code, b.err, b.parent, b.code);
    };
    const int64_t kept = std::min<int64_t>(capacity_, pool_.size());
    if (kept < static_cast<int64_t>(pool_.size())) {
      std::nth_element(pool_.begin(), pool_.begin() + kept, pool_.end(), before);
    }
    std::sort(pool_.begin(), pool_.begin() + kept, before);
    for (int64_t r = 0; r < kept; ++r) {
      err_[r] = pool_[r].err;
      parent_[r] = pool_[r].parent;
      code_[r] = pool_[r].code;
    }
    count_ = kept;
  }

  int64_t capacity_ = 0, count_ = 0;
  bool gather_ = false;
  std::vector<float> err_, minima_;
  std::vector<int32_t> parent_, code_;
  std::vector<Candidate> pool_;
};

struct Workspace {
  std::vector<float> r0, r1, g, e0, e1, row, ip;
  std::vector<int32_t> h0, h1;
  Selector selector;
};

double squared_norm(const float* v, int64_t d) {
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) s += static_cast<double>(v[k]) * v[k];
  return s;
}

float residual_squared_norm(const float* v, int64_t d) {
  VecF acc0{}, acc1{};
  int64_t k = 0;
  for (; k + 2 * kLanes <= d; k += 2 * kLanes) {
    const VecF a = load(v + k), b = load(v + k + kLanes);
    acc0 += a * a;
    acc1 += b * b;
  }
  acc0 += acc1;
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += acc0[i];
  for (; k < d; ++k) s += v[k] * v[k];
  return s;
}

/// sq_error of one item, straight from its chosen codewords: ‖x − Σ_l C_l[code_l]‖² (fp32 residual,
/// double sum).
float direct_sq_error(const Prepared& p, const float* xi, const int32_t* code, float* buf) {
  std::memcpy(buf, xi, sizeof(float) * p.d);
  for (int64_t l = 0; l < p.L; ++l) {
    const float* c = p.codeword(l, code[l]);
#pragma omp simd
    for (int64_t k = 0; k < p.d; ++k) buf[k] -= c[k];
  }
  return static_cast<float>(squared_norm(buf, p.d));
}

/// Explicit-residual encode of items [i0, i0 + T).
void encode_tile_explicit(const Prepared& p, const float* x, int64_t i0, int64_t T, int64_t beam,
                          int32_t* codes, float* sq_error, Workspace& w) {
  const int64_t d = p.d, L = p.L, K = p.K, Kp = p.Kp;
  float* rc = w.r0.data();
  float* rn = w.r1.data();
  float* ec = w.e0.data();
  float* en = w.e1.data();
  int32_t* hc = w.h0.data();
  int32_t* hn = w.h1.data();
  std::memcpy(rc, x + i0 * d, sizeof(float) * T * d);
  std::fill(rc + T * d, rc + round_up(T, kMr) * d, 0.f);
  for (int64_t t = 0; t < T; ++t) ec[t] = residual_squared_norm(rc + t * d, d);
  int64_t nb = 1;
  for (int64_t l = 0; l < L; ++l) {
    const float* norms = p.norms.data() + l * Kp;
    if (beam == 1) {
      int32_t* block_codes = w.h0.data();
      if (p.micro) {
        const float* level = p.packed.data() + l * Kp * d;
        for (int64_t r0 = 0; r0 < T; r0 += kMr) {
          micro_greedy_block(rc + r0 * d, d, level, Kp / kNr, norms, block_codes + r0);
        }
      } else {
        level_inner_products(p, l, rc, T, w.g.data(), Kp);
        for (int64_t t = 0; t < T; ++t) block_codes[t] = greedy_argmin(w.g.data() + t * Kp, norms, K);
      }
      for (int64_t t = 0; t < T; ++t) {
        const int32_t code = block_codes[t];
        codes[(i0 + t) * L + l] = code;
        const float* c = p.codeword(l, code);
        float* r = rc + t * d;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) r[k] -= c[k];
      }
      continue;
    }
    const int64_t nb2 = rq_next_beam_count(nb, K, beam);
    level_inner_products(p, l, rc, T * nb, w.g.data(), Kp);
    for (int64_t t = 0; t < T; ++t) {
      // Scores overwrite the inner products in place: row (t, b) is read only here.
      float* scores = w.g.data() + t * nb * Kp;
      for (int64_t b = 0; b < nb; ++b) {
        float* s = scores + b * Kp;
        const float eb = ec[t * nb + b];
#pragma omp simd
        for (int64_t c = 0; c < Kp; ++c) s[c] = rq_extended_error(eb, norms[c], s[c]);
      }
      Selector& sel = w.selector;
      sel.select(scores, nb, Kp, K, nb2);
      for (int64_t r = 0; r < nb2; ++r) {
        const int64_t src = t * nb + sel.parent(r), dst = t * nb2 + r;
        const float* c = p.codeword(l, sel.code(r));
        const float* a = rc + src * d;
        float* o = rn + dst * d;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) o[k] = a[k] - c[k];
        en[dst] = residual_squared_norm(o, d);
        std::memcpy(hn + dst * L, hc + src * L, sizeof(int32_t) * l);
        hn[dst * L + l] = sel.code(r);
      }
    }
    nb = nb2;
    std::fill(rn + T * nb * d, rn + round_up(T * nb, kMr) * d, 0.f);
    std::swap(rc, rn);
    std::swap(ec, en);
    std::swap(hc, hn);
  }
  if (beam > 1) {
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(codes + (i0 + t) * L, hc + t * nb * L, sizeof(int32_t) * L);
    }
  }
  if (sq_error != nullptr) {
    for (int64_t t = 0; t < T; ++t) {
      sq_error[i0 + t] = direct_sq_error(p, x + (i0 + t) * d, codes + (i0 + t) * L, w.row.data());
    }
  }
}

/// Cross-product-LUT encode of items [i0, i0 + T).
void encode_tile_lut(const Prepared& p, const float* x, int64_t i0, int64_t T, int64_t beam, int32_t* codes,
                     float* sq_error, Workspace& w) {
  const int64_t d = p.d, L = p.L, K = p.K, Kp = p.Kp, ldg = L * Kp;
  float* g = w.g.data();
  if (p.micro) {
    float* xt = w.r0.data();
    std::memcpy(xt, x + i0 * d, sizeof(float) * T * d);
    std::fill(xt + T * d, xt + round_up(T, kMr) * d, 0.f);
    for (int64_t l = 0; l < L; ++l) level_inner_products(p, l, xt, T, g + l * Kp, ldg);
  } else {
    for (int64_t l = 0; l < L; ++l) level_inner_products(p, l, x + i0 * d, T, g + l * Kp, ldg);
  }
  float* scores = w.ip.data();
  for (int64_t t = 0; t < T; ++t) {
    const float* gt = g + t * ldg;
    float* ec = w.e0.data();
    float* en = w.e1.data();
    int32_t* hc = w.h0.data();
    int32_t* hn = w.h1.data();
    ec[0] = static_cast<float>(squared_norm(x + (i0 + t) * d, d));
    int64_t nb = 1;
    for (int64_t l = 0; l < L; ++l) {
      const float* norms = p.norms.data() + l * Kp;
      const int64_t nb2 = rq_next_beam_count(nb, K, beam);
      for (int64_t b = 0; b < nb; ++b) {
        float* ip = scores + b * Kp;
        std::memcpy(ip, gt + l * Kp, sizeof(float) * Kp);
        for (int64_t j = 0; j < l; ++j) {
          const float* cr = p.cross_row(l, j, hc[b * L + j]);
#pragma omp simd
          for (int64_t c = 0; c < Kp; ++c) ip[c] -= cr[c];
        }
        if (nb2 == 1) {
          hn[l] = greedy_argmin(ip, norms, K);
          std::memcpy(hn, hc, sizeof(int32_t) * l);
          continue;
        }
        const float eb = ec[b];
#pragma omp simd
        for (int64_t c = 0; c < Kp; ++c) ip[c] = rq_extended_error(eb, norms[c], ip[c]);
      }
      if (nb2 > 1) {
        Selector& sel = w.selector;
        sel.select(scores, nb, Kp, K, nb2);
        for (int64_t r = 0; r < nb2; ++r) {
          en[r] = sel.err(r);
          std::memcpy(hn + r * L, hc + sel.parent(r) * L, sizeof(int32_t) * l);
          hn[r * L + l] = sel.code(r);
        }
      }
      nb = nb2;
      std::swap(ec, en);
      std::swap(hc, hn);
    }
    std::memcpy(codes + (i0 + t) * L, hc, sizeof(int32_t) * L);
    if (sq_error != nullptr) {
      sq_error[i0 + t] = direct_sq_error(p, x + (i0 + t) * d, codes + (i0 + t) * L, w.row.data());
    }
  }
}

/// Which strategy to use: the LUT when its per-item saving repays the table, the table fits the cap
/// and beam search is on (for greedy the explicit path does strictly less arithmetic).
bool choose_lut(const RqEncodeShape& shape) {
  const double n = static_cast<double>(shape.n), d = static_cast<double>(shape.dim);
  const double L = static_cast<double>(shape.levels), K = static_cast<double>(shape.codebook_size);
  if (shape.beam == 1 || shape.levels == 1) return false;
  const double kp = static_cast<double>(round_up(shape.codebook_size, kNr));
  if (K * kp * L * (L - 1) / 2 > kMaxCrossFloats) return false;
  double beams = 0, beam_levels = 0;
  int64_t nb = 1;
  for (int64_t l = 0; l < shape.levels; ++l) {
    beams += static_cast<double>(nb);
    beam_levels += static_cast<double>(nb) * static_cast<double>(l);
    nb = rq_next_beam_count(nb, shape.codebook_size, shape.beam);
  }
  // Per item: explicit = 2·K·d FLOP per (beam, level); LUT = one 2·L·K·d pass plus ~4 scalar-ish
  // ops per (beam, level, code) for selection and l adds per code for the table rows.
  const double explicit_cost = 2 * K * d * beams + 4 * K * beams;
  const double lut_cost = 2 * L * K * d + 4 * K * beams + 2 * K * beam_levels;
  const double table_cost = K * K * L * (L - 1) * d;
  return n * lut_cost + table_cost < n * explicit_cost;
}

}  // namespace

namespace detail {

/// Test hook: rq_encode with the strategy forced (0 = automatic, 1 = explicit residuals, 2 = LUT).
void rq_encode_with_strategy(const float* x, const float* codebooks, const RqEncodeShape& shape,
                             int32_t* codes, float* sq_error, int threads, int strategy) {
  rq_check_arguments("rq_encode", x, codebooks, shape, codes);
  ScopedThreads guard(threads);
  const int nt = guard.count();
  const int64_t n = shape.n, d = shape.dim, L = shape.levels, K = shape.codebook_size;
  const int64_t beam = shape.beam;
  const bool lut = strategy == 0 ? choose_lut(shape) : strategy == 2;

  Prepared p;
  p.d = d;
  p.L = L;
  p.K = K;
  p.Kp = round_up(K, kNr);
  p.micro = d <= kMicroMaxDim;
  p.codebooks = codebooks;
  const int64_t Kp = p.Kp;
  p.norms.assign(L * Kp, std::numeric_limits<float>::quiet_NaN());
  if (p.micro) p.packed.assign(L * Kp * d, 0.f);
#pragma omp parallel for num_threads(resolve_threads(nt)) schedule(static)
  for (int64_t lc = 0; lc < L * K; ++lc) {
    const int64_t l = lc / K, c = lc % K;
    const float* cw = codebooks + lc * d;
    p.norms[l * Kp + c] = static_cast<float>(squared_norm(cw, d));
    if (p.micro) {
      float* panel = p.packed.data() + l * Kp * d + (c / kNr) * d * kNr + c % kNr;
      for (int64_t k = 0; k < d; ++k) panel[k * kNr] = cw[k];
    }
  }
  if (lut) {
    p.cross_offset.assign(L, 0);
    int64_t total = 0;
    for (int64_t l = 0; l < L; ++l) {
      p.cross_offset[l] = total;
      total += l * K * Kp;
    }
    p.cross.assign(total, 0.f);
    for (int64_t l = 1; l < L; ++l) {
      sgemm(false, true, l * K, K, d, 1.f, codebooks, d, p.codeword(l, 0), d, 0.f,
            p.cross.data() + p.cross_offset[l], Kp);
    }
  }

  // Tile size: bounded score buffer, at most kMaxTileItems items, and at least one tile per thread.
  const int64_t per_item = lut ? L * Kp : beam * Kp;
  const int64_t tile_floats = p.micro ? kTileFloats : kTileFloatsGemm;
  int64_t tile = std::max<int64_t>(1, std::min<int64_t>(kMaxTileItems, tile_floats / per_item));
  tile = std::min(tile, std::max<int64_t>(1, (n + nt - 1) / nt));
  if (tile >= kMr) tile = tile / kMr * kMr;
  const int64_t tiles = (n + tile - 1) / tile;
  const int workers = static_cast<int>(std::min<int64_t>(nt, tiles));

  const int64_t rows = lut ? round_up(tile, kMr) : round_up(tile * beam, kMr);
  std::vector<Workspace> spaces(workers);
  for (Workspace& w : spaces) {
    w.r0.assign((lut && !p.micro) ? 0 : rows * d, 0.f);
    w.r1.assign(lut ? 0 : rows * d, 0.f);
    w.g.assign(lut ? rows * L * Kp : rows * Kp, 0.f);
    const int64_t states = lut ? beam : rows;
    w.e0.assign(states, 0.f);
    w.e1.assign(states, 0.f);
    w.h0.assign(states * L, 0);
    w.h1.assign(states * L, 0);
    w.row.assign(std::max(Kp, d), 0.f);
    w.ip.assign(lut ? beam * Kp : 0, 0.f);
    if (beam > 1) w.selector.reserve(beam, K);
  }

#pragma omp parallel num_threads(resolve_threads(workers))
  {
    Workspace& w = spaces[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
    for (int64_t q = 0; q < tiles; ++q) {
      const int64_t i0 = q * tile, T = std::min(tile, n - i0);
      if (lut) {
        encode_tile_lut(p, x, i0, T, beam, codes, sq_error, w);
      } else {
        encode_tile_explicit(p, x, i0, T, beam, codes, sq_error, w);
      }
    }
  }
}

}  // namespace detail

void rq_encode(const float* x, const float* codebooks, const RqEncodeShape& shape, int32_t* codes,
               float* sq_error, int threads) {
  detail::rq_encode_with_strategy(x, codebooks, shape, codes, sq_error, threads, 0);
}

}  // namespace mmesid::kernels
