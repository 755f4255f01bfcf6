// Float linear layers, and the row-range building blocks QuantSwiGLU and MoE share: each weight row is read
// (or dequantized) once and used for every token, so quantized weights cost one dequantization per call.
#pragma once

#include <cstdint>

#include "parallel.h"
#include "weights.h"

namespace qwd {

// y [tokens, w.rows] = x [tokens, w.cols] . w^T (+ bias [w.rows]) in float: each weight row comes from memory
// once for all tokens, row ranges spread over the pool (qwdeploy Linear).
void linear(const float* x, int64_t tokens, const Weights& w, const float* bias, float* y,
            const Parallel& par = serial());

// x: [tokens, w.cols]; y[t * ldy + r] = x[t] . w[r] for r in [row_begin, row_end).
void linear_rows(const float* x, int64_t tokens, const Weights& w, int64_t row_begin, int64_t row_end, float* y,
                 int64_t ldy);

// w: [2*inter, cols] (gate rows first); y[t * ldy + i] = silu(x[t] . w[i]) * (x[t] . w[inter + i])
// for i in [begin, end).
void swiglu_rows(const float* x, int64_t tokens, const Weights& w, int64_t begin, int64_t end, float* y,
                 int64_t ldy);

}  // namespace qwd
