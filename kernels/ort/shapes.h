// Shape checks for every op, shared by the CPU and CUDA adapters: input shapes in, the problem's
// sizes out, std::invalid_argument with the op and input named when they do not fit the schema.
#pragma once

#include <cstdint>
#include <vector>

namespace qwd::shapes {

using Shape = std::vector<int64_t>;

struct SwiGLU {
  int64_t rows, inter;
  Shape out;
};
SwiGLU swiglu(const Shape& gate_up);

struct QuantMatMul {
  int64_t tokens, blocks;
  Shape out;  // X's shape with N (QuantLinear) or N/2 (QuantSwiGLU) last
};
// X [..., K] times N x K block-quantized weights: B [N, blocks, block_size*bits/8] (N rounded up to whole
// tiles with row_tile 4, cpu/weights.h); scales and zero points by element count, in whatever shape
// MatMulNBits had them; bias [N] when given.
QuantMatMul quant_linear(const Shape& x, const Shape& b, const Shape& scales, const Shape* zero_points,
                         const Shape* bias, int64_t K, int64_t N, int64_t bits, int64_t block_size,
                         int64_t row_tile);
QuantMatMul quant_swiglu(const Shape& x, const Shape& b, const Shape& scales, const Shape* zero_points, int64_t K,
                         int64_t N, int64_t bits, int64_t block_size, int64_t row_tile);

// QuantLinear's and QuantSwiGLU's norm in front (cpu/rms_norm.h): skip X's shape, norm_weight [K]; skip and
// the sum output only with norm_weight, the sum only with skip.
void prenorm(const char* op, const Shape& x, const Shape* skip, const Shape* norm_weight, bool sum);

struct Linear {
  int64_t tokens;
  Shape out;  // X's shape with N last
};
// X [..., K] times W [N, K] (float), bias [N] when given.
Linear linear(const Shape& x, const Shape& w, const Shape* bias);

struct QuantGather {
  int64_t count;  // indices
  Shape out;      // indices' shape, then K
};
// A table of N x K block-quantized rows, checked as QuantLinear's B, scales and zero points.
QuantGather quant_gather(const Shape& data, const Shape& indices, const Shape& scales, const Shape* zero_points,
                         int64_t K, int64_t N, int64_t bits, int64_t block_size, int64_t row_tile);

struct MoE {
  int64_t tokens, hidden, experts, inter, shared_inter;  // shared_inter = 0 without a shared expert
};
// gate_up/down are [E, 2I, H] / [E, H, I] (bits == 0) or the quantized [E, rows, blocks, bytes] layout.
MoE moe(const Shape& x, const Shape& logits, const Shape& gate_up, const Shape& down, const Shape* shared_gate_up,
        const Shape* shared_down, const Shape* shared_gate, int64_t top_k, int64_t bits, int64_t block_size);

struct QKNormRotary {
  int64_t batch, seq, head_dim, max_positions;
};
QKNormRotary qk_norm_rotary(const Shape& q, const Shape& k, const Shape& q_weight, const Shape& k_weight,
                            const Shape& position_ids, const Shape& cos, const Shape& sin, int64_t num_heads,
                            int64_t kv_num_heads);
// qkv: [batch, seq, (num_heads + 2*kv_num_heads)*head_dim], q heads then k heads then v heads.
QKNormRotary qk_norm_rotary_packed(const Shape& qkv, const Shape& q_weight, const Shape& k_weight,
                                   const Shape& position_ids, const Shape& cos, const Shape& sin, int64_t num_heads,
                                   int64_t kv_num_heads);

struct Attention {
  int64_t batch, seq, head_dim, past, total, present_len;  // present_len = max(past, total): a shared buffer
  int64_t max_positions;                                   // 0 without cos/sin
  bool packed;
  Shape out, present;
};
// query [batch, seq, num_heads*head_dim] with key and value [batch, seq, kv_num_heads*head_dim], or packed
// [batch, seq, (num_heads + 2*kv_num_heads)*head_dim] with neither; total_sequence_length's value given.
Attention attention(const Shape& query, const Shape* key, const Shape* value, const Shape& past_key,
                    const Shape& past_value, const Shape& seqlens_k, const Shape& total_sequence_length,
                    int64_t total, const Shape* cos, const Shape* sin, int64_t num_heads, int64_t kv_num_heads);

}  // namespace qwd::shapes
