#pragma once

#include <cstdint>

#include "parallel.h"
#include "weights.h"

namespace qwd {

// x: [tokens, K], w: [2*I, K] block-quantized (gate rows first), y: [tokens, I]. accuracy_level as
// quant_linear's: 4 runs the gate/up products on int8 activations, 0 in float.
void quant_swiglu(const float* x, int64_t tokens, const Weights& w, float* y, int accuracy_level,
                  const Parallel& par = serial());

}  // namespace qwd
