#pragma once

#include <cstdint>

#include "parallel.h"
#include "weights.h"

namespace qwd {

// x: [tokens, K], w: [2*I, K] block-quantized (gate rows first), y: [tokens, I].
void quant_swiglu(const float* x, int64_t tokens, const Weights& w, float* y, const Parallel& par = serial());

}  // namespace qwd
