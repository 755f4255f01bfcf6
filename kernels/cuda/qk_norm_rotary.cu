#include "common.cuh"
#include "kernels.h"

namespace qwd::cuda {

namespace {

// One warp per (row, head): RMS over head_dim, then rotate-half with the row's cos/sin.
__global__ void qk_norm_rotary_kernel(QKNormRotaryProblem p, float* q_out, float* k_out) {
  const int64_t heads = p.num_heads + p.kv_num_heads;
  const int64_t job = blockIdx.x, row = job / heads, h = job % heads, D = p.head_dim, half = D / 2;
  const bool is_q = h < p.num_heads;
  const int64_t at = is_q ? (row * p.num_heads + h) * D : (row * p.kv_num_heads + h - p.num_heads) * D;
  const float* x = (is_q ? p.q : p.k) + at;  // [D]
  const float* w = is_q ? p.q_weight : p.k_weight;
  float* y = (is_q ? q_out : k_out) + at;
  const int64_t pos = p.position_ids[row];
  if (pos < 0 || pos >= p.max_positions) {
    for (int64_t i = threadIdx.x; i < D; i += kWarp) y[i] = 0.0f;
    return;
  }
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < D; i += kWarp) ss += x[i] * x[i];
  const float inv_rms = rsqrtf(warp_sum(ss) / static_cast<float>(D) + p.epsilon);
  const float* cos = p.cos + pos * half;
  const float* sin = p.sin + pos * half;
  for (int64_t i = threadIdx.x; i < half; i += kWarp) {
    const float a = x[i] * inv_rms * w[i], b = x[half + i] * inv_rms * w[half + i];
    y[i] = a * cos[i] - b * sin[i];
    y[half + i] = b * cos[i] + a * sin[i];
  }
}

}  // namespace

void qk_norm_rotary(const QKNormRotaryProblem& p, float* q_out, float* k_out, void* stream) {
  const int64_t jobs = p.batch * p.seq * (p.num_heads + p.kv_num_heads);
  if (jobs == 0) return;
  qk_norm_rotary_kernel<<<static_cast<unsigned>(jobs), kWarp, 0, static_cast<cudaStream_t>(stream)>>>(p, q_out,
                                                                                                      k_out);
  check(cudaGetLastError(), "QKNormRotary launch");
}

}  // namespace qwd::cuda
