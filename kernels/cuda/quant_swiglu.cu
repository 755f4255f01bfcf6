#include <algorithm>

#include "common.cuh"
#include "kernels.h"

namespace qwd::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

// grid: (ceil(I / 8), min(tokens, 65535)); one warp per output column i: both dots, then SwiGLU, in registers.
__global__ void gate_up_swiglu_kernel(const float* x, int64_t tokens, Weights w, float* y) {
  const int64_t inter = w.rows / 2;
  const int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (i >= inter) return;
  for (int64_t t = blockIdx.y; t < tokens; t += gridDim.y) {
    const float* xt = x + t * w.cols;  // [cols]
    const float g = warp_dot(xt, w, i), u = warp_dot(xt, w, inter + i);
    if (threadIdx.x % kWarp == 0) y[t * inter + i] = silu(g) * u;
  }
}

}  // namespace

void gate_up_swiglu(const float* x, int64_t tokens, const Weights& w, float* y, void* stream) {
  const int64_t inter = w.rows / 2;
  if (tokens == 0 || inter == 0) return;
  const dim3 grid(static_cast<unsigned>((inter + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(std::min<int64_t>(tokens, 65535)));
  gate_up_swiglu_kernel<<<grid, kWarpsPerBlock * kWarp, 0, static_cast<cudaStream_t>(stream)>>>(x, tokens, w, y);
  check(cudaGetLastError(), "QuantSwiGLU launch");
}

}  // namespace qwd::cuda
