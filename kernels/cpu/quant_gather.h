// Rows of a block-quantized table by index (qwdeploy QuantGather): the embedding lookup of a table that a
// tied LM head's QuantLinear reads too, in its layout (row tiles, float16 scales).
#pragma once

#include <cstdint>

#include "parallel.h"
#include "weights.h"

namespace qwd {

// y [count, table.cols] = rows indices[0..count) of table, dequantized; an index in [-rows, 0) counts from
// the end. Throws std::out_of_range naming the first index outside [-rows, rows).
void quant_gather(const int64_t* indices, int64_t count, const Weights& table, float* y,
                  const Parallel& par = serial());

}  // namespace qwd
