// The residual add and RMSNorm that QuantLinear and QuantSwiGLU take in front of their product
// (kernels/schemas.py: skip, norm_weight, epsilon, sum), so a decoder layer's norm needs no op of its own.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel.h"

namespace qwd {

struct RmsNorm {
  const float* weight = nullptr;  // [cols]; null: no norm
  float epsilon = 1e-5f;
  const float* skip = nullptr;  // [tokens, cols] or null
  float* sum = nullptr;         // [tokens, cols] or null: x + skip
};

// Per token: s = x + skip (x without skip), y = s * (1 / sqrt(mean(s^2) + epsilon)) * weight. The squares
// are exact in float64 and summed there in a fixed order, so every ISA rounds the mean to the same float32,
// and numpy's own order of the same sum almost always does too.
void rms_norm(const float* x, int64_t tokens, int64_t cols, const RmsNorm& norm, float* y,
              const Parallel& par = serial());

// What a product multiplies: x itself without a norm (norm.weight null), else rms_norm(x) in `scratch`.
const float* normed_input(const float* x, int64_t tokens, int64_t cols, const RmsNorm& norm,
                          std::vector<float>& scratch, const Parallel& par = serial());

}  // namespace qwd
