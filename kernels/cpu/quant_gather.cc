#include "quant_gather.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace qwd {

void quant_gather(const int64_t* indices, int64_t count, const Weights& table, float* y, const Parallel& par) {
  for (int64_t i = 0; i < count; ++i)
    if (indices[i] < -table.rows || indices[i] >= table.rows)
      throw std::out_of_range("qwdeploy.QuantGather: index " + std::to_string(indices[i]) + " at position " +
                              std::to_string(i) + " is outside [-" + std::to_string(table.rows) + ", " +
                              std::to_string(table.rows) + ")");
  const int64_t nb = table.blocks(), bb = table.block_bytes();
  par.run(count, [&](int64_t i) {
    const int64_t row = indices[i] < 0 ? indices[i] + table.rows : indices[i];
    const Weights::RowBytes bytes = table.row_at(row);
    float* out = y + i * table.cols;  // [cols]
    for (int64_t b = 0; b < nb; ++b) {
      // (q - zero point) * scale, one rounding: what GatherBlockQuantized and the reference compute.
      const float scale = table.scale(row, b);
      const int zero = table.zero_point(row, b);
      const uint8_t* q = bytes.at(b * bb);
      const int64_t start = b * table.block_size, n = std::min(table.block_size, table.cols - start);
      for (int64_t c = 0; c < n; ++c) {
        const int code = table.bits == 8 ? q[c] : (q[c / 2] >> (4 * (c & 1))) & 0xF;
        out[start + c] = static_cast<float>(code - zero) * scale;
      }
    }
  });
}

}  // namespace qwd
