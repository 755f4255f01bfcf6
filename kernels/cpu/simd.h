// One float vector type per ISA, chosen at compile time; every kernel is written once against it.
// Tails (sizes not a multiple of kWidth) are finished with the scalar lane, so odd sizes are exact.
// load(const uint16_t*) widens kWidth IEEE halves; load_u8 widens kWidth bytes to floats; load_u4 widens
// kWidth bytes of packed int4 to their low nibbles (even columns) and high nibbles (odd columns), so the
// caller orders x to match.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "half.h"

#if defined(QWD_FORCE_SCALAR)
#define QWD_SIMD_SCALAR 1
#elif defined(__AVX512F__)
#include <immintrin.h>
#define QWD_SIMD_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QWD_SIMD_AVX2 1
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#define QWD_SIMD_NEON 1
#else
#define QWD_SIMD_SCALAR 1
#endif

namespace qwd::simd {

#if defined(QWD_SIMD_AVX512)
inline constexpr const char* kIsa = "avx512";
inline constexpr int kWidth = 16;
using Vec = __m512;
inline Vec load(const float* p) { return _mm512_loadu_ps(p); }
inline Vec load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec set1(float x) { return _mm512_set1_ps(x); }
inline Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
inline Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec div(Vec a, Vec b) { return _mm512_div_ps(a, b); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }  // a*b + c
inline Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline Vec min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
inline Vec round(Vec a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// x * 2^n for integral n in [-126, 127], in one instruction (the others: through the exponent bits).
inline Vec scale_pow2(Vec x, Vec n) { return _mm512_scalef_ps(x, n); }
inline float hsum(Vec v) { return _mm512_reduce_add_ps(v); }
inline float hmax(Vec v) { return _mm512_reduce_max_ps(v); }
inline bool all_equal(Vec a, Vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ) == 0; }
// Keeps v in a register: left alone, a compiler tuned for some CPUs (-mtune=znver4) folds a vector's load
// into every multiply-add that reads it, and the loads, not the multiply-adds, set the pace.
inline void in_register(Vec& v) { asm("" : "+v"(v)); }
inline void store_i8(int8_t* p, Vec v) {  // v integral, in [-128, 127]
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
}
inline Vec load_u8(const uint8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p))); }
inline void load_u4(const uint8_t* p, Vec& lo, Vec& hi) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p));
  lo = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(0xF)));
  hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
}
// 16x16 dword transpose: r[i] = row i in, r[j] = column j out.
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(u[i], u[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(u[i], u[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_i32x4(u[i + 8], u[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(u[i + 8], u[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xDD);
  }
}

// Lane i = v[i]'s 16 lanes combined by op (lane-wise, associative: add, max): 16 reductions in 45
// instructions, where 16 horizontal ones take ~130. Each step halves the lanes holding every vector's partials.
template <class Op>
inline __m512 reduce16(const __m512 v[16], Op op) {
  auto in = [&](int s) { return v[s % 4 * 4 + s / 4]; };  // the order that leaves v[i]'s total in lane i
  __m512 w[8], x[4], y[2];
  for (int i = 0; i < 8; ++i)  // [a.lo256 op a.hi256 | b.lo256 op b.hi256]
    w[i] = op(_mm512_shuffle_f32x4(in(2 * i), in(2 * i + 1), 0x44), _mm512_shuffle_f32x4(in(2 * i), in(2 * i + 1), 0xEE));
  for (int i = 0; i < 4; ++i)  // 128-bit block b: 4 partials of in(4i + b)
    x[i] = op(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88), _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)
    y[i] = op(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return op(_mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
#elif defined(QWD_SIMD_AVX2)
inline constexpr const char* kIsa = "avx2";
inline constexpr int kWidth = 8;
using Vec = __m256;
inline Vec load(const float* p) { return _mm256_loadu_ps(p); }
#if defined(__F16C__)
inline Vec load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#else
inline Vec load(const uint16_t* p) {
  alignas(32) float f[8];
  for (int i = 0; i < 8; ++i) f[i] = half_to_float(p[i]);
  return _mm256_load_ps(f);
}
#endif
inline void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec set1(float x) { return _mm256_set1_ps(x); }
inline Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
inline Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec div(Vec a, Vec b) { return _mm256_div_ps(a, b); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline Vec min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
inline Vec round(Vec a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline Vec scale_pow2(Vec x, Vec n) {
  return _mm256_mul_ps(
      x, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)));
}
inline float hsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(Vec v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline bool all_equal(Vec a, Vec b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_NEQ_UQ)) == 0; }
inline void in_register(Vec& v) { asm("" : "+v"(v)); }
inline void store_i8(int8_t* p, Vec v) {  // v integral, in [-128, 127]
  const __m256i i = _mm256_cvtps_epi32(v);
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(w, w));
}
inline Vec load_u8(const uint8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p))); }
inline void load_u4(const uint8_t* p, Vec& lo, Vec& hi) {
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p));
  lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(0xF)));
  hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
}
#elif defined(QWD_SIMD_NEON)
inline constexpr const char* kIsa = "neon";
inline constexpr int kWidth = 4;
using Vec = float32x4_t;
inline Vec load(const float* p) { return vld1q_f32(p); }
inline Vec load(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
inline void store(float* p, Vec v) { vst1q_f32(p, v); }
inline Vec set1(float x) { return vdupq_n_f32(x); }
inline Vec add(Vec a, Vec b) { return vaddq_f32(a, b); }
inline Vec sub(Vec a, Vec b) { return vsubq_f32(a, b); }
inline Vec mul(Vec a, Vec b) { return vmulq_f32(a, b); }
inline Vec div(Vec a, Vec b) { return vdivq_f32(a, b); }
inline Vec fma(Vec a, Vec b, Vec c) { return vfmaq_f32(c, a, b); }
inline Vec max(Vec a, Vec b) { return vmaxq_f32(a, b); }
inline Vec min(Vec a, Vec b) { return vminq_f32(a, b); }
inline Vec round(Vec a) { return vrndnq_f32(a); }
inline Vec scale_pow2(Vec x, Vec n) {
  return vmulq_f32(x, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23)));
}
inline float hsum(Vec v) { return vaddvq_f32(v); }
inline float hmax(Vec v) { return vmaxvq_f32(v); }
inline bool all_equal(Vec a, Vec b) { return vminvq_u32(vceqq_f32(a, b)) != 0; }
inline void in_register(Vec& v) { asm("" : "+w"(v)); }
inline void store_i8(int8_t* p, Vec v) {  // v integral, in [-128, 127]
  const int16x4_t h = vqmovn_s32(vcvtnq_s32_f32(v));
  const int8x8_t b = vqmovn_s16(vcombine_s16(h, h));
  vst1_lane_s32(reinterpret_cast<int32_t*>(p), vreinterpret_s32_s8(b), 0);
}
inline uint32x4_t widen_u8(const uint8_t* p) {  // 4 bytes → 4 u32 lanes
  uint32_t word;
  std::memcpy(&word, p, 4);
  return vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(word)))));
}
inline Vec load_u8(const uint8_t* p) { return vcvtq_f32_u32(widen_u8(p)); }
inline void load_u4(const uint8_t* p, Vec& lo, Vec& hi) {
  const uint32x4_t b = widen_u8(p);
  lo = vcvtq_f32_u32(vandq_u32(b, vdupq_n_u32(0xF)));
  hi = vcvtq_f32_u32(vshrq_n_u32(b, 4));
}
#else
inline constexpr const char* kIsa = "scalar";
inline constexpr int kWidth = 1;
using Vec = float;
inline Vec load(const float* p) { return *p; }
inline Vec load(const uint16_t* p) { return half_to_float(*p); }
inline void store(float* p, Vec v) { *p = v; }
inline Vec set1(float x) { return x; }
inline Vec add(Vec a, Vec b) { return a + b; }
inline Vec sub(Vec a, Vec b) { return a - b; }
inline Vec mul(Vec a, Vec b) { return a * b; }
inline Vec div(Vec a, Vec b) { return a / b; }
inline Vec fma(Vec a, Vec b, Vec c) { return std::fma(a, b, c); }
inline Vec max(Vec a, Vec b) { return a > b ? a : b; }
inline Vec min(Vec a, Vec b) { return a < b ? a : b; }
inline Vec round(Vec a) { return std::nearbyint(a); }
inline Vec scale_pow2(Vec x, Vec n) { return x * std::ldexp(1.0f, static_cast<int>(n)); }
inline float hsum(Vec v) { return v; }
inline float hmax(Vec v) { return v; }
inline bool all_equal(Vec a, Vec b) { return a == b; }
inline void in_register(Vec&) {}
inline void store_i8(int8_t* p, Vec v) { *p = static_cast<int8_t>(v); }
inline Vec load_u8(const uint8_t* p) { return static_cast<float>(*p); }
inline void load_u4(const uint8_t* p, Vec& lo, Vec& hi) {
  lo = static_cast<float>(*p & 0xF);
  hi = static_cast<float>(*p >> 4);
}
#endif

// exp(x) to ~2 ulp: x = n*ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r, 2^n through the exponent bits.
inline Vec exp(Vec x) {
  x = min(max(x, set1(-87.3f)), set1(88.3f));
  Vec n = round(mul(x, set1(1.44269504f)));
  Vec r = fma(n, set1(-0.693145752f), x);
  r = fma(n, set1(-1.42860677e-6f), r);
  Vec p = set1(1.0f / 720);
  p = fma(p, r, set1(1.0f / 120));
  p = fma(p, r, set1(1.0f / 24));
  p = fma(p, r, set1(1.0f / 6));
  p = fma(p, r, set1(0.5f));
  p = fma(p, r, set1(1.0f));
  p = fma(p, r, set1(1.0f));
  return scale_pow2(p, n);
}

inline Vec silu(Vec g) { return div(g, add(set1(1.0f), exp(sub(set1(0.0f), g)))); }

inline float silu_scalar(float g) { return g / (1.0f + std::exp(-g)); }

// sum_i a[i] * b[i]; two accumulators hide the FMA latency.
inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float tail = 0.0f;
  if constexpr (kWidth > 1) {
    Vec acc0 = set1(0.0f), acc1 = set1(0.0f);
    for (; i + 2 * kWidth <= n; i += 2 * kWidth) {
      acc0 = fma(load(a + i), load(b + i), acc0);
      acc1 = fma(load(a + i + kWidth), load(b + i + kWidth), acc1);
    }
    for (; i + kWidth <= n; i += kWidth) acc0 = fma(load(a + i), load(b + i), acc0);
    tail = hsum(add(acc0, acc1));
  }
  for (; i < n; ++i) tail += a[i] * b[i];
  return tail;
}

// y[i] += alpha * x[i]
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  if constexpr (kWidth > 1) {
    Vec va = set1(alpha);
    for (; i + kWidth <= n; i += kWidth) store(y + i, fma(va, load(x + i), load(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace qwd::simd
