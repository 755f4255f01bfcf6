// A weight matrix [rows, cols] read one float row at a time: dense fp32, or block-quantized in
// ONNX Runtime's MatMulNBits layout ([rows, blocks, block_size*bits/8] bytes, int4 low nibble first,
// per-block scale, optional per-block zero point; value = (q - zero_point) * scale).
#pragma once

#include <cstdint>

namespace qwd {

struct Weights {
  int64_t rows = 0;
  int64_t cols = 0;
  const float* dense = nullptr;  // [rows, cols] when bits == 0
  int bits = 0;                  // 0 (dense), 4 or 8
  int64_t block_size = 0;
  const uint8_t* packed = nullptr;       // [rows, blocks, block_size*bits/8]
  const float* scales = nullptr;         // [rows, blocks]
  const uint8_t* zero_points = nullptr;  // [rows, ceil(blocks*bits/8)] or null: 2^(bits-1)

  static Weights fp32(const float* w, int64_t rows, int64_t cols);
  static Weights quantized(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size);

  int64_t blocks() const { return (cols + block_size - 1) / block_size; }
  int64_t block_bytes() const { return block_size * bits / 8; }
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
};

}  // namespace qwd
