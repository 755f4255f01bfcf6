#include "quant_gather.h"

#include <stdexcept>
#include <string>

namespace qwd {

void quant_gather(const int64_t* indices, int64_t count, const Weights& table, float* y, const Parallel& par) {
  for (int64_t i = 0; i < count; ++i)
    if (indices[i] < -table.rows || indices[i] >= table.rows)
      throw std::out_of_range("qwdeploy.QuantGather: index " + std::to_string(indices[i]) + " at position " +
                              std::to_string(i) + " is outside [-" + std::to_string(table.rows) + ", " +
                              std::to_string(table.rows) + ")");
  par.run(count, [&](int64_t i) {
    const int64_t row = indices[i] < 0 ? indices[i] + table.rows : indices[i];
    table.row(row, y + i * table.cols);  // a quantized table: dequantized into y's row
  });
}

}  // namespace qwd
