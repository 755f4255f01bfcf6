// Prefill on AMX tiles (Intel Xeon from Sapphire Rapids on), chosen at run time. The tiles multiply bf16
// pairs into float32 (TDPBF16PS), so each call dequantizes the weight rows to bf16, 32 rows by a K slice
// at a time ((q - zero) * scale, rounded to nearest even), and keeps the activations as bf16 instead of
// int8 codes (int8_act.h): the sums stay in the tiles across all of K, with no per-block scaling between
// tile products. Each product is within 2^-8 of the float one, finer than accuracy_level 4's int8
// activations; kernels/reference.py models it (`prefill_tiles`).
#pragma once

#include <cstdint>

#include "int8_act.h"
#include "weights.h"

namespace qwd::amx {

// Whether this process computes on AMX tiles: the CPU has AMX-BF16 (and AVX512-BF16) and Linux granted the tile state (asked
// once per process). QWDEPLOY_AMX=0 declines them, to compare with the AVX-512 VNNI path.
bool usable();

// The tiles' own int4 position order: int8_act.h's, in groups of 32 columns whatever the decode step.
inline constexpr int64_t kAmxGroup = 32;

// Weight rows per pass of dot_rows (two row tiles): a call whose count is not a multiple computes the
// padding of its last pass too, so callers cut their tasks in multiples of it.
inline constexpr int64_t kPassRows = 32;

// Token t of x ([cols] floats) into the B-tile layout of Int8Activations::amx_x: `pairs` pairs of
// positions (int8_act.h's order for `bits`-bit weights, groups of kAmxGroup), zeros past cols.
void pack_token(const float* xt, int64_t cols, int bits, int64_t t, int64_t pairs, uint32_t* amx_x);

// The blocked path's contract (quant_linear.cc): out[t * ld + i] = x[t] . w[rows[i]] with w's own zero
// points, for activations `a` in the AMX layout.
void dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out,
              int64_t ld);

}  // namespace qwd::amx
