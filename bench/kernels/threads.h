// The harnesses' thread pool: persistent OpenMP workers taking tasks one at a time, as ONNX Runtime's
// intra-op pool hands them to our kernels (kernels/cpu/parallel.h).
#pragma once

#include <cstdint>
#include <functional>

#include "../../kernels/cpu/parallel.h"

struct Threads : qwd::Parallel {
  void run(int64_t tasks, const std::function<void(int64_t)>& fn) const override {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) fn(t);
  }
};
