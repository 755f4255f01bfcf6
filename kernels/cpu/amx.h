// Prefill on AMX tiles (Intel Xeon from Sapphire Rapids on), chosen at run time: activations in their AMX
// layout (int8_act.h) meet the weight codes in TDPBUSD, 16 weight rows x 16 tokens per tile, one
// weight block of K at a time so that each block's two scales apply to its own int32 sums.
#pragma once

#include <cstdint>

#include "int8_act.h"
#include "weights.h"

namespace qwd::amx {

// Whether this process computes on AMX tiles: the CPU has AMX-INT8 and Linux granted the tile state (asked
// once per process). QWDEPLOY_AMX=0 declines them, to compare with the AVX-512 VNNI path.
bool usable();

// The blocked path's contract (quant_linear.cc): out[t * count + i] = x[t] . w[rows[i]] with the implicit
// zero point, for activations `a` in the AMX layout (int8_act.h).
void dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out);

}  // namespace qwd::amx
