#include "weights.h"

namespace qwd {

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
