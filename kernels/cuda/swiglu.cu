#include <algorithm>

#include "common.cuh"
#include "kernels.h"

namespace qwd::cuda {

namespace {

__global__ void swiglu_kernel(const float* gate_up, float* y, int64_t rows, int64_t inter) {
  const int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i % inter;
    y[i] = silu(gate_up[r * 2 * inter + c]) * gate_up[r * 2 * inter + inter + c];
  }
}

}  // namespace

void swiglu(const float* gate_up, float* y, int64_t rows, int64_t inter, void* stream) {
  const int64_t n = rows * inter;
  if (n == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535));
  swiglu_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(gate_up, y, rows, inter);
  check(cudaGetLastError(), "SwiGLU launch");
}

}  // namespace qwd::cuda
