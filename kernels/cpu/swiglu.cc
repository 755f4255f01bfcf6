#include "swiglu.h"

#include "simd.h"

namespace qwd {

void swiglu_row(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  if constexpr (simd::kWidth > 1) {
    for (; i + simd::kWidth <= n; i += simd::kWidth)
      simd::store(y + i, simd::mul(simd::silu(simd::load(gate + i)), simd::load(up + i)));
  }
  for (; i < n; ++i) y[i] = simd::silu_scalar(gate[i]) * up[i];
}

void swiglu(const float* gate_up, float* y, int64_t rows, int64_t inter, const Parallel& par) {
  // Rows are independent; ~16k elements per task keeps decode (1 row) on one thread.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(inter, 1));
  parallel_ranges(par, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      swiglu_row(gate_up + r * 2 * inter, gate_up + r * 2 * inter + inter, y + r * inter, inter);
  });
}

}  // namespace qwd
