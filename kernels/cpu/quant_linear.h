// y = x . w^T (+ bias) on block-quantized weights (ONNX Runtime's MatMulNBits layout, int4 or int8).
// accuracy_level 4 (MatMulNBits'): the activations are quantized to int8 per block once per call, and
// every weight byte is read once and meets the CPU's integer dot product (int8_dot.h). 0: float, each
// weight row dequantized once per call.
#pragma once

#include <cstdint>
#include <vector>

#include "int8_act.h"
#include "parallel.h"
#include "weights.h"

namespace qwd {

// x: [tokens, w.cols], bias: [w.rows] or null, y: [tokens, w.rows].
void quant_linear(const float* x, int64_t tokens, const Weights& w, const float* bias, float* y, int accuracy_level,
                  const Parallel& par = serial());

// w as int8_dot_rows takes it for these activations: the AMX prefill reads float scales, so float16 ones
// are widened into scratch once per call; decode and the AVX-512 blocked prefill widen them as they read.
Weights int8_weights(const Int8Activations& a, const Weights& w, std::vector<float>& scratch);

// Dot products of rows[0..count) of w (from int8_weights) with every token of a:
// out[t * ld + i] = x[t] . w[rows[i]].
void int8_dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out,
                   int64_t ld);

// Rows per task for `rows` rows of w (times `rows_per_output` rows read per output row) against a: at
// decode long runs of contiguous bytes, at prefill enough tasks to balance the threads.
int64_t int8_grain(const Int8Activations& a, const Weights& w, int64_t rows, int64_t rows_per_output = 1);

// Where int8 tasks may start: on a row tile (decode reads whole tiles), or for the blocked prefill on a
// whole panel of its rows, so no task computes a short panel's repeated rows.
int64_t int8_align(const Int8Activations& a);

// Whether activations for this many tokens should carry the blocked layout (Int8Activations), which
// this build's prefill reads: on AVX-512 VNNI from kBlockedMinTokens on.
inline constexpr int64_t kBlockedMinTokens = 16;
bool int8_blocked(int64_t tokens);

// Which integer dot product this build uses, e.g. "avx512-vnni".
const char* int8_isa();

}  // namespace qwd
