// A weight matrix [rows, cols] read one float row at a time: dense fp32, or block-quantized in
// ONNX Runtime's MatMulNBits layout ([rows, blocks, block_size*bits/8] bytes, int4 low nibble first,
// per-block scale in fp32 or IEEE fp16, optional per-block zero point; value = (q - zero_point) * scale).
#pragma once

#include <cstdint>
#include <vector>

namespace qwd {

float half_to_float(uint16_t h);

struct Weights {
  int64_t rows = 0;
  int64_t cols = 0;
  const float* dense = nullptr;  // [rows, cols] when bits == 0
  int bits = 0;                  // 0 (dense), 4 or 8
  int64_t block_size = 0;
  const uint8_t* packed = nullptr;       // [rows, blocks, block_size*bits/8]
  const float* scales = nullptr;         // [rows, blocks], or null when scales_f16 holds them
  const uint16_t* scales_f16 = nullptr;  // [rows, blocks] IEEE half
  const uint8_t* zero_points = nullptr;  // [rows, ceil(blocks*bits/8)] or null: 2^(bits-1)

  static Weights fp32(const float* w, int64_t rows, int64_t cols);
  static Weights quantized(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size);
  // The same with fp16 scales, 2 bytes per block instead of 4: decode widens them as it streams the rows,
  // prefill into a float copy per call (with_float_scales).
  static Weights quantized(const uint8_t* packed, const uint16_t* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size);

  int64_t blocks() const { return (cols + block_size - 1) / block_size; }
  int64_t block_bytes() const { return block_size * bits / 8; }
  int64_t scale_bytes() const { return scales_f16 ? 2 : 4; }
  float scale(int64_t r, int64_t b) const {
    return scales_f16 ? half_to_float(scales_f16[r * blocks() + b]) : scales[r * blocks() + b];
  }
  // Zero point of row r, block b (2^(bits-1) when there are none); inline: kernels call it per block.
  int zero_point(int64_t r, int64_t b) const {
    if (!zero_points) return 1 << (bits - 1);
    const uint8_t* zp_row = zero_points + r * ((blocks() * bits + 7) / 8);
    if (bits == 8) return zp_row[b];
    return (zp_row[b / 2] >> (4 * (b & 1))) & 0xF;
  }
  // Row r as floats: a pointer into `dense`, or dequantized into scratch[cols].
  const float* row(int64_t r, float* scratch) const;
  // The same matrix's rows [first, first + count) as a Weights view.
  Weights slice(int64_t first, int64_t count) const;
  // This view with float scales: itself, or (fp16 scales) with them widened into `scratch`, resized to fit.
  Weights with_float_scales(std::vector<float>& scratch) const;
};

}  // namespace qwd
