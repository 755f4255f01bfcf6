// One step of the int8 dot product per ISA, chosen at compile time: cols_of(bits) weight columns of one
// row (packed int4 or int8, MatMulNBits layout) against the same columns of quantized activations
// (int8_act.h), giving kLanes int32 lanes; every lane lies in one weight block, so the caller scales
// lanes by (weight scale x activation scale) of their block and accumulates floats.
//   AVX-512 VNNI: vpdpbusd (u8 weights x s8 activations), 16 lanes. int8: 64 columns, 4 positions a lane.
//     int4: 128 columns, the 64 bytes of one load: the low nibbles and then the high ones go through two
//     vpdpbusd into the same lanes, so a lane holds 8 positions (4 + the 4 at 64 on) of one block, and the
//     scales and float work of a step are paid once per 64 bytes instead of once per 32.
//   AVX2: 32 columns, AVX-VNNI vpdpbusd where the CPU has it, else maddubs + madd; 8 lanes.
//   NEON: 32 columns, sdot with dotprod, else widening multiplies and pairwise adds; 8 lanes.
//   scalar: 32 columns, 8 lanes, plain loops.
// Weights keep their unsigned codes q where the instruction allows it; the activations' `init` lanes
// (-zero * sum of the lane's q) then turn sum(q*x) into sum((q - zero)*x). Where the codes must be
// signed (int8 weights on AVX2 and NEON, everything scalar) the step subtracts zero from the codes and
// ignores init. A step past the row's last byte reads zeros, never the next row.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "int8_act.h"
#include "weights.h"

namespace qwd::int8 {

// Which of a step's blocks each lane is in (0..7 from the step's first block), for a block size.
struct LaneBlocks {
  int32_t rel[16] = {};
  int64_t per_step = 1;  // blocks a step touches
};

#if defined(QWD_INT8_AVX512)
inline constexpr const char* kIsa = "avx512-vnni";
using IVec = __m512i;
using FVec = __m512;
struct Nibbles {  // int4: a step's 64 bytes, low nibbles (positions 0..63) and high ones (64..127)
  __m512i low, high;
};
template <int kBits>
struct WVecFor {
  using type = __m512i;
};
template <>
struct WVecFor<4> {
  using type = Nibbles;
};
template <int kBits>
using WVecOf = typename WVecFor<kBits>::type;

template <int kBits, bool kPartial>
inline WVecOf<kBits> load_w(const uint8_t* p, int64_t bytes_left) {
  const __m512i v = kPartial ? _mm512_maskz_loadu_epi8((1ULL << bytes_left) - 1, p) : _mm512_loadu_si512(p);
  if constexpr (kBits == 8) {
    return v;
  } else {
    const __m512i m = _mm512_set1_epi8(0x0F);
    return Nibbles{_mm512_and_si512(v, m), _mm512_and_si512(_mm512_srli_epi16(v, 4), m)};
  }
}

template <int kBits>
inline IVec dot(const int32_t* init, const WVecOf<kBits>& w, const int8_t* x) {
  if constexpr (kBits == 8) {
    return _mm512_dpbusd_epi32(_mm512_loadu_si512(init), w, _mm512_loadu_si512(x));
  } else {
    const __m512i lo = _mm512_dpbusd_epi32(_mm512_loadu_si512(init), w.low, _mm512_loadu_si512(x));
    return _mm512_dpbusd_epi32(lo, w.high, _mm512_loadu_si512(x + 64));
  }
}

// The step's lane scales from the row's block scales s[b0..]: `blocks` of them exist from b0 on (up to 8
// per step: int4 in blocks of 16).
struct ScaleGather {
  __m512i rel;
  int64_t per_step;
  explicit ScaleGather(const LaneBlocks& lb) : rel(_mm512_loadu_si512(lb.rel)), per_step(lb.per_step) {}
  __mmask8 mask(int64_t blocks) const { return static_cast<__mmask8>((1U << std::min(per_step, blocks)) - 1); }
  FVec operator()(const float* s, int64_t blocks) const {
    return _mm512_permutexvar_ps(rel, _mm512_zextps256_ps512(_mm256_maskz_loadu_ps(mask(blocks), s)));
  }
  FVec operator()(const uint16_t* s, int64_t blocks) const {  // float16 scales
    return _mm512_permutexvar_ps(rel, _mm512_zextps256_ps512(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(mask(blocks), s))));
  }
};

inline FVec zero() { return _mm512_setzero_ps(); }
inline FVec scaled(FVec ws, const float* xs) { return _mm512_mul_ps(ws, _mm512_loadu_ps(xs)); }
inline FVec accumulate(IVec d, FVec scale, FVec acc) { return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, acc); }
inline float hsum(FVec v) { return _mm512_reduce_add_ps(v); }

#elif defined(QWD_INT8_AVX2)
#if defined(__AVXVNNI__)
inline constexpr const char* kIsa = "avx2-vnni";
#else
inline constexpr const char* kIsa = "avx2";
#endif
using IVec = __m256i;
using FVec = __m256;
using WVec = __m256i;
template <int kBits>
using WVecOf = WVec;

template <int kBits, bool kPartial>
inline WVec load_w(const uint8_t* p, int64_t bytes_left) {
  alignas(32) uint8_t tail[32] = {};
  if constexpr (kPartial) p = static_cast<const uint8_t*>(std::memcpy(tail, p, bytes_left));
  if constexpr (kBits == 8)  // signed codes q - 128: maddubs would saturate on unsigned bytes up to 255
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_set1_epi8(-128));
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

template <int kBits>
inline IVec dot(const int32_t* init, WVec w, const int8_t* x) {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  if constexpr (kBits == 8) {
    // |w| * sign(x, w) = w * x, with |w| <= 128 unsigned: no saturation in maddubs.
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xv, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
  const __m256i in = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(init));
#if defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(in, w, xv);
#else
  return _mm256_add_epi32(in, _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), _mm256_set1_epi16(1)));
#endif
}

struct ScaleGather {
  __m256i rel;
  int64_t per_step;
  explicit ScaleGather(const LaneBlocks& lb)
      : rel(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lb.rel))), per_step(lb.per_step) {}
  FVec operator()(const float* s, int64_t blocks) const {
    const __m128 v = per_step > 1 && blocks > 1 ? _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(s)))
                                                : _mm_set_ss(s[0]);
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), rel);
  }
  FVec operator()(const uint16_t* s, int64_t blocks) const {  // float16 scales (F16C)
    uint32_t two = s[0];
    if (per_step > 1 && blocks > 1) two |= static_cast<uint32_t>(s[1]) << 16;
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(two)))),
                                    rel);
  }
};

inline FVec zero() { return _mm256_setzero_ps(); }
inline FVec scaled(FVec ws, const float* xs) { return _mm256_mul_ps(ws, _mm256_loadu_ps(xs)); }
inline FVec accumulate(IVec d, FVec scale, FVec acc) { return _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, acc); }
inline float hsum(FVec v) { return simd::hsum(v); }

#elif defined(QWD_INT8_NEON)
#if defined(__ARM_FEATURE_DOTPROD)
inline constexpr const char* kIsa = "neon-dotprod";
#else
inline constexpr const char* kIsa = "neon";
#endif
using IVec = int32x4x2_t;
using FVec = float32x4x2_t;
using WVec = int8x16x2_t;
template <int kBits>
using WVecOf = WVec;

template <int kBits, bool kPartial>
inline WVec load_w(const uint8_t* p, int64_t bytes_left) {
  alignas(16) uint8_t tail[32] = {};
  if constexpr (kPartial) p = static_cast<const uint8_t*>(std::memcpy(tail, p, bytes_left));
  if constexpr (kBits == 8) {  // signed codes q - 128
    const uint8x16_t flip = vdupq_n_u8(0x80);
    return {vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), flip)), vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p + 16), flip))};
  }
  const uint8x16_t v = vld1q_u8(p);
  return {vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8(v, 4))};
}

inline int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  // Products fit int16 (|w| <= 128, |x| <= 127) and so do pair sums; lanes as sdot's: bytes 4j..4j+3.
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_high_s8(a, b);
  return vaddq_s32(acc, vpaddlq_s16(vpaddq_s16(lo, hi)));
#endif
}

template <int kBits>
inline IVec dot(const int32_t* init, WVec w, const int8_t* x) {
  const int32x4_t z = vdupq_n_s32(0);  // int8 codes are already signed: no init
  const int32x4_t in0 = kBits == 8 ? z : vld1q_s32(init), in1 = kBits == 8 ? z : vld1q_s32(init + 4);
  return {sdot(in0, w.val[0], vld1q_s8(x)), sdot(in1, w.val[1], vld1q_s8(x + 16))};
}

struct ScaleGather {
  uint32x4_t first[2];  // all ones in the lanes whose block is the step's first
  int64_t per_step;
  explicit ScaleGather(const LaneBlocks& lb) : per_step(lb.per_step) {
    uint32_t mask[8];
    for (int j = 0; j < 8; ++j) mask[j] = lb.rel[j] ? 0u : ~0u;
    first[0] = vld1q_u32(mask);
    first[1] = vld1q_u32(mask + 4);
  }
  FVec operator()(const float* s, int64_t blocks) const {
    const float32x2_t two = per_step > 1 && blocks > 1 ? vld1_f32(s) : vset_lane_f32(s[0], vdup_n_f32(0.0f), 0);
    return lanes(vcombine_f32(two, two));
  }
  FVec operator()(const uint16_t* s, int64_t blocks) const {  // float16 scales: one fcvtl widens both
    uint16x4_t two = vld1_lane_u16(s, vdup_n_u16(0), 0);
    if (per_step > 1 && blocks > 1) two = vld1_lane_u16(s + 1, two, 1);
    return lanes(vcvt_f32_f16(vreinterpret_f16_u16(two)));
  }
  // Lanes 0 and 1 of s01 are the step's two scales.
  FVec lanes(float32x4_t s01) const {
    const float32x4_t a = vdupq_laneq_f32(s01, 0);
    if (per_step == 1) return {a, a};  // blocks of 32 or more: one scale per step
    const float32x4_t b = vdupq_laneq_f32(s01, 1);
    return {vbslq_f32(first[0], a, b), vbslq_f32(first[1], a, b)};
  }
};

inline FVec zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
inline FVec scaled(FVec ws, const float* xs) {
  return {vmulq_f32(ws.val[0], vld1q_f32(xs)), vmulq_f32(ws.val[1], vld1q_f32(xs + 4))};
}
inline FVec accumulate(IVec d, FVec scale, FVec acc) {
  return {vfmaq_f32(acc.val[0], vcvtq_f32_s32(d.val[0]), scale.val[0]),
          vfmaq_f32(acc.val[1], vcvtq_f32_s32(d.val[1]), scale.val[1])};
}
inline float hsum(FVec v) { return vaddvq_f32(vaddq_f32(v.val[0], v.val[1])); }

#else
inline constexpr const char* kIsa = "scalar";
struct IVec { int32_t v[8]; };
struct FVec { float v[8]; };
struct WVec { int16_t v[32]; };  // q - zero, in position order
template <int kBits>
using WVecOf = WVec;

template <int kBits, bool kPartial>
inline WVec load_w(const uint8_t* p, int64_t bytes_left) {
  WVec w{};
  constexpr int zero = 1 << (kBits - 1);
  const int64_t n = kPartial ? bytes_left : kBits * cols_of(kBits) / 8;
  if constexpr (kBits == 8) {
    for (int64_t i = 0; i < n; ++i) w.v[i] = static_cast<int16_t>(p[i] - zero);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      w.v[i] = static_cast<int16_t>((p[i] & 0xF) - zero);
      w.v[16 + i] = static_cast<int16_t>((p[i] >> 4) - zero);
    }
  }
  return w;
}

template <int kBits>
inline IVec dot(const int32_t*, const WVec& w, const int8_t* x) {
  IVec d{};
  for (int j = 0; j < 8; ++j)
    for (int k = 0; k < 4; ++k) d.v[j] += w.v[4 * j + k] * x[4 * j + k];
  return d;
}

inline float widen(float s) { return s; }
inline float widen(uint16_t s) { return half_to_float(s); }

struct ScaleGather {
  LaneBlocks lb;
  explicit ScaleGather(const LaneBlocks& l) : lb(l) {}
  template <class S>  // float, or uint16_t float16
  FVec operator()(const S* s, int64_t blocks) const {
    FVec f{};
    for (int j = 0; j < 8; ++j) f.v[j] = lb.rel[j] < blocks ? widen(s[lb.rel[j]]) : 0.0f;
    return f;
  }
};

inline FVec zero() { return FVec{}; }
inline FVec scaled(FVec ws, const float* xs) {
  for (int j = 0; j < 8; ++j) ws.v[j] *= xs[j];
  return ws;
}
inline FVec accumulate(const IVec& d, const FVec& scale, FVec acc) {
  for (int j = 0; j < 8; ++j) acc.v[j] += static_cast<float>(d.v[j]) * scale.v[j];
  return acc;
}
inline float hsum(const FVec& f) {
  float s = 0.0f;
  for (float v : f.v) s += v;
  return s;
}
#endif

// Whether token_scales' shortcut serves gather's steps: AVX-512's, for steps of 4 blocks.
inline bool four_blocks([[maybe_unused]] const ScaleGather& gather) {
#if defined(QWD_INT8_AVX512)
  return gather.per_step == 4;
#else
  return false;
#endif
}

// One token's step scales for R rows: row r's lane scales (its block scales from s[r], `blocks` of them
// left) times the activations' lane scales xs, the product a decode step's accumulate takes. kFour: the
// caller checked four_blocks, that R is 4 and the scales float16, and that the step is whole.
template <int R, bool kFour, class S>
inline void token_scales(const ScaleGather& gather, const S* const (&s)[R], int64_t blocks, const float* xs,
                         FVec (&out)[R]) {
#if defined(QWD_INT8_AVX512)
  // Decode's usual case, 4 rows of 4 float16 scales a step (int4 in blocks of 32): the 16 scales go into
  // one vector and take the activations' scales in one multiply, and each row's lanes are one permute
  // from it; per row that spares a masked load, a widening and a multiply. 4 blocks a step hold 4 lanes
  // each, in order: lane l is in block l / 4 (gather.rel), and lanes 0, 4, 8, 12 start the blocks.
  if constexpr (kFour) {
    static_assert(R == 4 && std::is_same_v<S, uint16_t>, "four rows of float16 scales");
    int64_t four[R];
    for (int r = 0; r < R; ++r) std::memcpy(&four[r], s[r], 8);
    const __m512i starts = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    const __m512 both = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_setr_epi64x(four[0], four[1], four[2], four[3])),
                                      _mm512_permutexvar_ps(starts, _mm512_loadu_ps(xs)));  // [4 rows, 4 blocks]
    for (int r = 0; r < R; ++r)  // row r's lanes: its 4 blocks' products at 4r on
      out[r] = _mm512_permutexvar_ps(_mm512_add_epi32(gather.rel, _mm512_set1_epi32(4 * r)), both);
    return;
  }
#endif
  for (int r = 0; r < R; ++r) out[r] = scaled(gather(s[r], blocks), xs);
}

// Lane l of a step starts at position 4l; its block relative to the step's first block.
inline LaneBlocks lane_blocks(int bits, int64_t block_size) {
  LaneBlocks lb;
  lb.per_step = std::max<int64_t>(1, cols_of(bits) / block_size);
  for (int l = 0; l < kLanes; ++l) lb.rel[l] = static_cast<int32_t>(column_of(4 * l, bits) / block_size);
  return lb;
}

}  // namespace qwd::int8
