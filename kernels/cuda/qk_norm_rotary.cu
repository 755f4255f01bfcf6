#include "common.cuh"
#include "kernels.h"

namespace qwd::cuda {

namespace {

// One warp per (row, head): RMS over head_dim, then rotate-half with the row's cos/sin; v heads
// (packed op only) are copied through.
__global__ void qk_norm_rotary_kernel(QKNormRotaryProblem p, int64_t heads) {
  const int64_t qk_heads = p.num_heads + p.kv_num_heads;
  const int64_t job = blockIdx.x, row = job / heads, h = job % heads, D = p.head_dim, half = D / 2;
  if (h >= qk_heads) {
    const int64_t at = row * p.k_stride + (h - qk_heads) * D;
    for (int64_t i = threadIdx.x; i < D; i += kWarp) p.v_out[at + i] = p.v[at + i];
    return;
  }
  const bool is_q = h < p.num_heads;
  const int64_t at = is_q ? row * p.q_stride + h * D : row * p.k_stride + (h - p.num_heads) * D;
  const float* x = (is_q ? p.q : p.k) + at;  // [D]
  const float* w = is_q ? p.q_weight : p.k_weight;
  float* y = (is_q ? p.q_out : p.k_out) + at;
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

void qk_norm_rotary(const QKNormRotaryProblem& p, void* stream) {
  const int64_t heads = qk_row_heads(p), jobs = p.batch * p.seq * heads;
  if (jobs == 0) return;
  qk_norm_rotary_kernel<<<static_cast<unsigned>(jobs), kWarp, 0, static_cast<cudaStream_t>(stream)>>>(p, heads);
  check(cudaGetLastError(), "QKNormRotary launch");
}

}  // namespace qwd::cuda
