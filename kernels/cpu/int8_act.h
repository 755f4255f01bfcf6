// Activations quantized to int8 once per call, per weight block (scale = max|x| / 127; kScaleExp: the blocked
// layout's), and laid out in the order the packed weight bytes unpack, so every ISA's integer dot product
// (vpdpbusd, maddubs, sdot) meets them in place: int4 columns come in groups of kCols4 (one decode step) stored
// as kCols4 / 2 bytes, low nibbles (even columns) first, so a group's positions are its even columns, then its
// odd ones; int8 columns keep their order. A step of cols_of(bits) positions gives kLanes int32 lanes; lane l
// sums the 4 positions from 4l on, and with 128-column int4 steps also the 4 from 64 + 4l on.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel.h"
#include "simd.h"
#include "weights.h"

#if defined(QWD_SIMD_AVX512) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define QWD_INT8_AVX512 1
#elif defined(QWD_SIMD_AVX512) || defined(QWD_SIMD_AVX2)
#define QWD_INT8_AVX2 1
#elif defined(QWD_SIMD_NEON)
#define QWD_INT8_NEON 1
#else
#define QWD_INT8_SCALAR 1
#endif

namespace qwd {

// The decode step of this build's ISA (int8_dot.h): columns of int4 and of int8 weights, and its lanes.
#if defined(QWD_INT8_AVX512)
inline constexpr int64_t kCols4 = 128, kCols8 = 64;
inline constexpr int kLanes = 16;
#else
inline constexpr int64_t kCols4 = 32, kCols8 = 32;
inline constexpr int kLanes = 8;
#endif
inline constexpr int64_t cols_of(int bits) { return bits == 4 ? kCols4 : kCols8; }

inline constexpr int64_t kStepCols = kCols4;  // the widest step; rows of positions are padded to it
inline constexpr int64_t kLaneTokens = 12;  // tokens per tile of the blocked layout

// In the blocked layout for int4 weights a block's scale is max|x| / 127 rounded up to a power of two 2^e, e
// within +-kScaleExp (a block of zeros: scale 0), as MX formats share one exponent per 32 values (OCP
// Microscaling v1.0): codes keep 7 to 8 bits of the block's range instead of 8, and the prefill kernel
// multiplies a weight scale by 2^e with an integer add to its exponent bits (quant_linear.cc, where a multiply
// per block and token cost 8%). Next to int4 weights' rounding that costs nothing measurable (mean KL of a
// Qwen3 int4 build 0.500 -> 0.498); next to int8 weights' it shows (a trained model's int8 build over its
// bound), so everything else keeps max|x| / 127, the codes ONNX Runtime's MatMulNBits computes at
// accuracy_level 4.
inline constexpr int kScaleExp = 64;
inline constexpr int32_t kExpOne = 127 << 23;  // 1.0f's bits: a float 2^e's bits are kExpOne + (e << 23)

struct Int8Activations {
  int64_t tokens = 0;
  int64_t positions = 0;          // per token: blocks*block_size rounded up to kStepCols
  int64_t lanes = 0;              // per token: positions / cols_of(bits) steps of kLanes
  int zero = 0;                   // the implicit zero point 2^(bits-1)
  std::vector<int8_t> q;          // [tokens, positions]; 0 past the last column
  std::vector<int32_t> init;      // [tokens, lanes]: -zero * (sum of the lane's q)
  std::vector<float> lane_scale;  // [tokens, lanes]: scale of the block the lane's columns are in
  std::vector<float> block_sum;   // [tokens, blocks]: scale * sum of q over the block (zero-point correction)

  // With `blocked` (prefill on AVX-512 VNNI, rows in the vector lanes; other builds ignore it: see
  // int8_blocked) the codes are instead interleaved
  // kLaneTokens tokens at a time, 4 positions (one int32 lane's bytes) per token, so a kernel broadcasts
  // every token's 4 codes of a step from one pointer; tokens are padded to whole tiles with zeros, and
  // each block's zero-point term and scale come interleaved the same way. q, init and lane_scale are then
  // empty. Int8 weights' positions are their columns; int4 weights' go 8 columns at a time, the even ones
  // then the odd ones, the order of a packed dword's low nibbles, then its high ones.
  int64_t blocked_steps = 0;          // per token: blocks * block_size / 4
  std::vector<int8_t> blocked_q;      // [token tiles, blocked_steps, kLaneTokens, 4]
  std::vector<int32_t> blocked_init;  // [token tiles, blocks, kLaneTokens]: -zero * sum of the block's q
  std::vector<int32_t> blocked_exp;   // [token tiles, blocks, kLaneTokens]: the block's scale's bits - kExpOne
  bool blocked_pow2 = false;          // every scale 0 or 2^e (blocked_exp then e << 23), none infinite or NaN

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
  const int32_t* init_of(int64_t t) const { return init.data() + t * lanes; }
  const float* scale_of(int64_t t) const { return lane_scale.data() + t * lanes; }
};

// Column of position p (the layout above; `group`: int4 columns per group).
inline int64_t column_of(int64_t p, int bits, int64_t group = kCols4) {
  if (bits == 8) return p;
  const int64_t first = p / group * group, i = p % group, half = group / 2;
  return first + (i < half ? 2 * i : 2 * (i - half) + 1);
}

// The lane position p adds into, counted from the token's first (the layout above).
inline int64_t lane_of(int64_t p, int bits) {
  const int64_t step = cols_of(bits), span = 4 * kLanes;  // positions a step takes, and one pass of its lanes
  return p / step * kLanes + p % span / 4;
}

}  // namespace qwd
