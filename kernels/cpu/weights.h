// A weight matrix [rows, cols] read one float row at a time: dense fp32, or block-quantized in
// ONNX Runtime's MatMulNBits layout ([rows, blocks, block_size*bits/8] bytes, int4 low nibble first,
// per-block scale in fp32 or IEEE fp16, optional per-block zero point; value = (q - zero_point) * scale).
// The packed bytes may instead come in row tiles (row_tile = 4, written so at export for CPU decode):
// each 4 rows' bytes interleaved kTileChunk bytes at a time, [ceil(rows/4), row_bytes/64, 4, 64], so that
// the kernel reading those 4 rows together streams one contiguous range instead of 4 short ones, which
// the hardware prefetchers follow badly. Scales and zero points keep their row order either way.
#pragma once

#include <cstdint>
#include <vector>

#include "half.h"

namespace qwd {

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
  int64_t row_tile = 1;                  // 1, or kRowTile: rows interleaved (see above)

  static constexpr int64_t kRowTile = 4, kTileChunk = 64;

  static Weights fp32(const float* w, int64_t rows, int64_t cols);
  static Weights quantized(const uint8_t* packed, const float* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size);
  // The same with fp16 scales, 2 bytes per block instead of 4: the int8 kernels widen them as they read
  // them, AMX prefill into a float copy per call (with_float_scales).
  static Weights quantized(const uint8_t* packed, const uint16_t* scales, const uint8_t* zero_points, int64_t rows,
                           int64_t cols, int bits, int64_t block_size);

  int64_t blocks() const { return (cols + block_size - 1) / block_size; }
  int64_t block_bytes() const { return block_size * bits / 8; }
  int64_t scale_bytes() const { return scales_f16 ? 2 : 4; }
  int64_t row_bytes() const { return blocks() * block_bytes(); }
  // Where one row's packed bytes lie, chunk by chunk; at(offset) is contiguous to the end of offset's
  // chunk (a block never straddles one: row tiles need 64 % block_bytes() == 0).
  struct RowBytes {
    const uint8_t* base;
    int64_t stride;  // from one of the row's chunks to its next
    const uint8_t* at(int64_t offset) const {
      return base + (offset / kTileChunk) * stride + offset % kTileChunk;
    }
  };
  RowBytes row_at(int64_t r) const {
    const int64_t tile = r / row_tile;
    return {packed + row_tile * tile * row_bytes() + (r - tile * row_tile) * kTileChunk, row_tile * kTileChunk};
  }
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
  // Row r as floats: a pointer into `dense`, or dequantized into scratch[cols] as (q - zero_point) * scale.
  const float* row(int64_t r, float* scratch) const;
  // The same matrix's rows [first, first + count) as a Weights view; first a multiple of row_tile.
  Weights slice(int64_t first, int64_t count) const;
  // This view with float scales: itself, or (fp16 scales) with them widened into `scratch`, resized to fit.
  Weights with_float_scales(std::vector<float>& scratch) const;
};

}  // namespace qwd
