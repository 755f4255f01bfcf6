// Device helpers shared by the .cu files: warp sums, SiLU, and reading one weight of a Weights matrix.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "../cpu/weights.h"

namespace qwd::cuda {

constexpr int kWarp = 32;

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + __expf(-g)); }

// w[r, c] as float: dense, or dequantized from the MatMulNBits layout.
__device__ __forceinline__ float weight_at(const Weights& w, int64_t r, int64_t c) {
  if (w.bits == 0) return w.dense[r * w.cols + c];
  const int64_t nb = (w.cols + w.block_size - 1) / w.block_size, b = c / w.block_size, i = c % w.block_size;
  const uint8_t* block = w.packed + (r * nb + b) * (w.block_size * w.bits / 8);
  int q, zp = 1 << (w.bits - 1);
  if (w.bits == 8) {
    q = block[i];
    if (w.zero_points) zp = w.zero_points[r * nb + b];
  } else {
    q = (block[i / 2] >> (4 * (i & 1))) & 0xF;
    if (w.zero_points) zp = (w.zero_points[r * ((nb + 1) / 2) + b / 2] >> (4 * (b & 1))) & 0xF;
  }
  return static_cast<float>(q - zp) * w.scales[r * nb + b];
}

// x . w[r] by one warp; every lane gets the sum.
__device__ __forceinline__ float warp_dot(const float* x, const Weights& w, int64_t r) {
  float acc = 0.0f;
  for (int64_t c = threadIdx.x % kWarp; c < w.cols; c += kWarp) acc += x[c] * weight_at(w, r, c);
  return warp_sum(acc);
}

}  // namespace qwd::cuda
