#include "shapes.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../cpu/weights.h"

namespace qwd::shapes {

namespace {

std::string str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string("qwdeploy.") + op + ": " + what);
}

void expect(const char* op, const char* name, const Shape& got, const Shape& want) {
  require(got == want, op, std::string(name) + " has shape " + str(got) + ", expected " + str(want));
}

int64_t leading(const Shape& s) {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i) n *= s[i];
  return n;
}

void check_quant(const char* op, int64_t bits, int64_t block_size) {
  require(bits == 4 || bits == 8, op, "bits must be 4 or 8, got " + std::to_string(bits));
  require(block_size >= 16 && (block_size & (block_size - 1)) == 0, op,
          "block_size must be a power of two >= 16, got " + std::to_string(block_size));
}

int64_t elements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// B (or a table) of N x K block-quantized weights, its scales and zero points; returns the blocks per row.
int64_t quant_weights(const char* op, const char* name, const Shape& b, const Shape& scales,
                      const Shape* zero_points, int64_t K, int64_t N, int64_t bits, int64_t block_size,
                      int64_t row_tile) {
  check_quant(op, bits, block_size);
  const int64_t blocks = (K + block_size - 1) / block_size, block_bytes = block_size * bits / 8;
  require(row_tile == 1 || row_tile == Weights::kRowTile, op, "row_tile must be 1 or " +
                                                                  std::to_string(Weights::kRowTile) + ", got " +
                                                                  std::to_string(row_tile));
  if (row_tile > 1)
    require(blocks * block_bytes % Weights::kTileChunk == 0 && Weights::kTileChunk % block_bytes == 0, op,
            "row tiles need rows of whole 64-byte chunks and blocks of at most 64 bytes, got " +
                std::to_string(blocks) + " blocks of " + std::to_string(block_bytes) + " bytes");
  // Row tiles pad the rows to whole tiles.
  expect(op, name, b, {(N + row_tile - 1) / row_tile * row_tile, blocks, block_bytes});
  require(elements(scales) == N * blocks, op, "scales has shape " + str(scales) + ", expected " +
                                                  std::to_string(N * blocks) + " elements");
  if (zero_points) {
    const int64_t want = N * ((blocks * bits + 7) / 8);
    require(elements(*zero_points) == want, op, "zero_points has shape " + str(*zero_points) + ", expected " +
                                                    std::to_string(want) + " elements");
  }
  return blocks;
}

QuantMatMul quant_matmul(const char* op, const Shape& x, const Shape& b, const Shape& scales,
                         const Shape* zero_points, const Shape* bias, int64_t K, int64_t N, int64_t bits,
                         int64_t block_size, int64_t row_tile) {
  require(!x.empty() && x.back() == K, op, "X has shape " + str(x) + ", its last dimension must be K=" +
                                               std::to_string(K));
  const int64_t blocks = quant_weights(op, "B", b, scales, zero_points, K, N, bits, block_size, row_tile);
  if (bias) expect(op, "bias", *bias, {N});
  Shape out = x;
  out.back() = N;
  return {leading(x), blocks, out};
}

}  // namespace

void prenorm(const char* op, const Shape& x, const Shape* skip, const Shape* norm_weight, bool sum) {
  require(norm_weight || !skip, op, "skip is given without norm_weight");
  require(skip || !sum, op, "the sum output needs skip");
  if (norm_weight) expect(op, "norm_weight", *norm_weight, {x.back()});
  if (skip) expect(op, "skip", *skip, x);
}

Linear linear(const Shape& x, const Shape& w, const Shape* bias) {
  const char* op = "Linear";
  require(w.size() == 2, op, "W must be [N, K], got " + str(w));
  require(!x.empty() && x.back() == w[1], op, "X has shape " + str(x) + ", its last dimension must be W's K=" +
                                                  std::to_string(w[1]));
  if (bias) expect(op, "bias", *bias, {w[0]});
  Shape out = x;
  out.back() = w[0];
  return {leading(x), out};
}

QuantGather quant_gather(const Shape& data, const Shape& indices, const Shape& scales, const Shape* zero_points,
                         int64_t K, int64_t N, int64_t bits, int64_t block_size, int64_t row_tile) {
  quant_weights("QuantGather", "data", data, scales, zero_points, K, N, bits, block_size, row_tile);
  Shape out = indices;
  out.push_back(K);
  return {elements(indices), out};
}

SwiGLU swiglu(const Shape& gate_up) {
  require(!gate_up.empty() && gate_up.back() % 2 == 0, "SwiGLU",
          "gate_up's last dimension must be even, got shape " + str(gate_up));
  Shape out = gate_up;
  out.back() /= 2;
  return {leading(gate_up), gate_up.back() / 2, out};
}

QuantMatMul quant_linear(const Shape& x, const Shape& b, const Shape& scales, const Shape* zero_points,
                         const Shape* bias, int64_t K, int64_t N, int64_t bits, int64_t block_size,
                         int64_t row_tile) {
  return quant_matmul("QuantLinear", x, b, scales, zero_points, bias, K, N, bits, block_size, row_tile);
}

QuantMatMul quant_swiglu(const Shape& x, const Shape& b, const Shape& scales, const Shape* zero_points, int64_t K,
                         int64_t N, int64_t bits, int64_t block_size, int64_t row_tile) {
  require(N % 2 == 0, "QuantSwiGLU", "N (= 2*I) must be even, got " + std::to_string(N));
  // Gate rows and up rows each start a tile: the kernels read gate row i with up row I + i.
  require(row_tile == 1 || (N / 2) % row_tile == 0, "QuantSwiGLU",
          "row tiles need I = N/2 to be a multiple of the tile, got N=" + std::to_string(N));
  QuantMatMul m =
      quant_matmul("QuantSwiGLU", x, b, scales, zero_points, nullptr, K, N, bits, block_size, row_tile);
  m.out.back() = N / 2;
  return m;
}

MoE moe(const Shape& x, const Shape& logits, const Shape& gate_up, const Shape& down, const Shape* shared_gate_up,
        const Shape* shared_down, const Shape* shared_gate, int64_t top_k, int64_t bits, int64_t block_size) {
  const char* op = bits ? "QMoE" : "MoE";
  require(x.size() == 2, op, "X must be [tokens, H], got " + str(x));
  const int64_t T = x[0], H = x[1];
  require(logits.size() == 2 && logits[0] == T, op, "router_logits must be [tokens, E], got " + str(logits));
  const int64_t E = logits[1];
  require(top_k >= 1 && top_k <= E, op, "top_k must be in [1, E=" + std::to_string(E) + "], got " +
                                           std::to_string(top_k));
  require(gate_up.size() >= 3 && gate_up[0] == E, op, "gate_up_weights has shape " + str(gate_up));
  const int64_t I = gate_up[1] / 2;
  if (bits) {
    check_quant(op, bits, block_size);
    const int64_t hb = (H + block_size - 1) / block_size, ib = (I + block_size - 1) / block_size;
    expect(op, "gate_up_weights", gate_up, {E, 2 * I, hb, block_size * bits / 8});
    expect(op, "down_weights", down, {E, H, ib, block_size * bits / 8});
  } else {
    expect(op, "gate_up_weights", gate_up, {E, 2 * I, H});
    expect(op, "down_weights", down, {E, H, I});
  }
  int64_t S = 0;
  require((shared_gate_up == nullptr) == (shared_down == nullptr), op,
          "shared_gate_up and shared_down must be given together");
  if (shared_gate_up) {
    require(shared_gate_up->size() == 2 && (*shared_gate_up)[0] % 2 == 0, op,
            "shared_gate_up must be [2*S, H], got " + str(*shared_gate_up));
    S = (*shared_gate_up)[0] / 2;
    expect(op, "shared_gate_up", *shared_gate_up, {2 * S, H});
    expect(op, "shared_down", *shared_down, {H, S});
  }
  if (shared_gate) {
    require(S > 0, op, "shared_gate needs shared_gate_up and shared_down");
    expect(op, "shared_gate", *shared_gate, {1, H});
  }
  return {T, H, E, I, S};
}

namespace {

// What both q/k-norm ops check beyond their activations: even head_dim, weights, positions and caches.
QKNormRotary norm_rotary_tables(const char* op, int64_t B, int64_t S, int64_t D, const Shape& q_weight,
                                const Shape& k_weight, const Shape& position_ids, const Shape& cos, const Shape& sin) {
  require(D % 2 == 0, op, "head_dim must be even, got " + std::to_string(D));
  expect(op, "q_norm_weight", q_weight, {D});
  expect(op, "k_norm_weight", k_weight, {D});
  expect(op, "position_ids", position_ids, {B, S});
  require(cos.size() == 2 && cos[1] == D / 2, op, "cos_cache must be [max_positions, head_dim/2], got " + str(cos));
  expect(op, "sin_cache", sin, cos);
  return {B, S, D, cos[0]};
}

}  // namespace

QKNormRotary qk_norm_rotary(const Shape& q, const Shape& k, const Shape& q_weight, const Shape& k_weight,
                            const Shape& position_ids, const Shape& cos, const Shape& sin, int64_t num_heads,
                            int64_t kv_num_heads) {
  const char* op = "QKNormRotary";
  require(num_heads > 0 && kv_num_heads > 0, op, "num_heads and kv_num_heads must be positive");
  require(q.size() == 3 && q[2] % num_heads == 0, op,
          "Q must be [batch, seq, num_heads*head_dim], got " + str(q));
  const int64_t B = q[0], S = q[1], D = q[2] / num_heads;
  expect(op, "K", k, {B, S, kv_num_heads * D});
  return norm_rotary_tables(op, B, S, D, q_weight, k_weight, position_ids, cos, sin);
}

QKNormRotary qk_norm_rotary_packed(const Shape& qkv, const Shape& q_weight, const Shape& k_weight,
                                   const Shape& position_ids, const Shape& cos, const Shape& sin, int64_t num_heads,
                                   int64_t kv_num_heads) {
  const char* op = "QKNormRotaryPacked";
  require(num_heads > 0 && kv_num_heads > 0, op, "num_heads and kv_num_heads must be positive");
  const int64_t heads = num_heads + 2 * kv_num_heads;
  require(qkv.size() == 3 && qkv[2] % heads == 0, op,
          "QKV must be [batch, seq, (num_heads + 2*kv_num_heads)*head_dim], got " + str(qkv));
  return norm_rotary_tables(op, qkv[0], qkv[1], qkv[2] / heads, q_weight, k_weight, position_ids, cos, sin);
}

Attention attention(const Shape& query, const Shape* key, const Shape* value, const Shape& past_key,
                    const Shape& past_value, const Shape& seqlens_k, const Shape& total_sequence_length,
                    int64_t total, const Shape* cos, const Shape* sin, int64_t num_heads, int64_t kv_num_heads) {
  const char* op = "GroupQueryAttention";
  require(num_heads > 0 && kv_num_heads > 0 && num_heads % kv_num_heads == 0, op,
          "num_heads must be a positive multiple of kv_num_heads");
  require((key == nullptr) == (value == nullptr), op, "key and value must be given together");
  const bool packed = key == nullptr;
  const int64_t heads = packed ? num_heads + 2 * kv_num_heads : num_heads;
  require(query.size() == 3 && query[2] % heads == 0, op,
          std::string("query must be [batch, seq, ") + (packed ? "(num_heads + 2*kv_num_heads)" : "num_heads") +
              "*head_dim], got " + str(query));
  const int64_t B = query[0], S = query[1], D = query[2] / heads;
  if (!packed) {
    expect(op, "key", *key, {B, S, kv_num_heads * D});
    expect(op, "value", *value, {B, S, kv_num_heads * D});
  }
  require(past_key.size() == 4 && past_key[0] == B && past_key[1] == kv_num_heads && past_key[3] == D, op,
          "past_key must be [batch, kv_num_heads, past, head_dim], got " + str(past_key));
  expect(op, "past_value", past_value, past_key);
  expect(op, "seqlens_k", seqlens_k, {B});
  require(elements(total_sequence_length) == 1, op, "total_sequence_length must hold one value");
  require(total >= S, op, "total_sequence_length " + std::to_string(total) + " is less than the " +
                              std::to_string(S) + " new tokens");
  require((cos == nullptr) == (sin == nullptr), op, "cos_cache and sin_cache must be given together");
  int64_t max_positions = 0;
  if (cos) {
    require(D % 2 == 0, op, "head_dim must be even for rotary, got " + std::to_string(D));
    require(cos->size() == 2 && (*cos)[1] == D / 2, op,
            "cos_cache must be [max_positions, head_dim/2], got " + str(*cos));
    expect(op, "sin_cache", *sin, *cos);
    max_positions = (*cos)[0];
  }
  const int64_t present = std::max(past_key[2], total);
  return {B, S, D, past_key[2], total, present, max_positions, packed, {B, S, num_heads * D},
          {B, kv_num_heads, present, D}};
}

}  // namespace qwd::shapes
