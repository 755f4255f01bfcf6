// How a kernel core asks for parallelism without knowing which runtime runs it: the ONNX Runtime
// adapter passes its intra-op thread pool, the C++ test driver std::threads, a plain call runs serially.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

namespace qwd {

class Parallel {
 public:
  virtual ~Parallel() = default;
  // Calls fn(task) once for every task in [0, tasks), in any order, possibly concurrently.
  virtual void run(int64_t tasks, const std::function<void(int64_t)>& fn) const {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
  }
};

inline const Parallel& serial() {
  static const Parallel instance;
  return instance;
}

// Splits [0, n) into chunks of at least `grain` items, each starting at a multiple of `align`, and runs
// fn(begin, end) on each chunk.
inline void parallel_ranges(const Parallel& par, int64_t n, int64_t grain,
                            const std::function<void(int64_t, int64_t)>& fn, int64_t align = 1) {
  if (n <= 0) return;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(n / std::max<int64_t>(grain, 1), 256));
  const int64_t step = ((n + chunks - 1) / chunks + align - 1) / align * align;
  par.run((n + step - 1) / step, [&](int64_t c) { fn(c * step, std::min(n, (c + 1) * step)); });
}

}  // namespace qwd
