#pragma once

#include <cstdint>

#include "parallel.h"

namespace qwd {

// gate_up: [rows, 2*inter] (gate first), y: [rows, inter]; y = silu(gate) * up.
void swiglu(const float* gate_up, float* y, int64_t rows, int64_t inter, const Parallel& par = serial());

// One row: y[i] = silu(gate[i]) * up[i] for i < n.
void swiglu_row(const float* gate, const float* up, float* y, int64_t n);

}  // namespace qwd
