// Activations quantized to int8 once per call, per weight block (scale = max|x| / 127), and laid out in
// the order the packed weight bytes unpack, so every ISA's integer dot product (vpdpbusd, maddubs, sdot)
// meets them in place: int4 columns come in groups of 32 stored as 16 bytes, low nibbles (even columns)
// first, so a group's positions are its 16 even columns, then its 16 odd ones; int8 columns keep their
// order. A "lane" is 4 consecutive positions (one int32 lane of a 4-byte dot product).
#pragma once

#include <cstdint>
#include <vector>

#include "parallel.h"
#include "weights.h"

namespace qwd {

inline constexpr int64_t kStepCols = 64;  // the widest ISA step; rows of positions are padded to it
inline constexpr int64_t kLaneTokens = 12;  // tokens per tile of the blocked layout

struct Int8Activations {
  int64_t tokens = 0;
  int64_t positions = 0;          // per token: blocks*block_size rounded up to kStepCols
  int zero = 0;                   // the implicit zero point 2^(bits-1)
  std::vector<int8_t> q;          // [tokens, positions]; 0 past the last column
  std::vector<int32_t> init;      // [tokens, positions/4]: -zero * (sum of the lane's 4 q)
  std::vector<float> lane_scale;  // [tokens, positions/4]: scale of the block the lane's columns are in
  std::vector<float> block_sum;   // [tokens, blocks]: scale * sum of q over the block (zero-point correction)

  // With `blocked` (prefill on AVX-512 VNNI, rows in the vector lanes) the codes are instead interleaved
  // kLaneTokens tokens at a time, 4 columns (one int32 lane's bytes) per token, so a kernel broadcasts
  // every token's 4 codes of a step from one pointer; tokens are padded to whole tiles with zeros, and
  // each block's zero-point term and scale come interleaved the same way. q, init and lane_scale are then
  // empty.
  int64_t blocked_steps = 0;          // per token: blocks * block_size / 4
  std::vector<int8_t> blocked_q;      // [token tiles, blocked_steps, kLaneTokens, 4]
  std::vector<int32_t> blocked_init;  // [token tiles, blocks, kLaneTokens]: -zero * sum of the block's q
  std::vector<float> blocked_scale;   // [token tiles, blocks, kLaneTokens]: the block's scale

  // Instead, where the CPU has AMX tiles (amx.h), the activations themselves as bf16 pairs the way
  // TDPBF16PS's B tiles take them, 16 tokens per tile: [tiles, amx_pairs, 16 tokens] words, each two
  // bf16 values of consecutive positions (the lower one in the low half); zeros past the last column and
  // token. Everything else is then empty.
  int64_t amx_pairs = 0;  // per token: blocks*block_size rounded up to 32 positions, halved
  std::vector<uint32_t> amx_x;

  // Tokens are quantized in parallel on `par`.
  Int8Activations(const float* x, int64_t tokens, const Weights& w, bool blocked = false,
                  const Parallel& par = serial());

  const int8_t* q_of(int64_t t) const { return q.data() + t * positions; }
  const int32_t* init_of(int64_t t) const { return init.data() + t * positions / 4; }
  const float* scale_of(int64_t t) const { return lane_scale.data() + t * positions / 4; }
};

// Column of position p (the layout above).
inline int64_t column_of(int64_t p, int bits) {
  if (bits == 8) return p;
  const int64_t group = p / 32, i = p % 32;
  return group * 32 + (i < 16 ? 2 * i : 2 * (i - 16) + 1);
}

}  // namespace qwd
