// Causal attention over a KV cache that grows by concatenation: ONNX Runtime's GroupQueryAttention
// contract (float32, rotate-half rotary or none, no local window, softcap or smooth softmax), computed
// flash-style: scores for a block of keys at a time with an online softmax, never the [seq, total] matrix.
// The cache may hold IEEE float16 instead (half its memory, and of the bytes a decode step reads): new keys
// (rotated) and values are rounded to it as they are written, and every product reads them widened back.
//
// Per batch row b, with total_b = seqlens_k[b] + 1 tokens after this call:
//   past_b = 0 when seq == total_len (a first prompt), else total_b - seq;
//   present[b, h] = past[b, h, :past_b], the seq new keys (rotated) / values, then zeros to present_len;
//   where present is past's own buffer (ONNX Runtime's past_present_share_buffer: present_len = past_len, a
//   cache allocated once for the whole generation), only the new keys and values are written;
//   new token s sits at position past_b + s (right-padding too), is rotated there and attends to keys
//   0 ..= past_b + s; with q_norm and k_norm, its q and k heads are RMS-normalized first.
#pragma once

#include <cstdint>

#include "parallel.h"

namespace qwd {

enum class CacheType { kFloat32, kFloat16 };

struct AttentionProblem {
  int64_t batch = 0, seq = 0, num_heads = 0, kv_num_heads = 0, head_dim = 0;
  int64_t past_len = 0;       // past_key's sequence axis
  int64_t total_len = 0;      // total_sequence_length
  int64_t present_len = 0;    // present_key's sequence axis: max(past_len, total_len)
  int64_t max_positions = 0;  // cos/sin rows; unused without rotary
  float scale = 0.0f;         // 0: 1/sqrt(head_dim)
  // A prompt's (kTokens new tokens or more) score and value products on bf16 operands with float32 sums,
  // where the build and CPU allow it (attention_bf16.h); the softmax stays float32, the cache as it is.
  bool bf16_products = false;
  // Floats from one token to the next in q and in k/v: the packed row (num_heads + 2*kv_num_heads)*head_dim
  // for a packed QKV tensor, else num_heads*head_dim and kv_num_heads*head_dim.
  int64_t q_stride = 0, kv_stride = 0;
  const float* q = nullptr;       // [batch*seq, q_stride], num_heads*head_dim used per token
  const float* k = nullptr;       // [batch*seq, kv_stride], kv_num_heads*head_dim used per token
  const float* v = nullptr;       // laid out as k
  CacheType cache = CacheType::kFloat32;  // the element type of past_* and present_*
  const void* past_k = nullptr;           // [batch, kv_num_heads, past_len, head_dim]
  const void* past_v = nullptr;
  const int32_t* seqlens_k = nullptr;  // [batch]
  const float* cos = nullptr;          // [max_positions, head_dim/2], or null: no rotary
  const float* sin = nullptr;
  // Qwen3's per-head RMSNorm of q and k before rotary (qk_norm_rotary.h's arithmetic), or null: none.
  const float* q_norm = nullptr;  // [head_dim]
  const float* k_norm = nullptr;
  float epsilon = 1e-6f;
  float* out = nullptr;        // [batch*seq, num_heads*head_dim]
  void* present_k = nullptr;   // [batch, kv_num_heads, present_len, head_dim]
  void* present_v = nullptr;
};

// Point q, k, v and their strides at one packed QKV tensor [batch*seq, (num_heads + 2*kv_num_heads)*head_dim]
// (q heads, then k, then v), or at separate tensors; head counts and head_dim set first.
void packed_qkv(AttentionProblem& p, const float* qkv);
void separate_qkv(AttentionProblem& p, const float* q, const float* k, const float* v);

// Throws std::invalid_argument for lengths the cache cannot hold, std::out_of_range for a position
// outside the cos/sin cache.
void attention(const AttentionProblem& p, const Parallel& par = serial());

}  // namespace qwd
