#include "weights.h"

#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace qwd {

// F16C / NEON conversions where the build has them.
void halves_to_floats(const uint16_t* in, int64_t n, float* out) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
#elif defined(__aarch64__)
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(in + i))));
#endif
  for (; i < n; ++i) out[i] = half_to_float(in[i]);
}

Weights Weights::fp32(const float* w, int64_t rows, int64_t cols) {
  Weights m;
  m.rows = rows;
  m.cols = cols;
  m.dense = w;
  return m;
}

Weights Weights::quantized(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size) {
  Weights m;
  m.rows = rows;
  m.cols = cols;
  m.bits = bits;
  m.block_size = block_size;
  m.packed = packed;
  m.scales = scales;
  m.zero_points = zero_points;
  return m;
}

Weights Weights::quantized(const uint8_t* packed, const uint16_t* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size) {
  Weights m = quantized(packed, static_cast<const float*>(nullptr), zero_points, rows, cols, bits, block_size);
  m.scales_f16 = scales;
  return m;
}

Weights Weights::with_float_scales(std::vector<float>& scratch) const {
  if (!scales_f16) return *this;
  Weights m = *this;
  scratch.resize(rows * blocks());
  halves_to_floats(scales_f16, rows * blocks(), scratch.data());
  m.scales = scratch.data();
  m.scales_f16 = nullptr;
  return m;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000 | (mantissa << 13);  // inf, nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal half: value mantissa * 2^-24, normal as a float
    const float value = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &value, 4);
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

Weights Weights::slice(int64_t first, int64_t count) const {
  Weights m = *this;
  m.rows = count;
  if (bits == 0) {
    m.dense = dense + first * cols;
    return m;
  }
  const int64_t nb = blocks();
  m.packed = packed + first * row_bytes();
  if (scales) m.scales = scales + first * nb;
  if (scales_f16) m.scales_f16 = scales_f16 + first * nb;
  if (zero_points) m.zero_points = zero_points + first * ((nb * bits + 7) / 8);
  return m;
}

const float* Weights::row(int64_t r, float* scratch) const {
  if (bits == 0) return dense + r * cols;
  const int64_t nb = blocks();
  const RowBytes bytes = row_at(r);
  for (int64_t b = 0; b < nb; ++b) {
    // (q - zp) * s, one rounding: what the numpy reference and ONNX Runtime's block dequantization compute.
    const float scale = this->scale(r, b);
    const int zero = zero_point(r, b);
    const int64_t start = b * block_size;
    const int64_t n = cols - start < block_size ? cols - start : block_size;  // last block may be padding
    const uint8_t* qb = bytes.at(b * block_bytes());
    float* out = scratch + start;
    if (bits == 8) {
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(qb[i] - zero) * scale;
    } else {
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(((qb[i / 2] >> (4 * (i & 1))) & 0xF) - zero) * scale;
    }
  }
  return scratch;
}

}  // namespace qwd
