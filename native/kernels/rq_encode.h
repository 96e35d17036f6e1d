// Residual-quantization encode: the hot path of the MM-RQ-VAE tokenizer and of every
// tokenization service.
//
// Given items x [n, d] and L codebooks [L, K, d], level l picks a codeword of codebook l for the
// residual left by levels 0..l-1. Greedy (beam = 1, what the MME-SID paper uses) keeps the nearest
// codeword at each level; beam search of width B keeps the B partial code sequences with the lowest
// squared reconstruction error at each level (B·K candidates scored per level) and returns the best
// full sequence, as FAISS's ResidualQuantizer does.
//
// Ordering rule shared by every implementation: candidates are ranked by squared error ascending;
// exact ties go to the lower (parent beam rank, code) pair, parent beams being ranked by their own
// error. Greedy is exactly beam = 1.
//
// The optimized CPU kernel never materialises an [n, K] distance matrix: items are processed in tiles
// of at most a few hundred rows. Greedy scores each tile's explicit residuals level by level (the
// same 2·L·K·d FLOP per item as scoring all L·K codewords at once, fewer rounding steps); beam search
// scores the tile against all L·K codewords once and recovers the beams' residual inner products from
// a table of codeword cross products ⟨C_j[a], C_l[c]⟩, j < l (FAISS's beam LUT idea), so it costs
// little beyond greedy. Small batches, and tables over 128 MiB, use explicit residuals for beams too.
// The strategies differ only in fp32 rounding (exact near-ties may resolve differently).
#pragma once

#include <cstdint>

#include "common.h"

namespace mmesid::kernels {

/// Shapes and options of one residual-quantization encode.
struct RqEncodeShape {
  int64_t n = 0;              ///< items (rows of x), >= 1
  int64_t dim = 0;            ///< embedding dimension d, >= 1
  int64_t levels = 0;         ///< L, number of codebooks, >= 1
  int64_t codebook_size = 0;  ///< K, codewords per codebook, >= 1 (and <= 2^31 - 1)
  int beam = 1;               ///< beam width B, 1 <= B <= K^L (greedy when 1)
};

/// Optimized multi-threaded CPU encode.
/// @param x          [n, dim] float32, row-major.
/// @param codebooks  [levels, codebook_size, dim] float32, row-major.
/// @param codes      out: [n, levels] int32, codes[i*L + l] in [0, K).
/// @param sq_error   out, optional (nullptr to skip): [n] float32, ‖x_i − Σ_l C_l[codes_il]‖²
///                   computed directly from the chosen codewords (not from the running scores).
/// @param threads    0 = all hardware threads.
/// @throws std::invalid_argument on a non-positive dimension or an out-of-range beam.
void rq_encode(const float* x, const float* codebooks, const RqEncodeShape& shape, int32_t* codes,
               float* sq_error, int threads);

/// Naive scalar reference: explicit residual vectors, distances ‖r − c‖² summed in double, single
/// thread. Same contract as rq_encode. Used as the oracle in tests.
void rq_encode_reference(const float* x, const float* codebooks, const RqEncodeShape& shape, int32_t* codes,
                         float* sq_error);

namespace detail {
/// Test hook: rq_encode with the scoring strategy forced — 0 = automatic (the cost model), 1 = explicit
/// residuals, 2 = codeword cross-product table (LUT). Same contract as rq_encode otherwise.
void rq_encode_with_strategy(const float* x, const float* codebooks, const RqEncodeShape& shape,
                             int32_t* codes, float* sq_error, int threads, int strategy);
}  // namespace detail

}  // namespace mmesid::kernels
