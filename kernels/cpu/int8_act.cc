#include "int8_act.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "amx.h"
#include "simd.h"

namespace qwd {

namespace {

inline simd::Vec magnitude(simd::Vec v) { return simd::max(v, simd::sub(simd::set1(0.0f), v)); }

// round(x * inv) within +-127, in the float32 operations of the numpy reference (kernels/reference.py), so the
// integers agree.
inline simd::Vec code(simd::Vec x, simd::Vec inv) {
  return simd::min(simd::set1(127.0f), simd::max(simd::set1(-127.0f), simd::round(simd::mul(x, inv))));
}

float max_abs(const float* x, int64_t n) {
  using namespace simd;
  int64_t i = 0;
  float amax = 0.0f;
  if constexpr (kWidth > 1) {
    Vec m = set1(0.0f);
    for (; i + kWidth <= n; i += kWidth) m = max(m, magnitude(load(x + i)));
    amax = hmax(m);
  }
  for (; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

constexpr int32_t kLeastScale = kExpOne - (kScaleExp << 23), kMostScale = kExpOne + (kScaleExp << 23);  // bits

// max|x| / 127, with pow2 rounded up to a power of two within 2^+-kScaleExp (int8_act.h): adding a mantissa's
// worth to the bits carries into the exponent unless the mantissa is already zero. Zeros, infinities and NaNs
// keep max|x| / 127, so the latter reach the outputs.
float block_scale(float amax, bool pow2) {
  const float s = amax / 127.0f;
  if (!pow2 || amax == 0.0f || !std::isfinite(amax)) return s;
  int32_t bits;
  std::memcpy(&bits, &s, 4);
  bits = std::clamp((bits + 0x7FFFFF) & 0x7F800000, kLeastScale, kMostScale);
  float scale;
  std::memcpy(&scale, &bits, 4);
  return scale;
}

// codes[i] = code(x[i], inv) for i < n; returns their sum.
int32_t to_codes(const float* __restrict x, int64_t n, float inv, int8_t* __restrict codes) {
  using namespace simd;
  int64_t i = 0;
  float sum = 0.0f;  // of integers, |sum| < 2^24: exact in float
  if constexpr (kWidth > 1) {
    Vec total = set1(0.0f);
    for (; i + kWidth <= n; i += kWidth) {
      const Vec r = code(load(x + i), set1(inv));
      store_i8(codes + i, r);
      total = add(total, r);
    }
    sum = hsum(total);
  }
  for (; i < n; ++i) {
    const float r = std::min(127.0f, std::max(-127.0f, std::nearbyint(x[i] * inv)));
    codes[i] = static_cast<int8_t>(r);
    sum += r;
  }
  return static_cast<int32_t>(sum);
}

#if defined(QWD_SIMD_AVX512)
// quantize_token for 16 whole blocks of bs (a multiple of 16) columns, with the same arithmetic: their maxima
// and their codes' sums each reduced 16 blocks at once instead of in two horizontal reductions per block.
void quantize_16_blocks(const float* x, int64_t bs, bool pow2, int8_t* codes, float* scale, int32_t* sum,
                        float* block_sum) {
  using namespace simd;
  Vec part[16];  // block i's lanes: max |x|, then sum of codes
  for (int i = 0; i < 16; ++i) {
    part[i] = set1(0.0f);
    for (int64_t c = i * bs; c < (i + 1) * bs; c += kWidth) part[i] = max(part[i], magnitude(load(x + c)));
  }
  const Vec amax = reduce16(part, max);
  // block_scale's, 16 at once; 1 / scale is exact for a power of two, and 127 / amax the reference's otherwise
  const Vec plain = div(amax, set1(127.0f));
  const __m512i up = _mm512_and_si512(_mm512_add_epi32(_mm512_castps_si512(plain), _mm512_set1_epi32(0x7FFFFF)),
                                      _mm512_set1_epi32(0x7F800000));
  const __m512i bits = _mm512_max_epi32(_mm512_set1_epi32(kLeastScale), _mm512_min_epi32(up, _mm512_set1_epi32(kMostScale)));
  const __mmask16 finite = _mm512_cmp_ps_mask(amax, set1(std::numeric_limits<float>::infinity()), _CMP_LT_OQ);
  const __mmask16 live = _mm512_cmp_ps_mask(amax, set1(0.0f), _CMP_GT_OQ);
  const Vec s = pow2 ? _mm512_mask_blend_ps(finite & live, plain, _mm512_castsi512_ps(bits)) : plain;
  store(scale, s);
  alignas(64) float inv[16];  // 0 for an all-zero block
  store(inv, pow2 ? _mm512_maskz_div_ps(live, set1(1.0f), s) : _mm512_maskz_div_ps(live, set1(127.0f), amax));
  for (int i = 0; i < 16; ++i) {
    part[i] = set1(0.0f);
    for (int64_t c = i * bs; c < (i + 1) * bs; c += kWidth) {
      const Vec r = code(load(x + c), set1(inv[i]));
      store_i8(codes + c, r);
      part[i] = add(part[i], r);
    }
  }
  const Vec sums = reduce16(part, add);  // of integers, |sum| < 2^24: exact in float
  _mm512_storeu_si512(sum, _mm512_cvtps_epi32(sums));
  store(block_sum, mul(load(scale), sums));
}
#endif

// Token xt's blocks (pow2: the blocked layout's scales): codes in column order, 0 past the last column up to
// nb * bs; each block's scale, the sum of its codes, and block_sum = scale * sum (Int8Activations::block_sum's
// row).
void quantize_token(const float* xt, int64_t cols, int64_t nb, int64_t bs, bool pow2, int8_t* codes, float* scale,
                    int32_t* sum, float* block_sum) {
  int64_t b = 0;
#if defined(QWD_SIMD_AVX512)
  if (bs % simd::kWidth == 0)
    for (; (b + 16) * bs <= cols; b += 16)
      quantize_16_blocks(xt + b * bs, bs, pow2, codes + b * bs, scale + b, sum + b, block_sum + b);
#endif
  for (; b < nb; ++b) {
    const int64_t begin = b * bs, n = std::min(cols, begin + bs) - begin;
    const float amax = max_abs(xt + begin, n);
    scale[b] = block_scale(amax, pow2);
    const float inv = pow2 ? 1.0f / scale[b] : 127.0f / amax;
    sum[b] = to_codes(xt + begin, n, amax > 0.0f ? inv : 0.0f, codes + begin);
    block_sum[b] = scale[b] * static_cast<float>(sum[b]);
  }
  std::fill(codes + cols, codes + nb * bs, 0);
}

#if defined(QWD_INT8_AVX512)
// A token tile's codes, [kLaneTokens, 4 * steps] in column order, into the blocked layout [steps,
// kLaneTokens, 4] (int8_act.h), 16 steps at a time: for int4 each 8 columns' even ones go first.
void interleave(const int8_t* codes, int64_t steps, int bits, int8_t* q) {
  static_assert(kLaneTokens <= 16, "a tile's tokens are rows of one 16x16 transpose");
  const __m512i lane_order = _mm512_set4_epi32(0x0F0D0B09, 0x0E0C0A08, 0x07050301, 0x06040200);
  const __mmask16 tokens = static_cast<__mmask16>((1U << kLaneTokens) - 1);
  for (int64_t s0 = 0; s0 < steps; s0 += 16) {
    const int64_t n = std::min<int64_t>(16, steps - s0);
    const __mmask16 valid = static_cast<__mmask16>((1U << n) - 1);
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      r[i] = i < kLaneTokens ? _mm512_maskz_loadu_epi32(valid, codes + i * steps * 4 + s0 * 4) : _mm512_setzero_si512();
      if (bits == 4) r[i] = _mm512_shuffle_epi8(r[i], lane_order);
    }
    simd::transpose16(r);
    for (int64_t d = 0; d < n; ++d) _mm512_mask_storeu_epi32(q + (s0 + d) * kLaneTokens * 4, tokens, r[d]);
  }
}
#endif

}  // namespace

Int8Activations::Int8Activations(const float* x, int64_t tokens_, const Weights& w, bool blocked, const Parallel& par)
    : tokens(tokens_) {
  const int64_t nb = w.blocks(), bs = w.block_size, cols = w.cols;
  zero = 1 << (w.bits - 1);
  // One layout of three: the kernels read amx_x or blocked_* when there, the position layout otherwise.
  if (blocked && amx::usable()) {
    amx_pairs = (nb * bs + 31) / 32 * 16;
    amx_x.assign((tokens + 15) / 16 * 16 * amx_pairs, 0);
    par.run(tokens, [&](int64_t t) { amx::pack_token(x + t * cols, cols, w.bits, t, amx_pairs, amx_x.data()); });
    return;
  }
  block_sum.resize(tokens * nb);
#if defined(QWD_INT8_AVX512)
  if (blocked) {
    const int64_t tiles = (tokens + kLaneTokens - 1) / kLaneTokens, steps = nb * bs / 4;
    blocked_steps = steps;
    blocked_q.resize(tiles * steps * kLaneTokens * 4);
    blocked_init.resize(tiles * nb * kLaneTokens);
    blocked_exp.resize(tiles * nb * kLaneTokens);
    const bool pow2 = w.bits == 4;
    std::vector<uint8_t> finite(tiles, 1);  // per tile: every scale finite
    // A task per tile writes the tile's every byte, padding tokens' zeros included.
    par.run(tiles, [&](int64_t tile) {
      thread_local std::vector<int8_t> codes;  // [kLaneTokens, nb * bs]
      thread_local std::vector<float> scale;
      thread_local std::vector<int32_t> sum;
      codes.resize(kLaneTokens * nb * bs);
      scale.resize(nb);
      sum.resize(nb);
      int32_t* __restrict init = blocked_init.data() + tile * nb * kLaneTokens;  // [nb, kLaneTokens]
      int32_t* __restrict tile_exp = blocked_exp.data() + tile * nb * kLaneTokens;  // [nb, kLaneTokens]
      for (int64_t i = 0; i < kLaneTokens; ++i) {
        const int64_t t = tile * kLaneTokens + i;
        int8_t* token_codes = codes.data() + i * nb * bs;
        if (t < tokens) {
          quantize_token(x + t * cols, cols, nb, bs, pow2, token_codes, scale.data(), sum.data(),
                         block_sum.data() + t * nb);
        } else {
          std::fill(token_codes, token_codes + nb * bs, 0);
          std::fill(scale.begin(), scale.end(), 0.0f);
          std::fill(sum.begin(), sum.end(), 0);
        }
        for (int64_t b = 0; b < nb; ++b) {
          init[b * kLaneTokens + i] = -zero * sum[b];
          int32_t bits;
          std::memcpy(&bits, &scale[b], 4);
          tile_exp[b * kLaneTokens + i] = bits == 0 ? 0 : bits - kExpOne;  // a block of zeros: codes 0, any scale
          if (!std::isfinite(scale[b])) finite[tile] = 0;
        }
      }
      interleave(codes.data(), steps, w.bits, blocked_q.data() + tile * steps * kLaneTokens * 4);
    });
    blocked_pow2 = pow2 && std::all_of(finite.begin(), finite.end(), [](uint8_t f) { return f != 0; });
    return;
  }
#endif
  positions = (nb * bs + kStepCols - 1) / kStepCols * kStepCols;
  lanes = positions / cols_of(w.bits) * kLanes;
  q.assign(tokens * positions, 0);
  init.assign(tokens * lanes, 0);
  lane_scale.assign(tokens * lanes, 0.0f);
  const int64_t shift = __builtin_ctzll(bs);  // block sizes are powers of 2
  // Tokens are independent: each writes only its own bytes of every layout.
  par.run(tokens, [&](int64_t t) {
    // Scratch kept per thread: decode builds these for every op of every step.
    thread_local std::vector<float> scale;
    thread_local std::vector<int32_t> sum;
    thread_local std::vector<int8_t> codes;
    scale.resize(nb);
    sum.resize(nb);
    codes.assign(positions, 0);  // column order, 0 past the last column
    quantize_token(x + t * cols, cols, nb, bs, false, codes.data(), scale.data(), sum.data(),
                   block_sum.data() + t * nb);
    int8_t* __restrict qt = q.data() + t * positions;
    if (w.bits == 8) {
      std::memcpy(qt, codes.data(), codes.size());
    } else {
      constexpr int64_t half = kCols4 / 2;  // see column_of: even columns, then odd ones
      for (int64_t g = 0; g < positions; g += kCols4)
        for (int64_t i = 0; i < half; ++i) {
          qt[g + i] = codes[g + 2 * i];
          qt[g + half + i] = codes[g + 2 * i + 1];
        }
    }
    for (int64_t p = 0; p < positions; p += 4) {
      const int64_t lane = t * lanes + lane_of(p, w.bits), block = column_of(p, w.bits) >> shift;
      if (block >= nb) continue;  // padding: q is 0 there
      int32_t lane_sum = 0;
      for (int k = 0; k < 4; ++k) lane_sum += qt[p + k];
      init[lane] -= zero * lane_sum;
      lane_scale[lane] = scale[block];
    }
  });
}

}  // namespace qwd
