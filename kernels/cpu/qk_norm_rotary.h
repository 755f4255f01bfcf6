#pragma once

#include <cstdint>

#include "parallel.h"

namespace qwd {

// Serves QKNormRotary (separate Q and K) and QKNormRotaryPacked (one QKV tensor, see packed_rows).
struct QKNormRotaryProblem {
  int64_t batch = 0, seq = 0, num_heads = 0, kv_num_heads = 0, head_dim = 0, max_positions = 0;
  float epsilon = 1e-6f;
  // Floats from one token to the next, the same in input and output: num_heads*head_dim and
  // kv_num_heads*head_dim for separate Q and K, the whole packed row for QKV.
  int64_t q_stride = 0, k_stride = 0;
  const float* q = nullptr;  // [batch*seq, q_stride], num_heads*head_dim used per row
  const float* k = nullptr;  // [batch*seq, k_stride], kv_num_heads*head_dim used per row
  const float* v = nullptr;  // packed only: laid out as k, copied to v_out unchanged
  float* q_out = nullptr;    // laid out as q
  float* k_out = nullptr;    // laid out as k
  float* v_out = nullptr;    // laid out as v; null when v is
  const float* q_weight = nullptr;        // [head_dim]
  const float* k_weight = nullptr;        // [head_dim]
  const int64_t* position_ids = nullptr;  // [batch, seq]
  const float* cos = nullptr;             // [max_positions, head_dim/2]
  const float* sin = nullptr;             // [max_positions, head_dim/2]
};

// Separate q [batch*seq, num_heads*head_dim] and k [batch*seq, kv_num_heads*head_dim]; sizes set first.
void dense_rows(QKNormRotaryProblem& p, const float* q, const float* k, float* q_out, float* k_out);

// qkv, qkv_out: [batch*seq, (num_heads + 2*kv_num_heads)*head_dim], q heads then k heads then v heads
// (GroupQueryAttention's packed layout); sizes set first.
void packed_rows(QKNormRotaryProblem& p, const float* qkv, float* qkv_out);

// Heads one row holds: q and k heads, plus the v heads the packed op copies through.
inline int64_t qk_row_heads(const QKNormRotaryProblem& p) { return p.num_heads + p.kv_num_heads * (p.v ? 2 : 1); }

// 1 / RMS of one head [dim] with epsilon: the scale each head is normalized by, here and in
// GroupQueryAttention's q/k norms (attention.h).
float head_inv_rms(const float* x, int64_t dim, float eps);

// Throws std::out_of_range for a position outside the caches.
void qk_norm_rotary(const QKNormRotaryProblem& p, const Parallel& par = serial());

}  // namespace qwd
