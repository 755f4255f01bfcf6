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

Weights Weights::slice(int64_t first, int64_t count) const {
  Weights m = *this;
  m.rows = count;
  if (bits == 0) {
    m.dense = dense + first * cols;
    return m;
  }
  const int64_t nb = blocks();
  m.packed = packed + first * nb * block_size * bits / 8;
  m.scales = scales + first * nb;
  if (zero_points) m.zero_points = zero_points + first * ((nb * bits + 7) / 8);
  return m;
}

const float* Weights::row(int64_t r, float* scratch) const {
  if (bits == 0) return dense + r * cols;
  const int64_t nb = blocks();
  const uint8_t* q = packed + r * nb * block_bytes();  // [nb, block_bytes]
  const float* s = scales + r * nb;                    // [nb]
  for (int64_t b = 0; b < nb; ++b) {
    const float scale = s[b];
    const float offset = -static_cast<float>(zero_point(r, b)) * scale;  // (q - zp) * s = q*s + offset
    const int64_t start = b * block_size;
    const int64_t n = cols - start < block_size ? cols - start : block_size;  // last block may be padding
    const uint8_t* qb = q + b * block_bytes();
    float* out = scratch + start;
    if (bits == 8) {
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(qb[i]) * scale + offset;
    } else {
      int64_t i = 0;
      for (; i + 1 < n; i += 2) {
        const uint8_t byte = qb[i / 2];
        out[i] = static_cast<float>(byte & 0xF) * scale + offset;
        out[i + 1] = static_cast<float>(byte >> 4) * scale + offset;
      }
      if (i < n) out[i] = static_cast<float>(qb[i / 2] & 0xF) * scale + offset;
    }
  }
  return scratch;
}

}  // namespace qwd
