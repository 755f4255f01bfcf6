#pragma once

#include <cstdint>

#include "parallel.h"

namespace qwd {

struct QKNormRotaryProblem {
  int64_t batch = 0, seq = 0, num_heads = 0, kv_num_heads = 0, head_dim = 0, max_positions = 0;
  float epsilon = 1e-6f;
  const float* q = nullptr;             // [batch, seq, num_heads*head_dim]
  const float* k = nullptr;             // [batch, seq, kv_num_heads*head_dim]
  const float* q_weight = nullptr;      // [head_dim]
  const float* k_weight = nullptr;      // [head_dim]
  const int64_t* position_ids = nullptr;  // [batch, seq]
  const float* cos = nullptr;           // [max_positions, head_dim/2]
  const float* sin = nullptr;           // [max_positions, head_dim/2]
};

// q_out/k_out: same shapes as q/k. Throws std::out_of_range for a position outside the caches.
void qk_norm_rotary(const QKNormRotaryProblem& p, float* q_out, float* k_out, const Parallel& par = serial());

}  // namespace qwd
