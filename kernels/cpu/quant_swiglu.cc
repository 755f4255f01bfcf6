#include "quant_swiglu.h"

#include <algorithm>

#include "linear.h"

namespace qwd {

void quant_swiglu(const float* x, int64_t tokens, const Weights& w, float* y, const Parallel& par) {
  const int64_t inter = w.rows / 2;
  // Split the output columns: every task dequantizes only its own weight rows.
  const int64_t grain = std::max<int64_t>(4, 65536 / std::max<int64_t>(w.cols * tokens, 1));
  parallel_ranges(par, inter, grain, [&](int64_t begin, int64_t end) {
    swiglu_rows(x, tokens, w, begin, end, y, inter);
  });
}

}  // namespace qwd
