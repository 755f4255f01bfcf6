#include "qk_norm_rotary.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

#include "simd.h"

namespace qwd {

namespace {

// One head: RMSNorm over head_dim, then rotate-half rotary with this position's cos/sin.
void norm_rotate_head(const float* x, const float* w, const float* cos, const float* sin, float eps, int64_t dim,
                      float* y) {
  const int64_t half = dim / 2;
  const float inv_rms = head_inv_rms(x, dim, eps);
  int64_t i = 0;
  if constexpr (simd::kWidth > 1) {
    const simd::Vec s = simd::set1(inv_rms);
    for (; i + simd::kWidth <= half; i += simd::kWidth) {
      const simd::Vec a = simd::mul(simd::mul(simd::load(x + i), s), simd::load(w + i));                // [W] first half
      const simd::Vec b = simd::mul(simd::mul(simd::load(x + half + i), s), simd::load(w + half + i));  // [W] second half
      const simd::Vec c = simd::load(cos + i), sn = simd::load(sin + i);
      simd::store(y + i, simd::sub(simd::mul(a, c), simd::mul(b, sn)));
      simd::store(y + half + i, simd::fma(a, sn, simd::mul(b, c)));
    }
  }
  for (; i < half; ++i) {
    const float a = x[i] * inv_rms * w[i], b = x[half + i] * inv_rms * w[half + i];
    y[i] = a * cos[i] - b * sin[i];
    y[half + i] = b * cos[i] + a * sin[i];
  }
}

}  // namespace

float head_inv_rms(const float* x, int64_t dim, float eps) {
  return 1.0f / std::sqrt(simd::dot(x, x, dim) / static_cast<float>(dim) + eps);
}

void dense_rows(QKNormRotaryProblem& p, const float* q, const float* k, float* q_out, float* k_out) {
  p.q_stride = p.num_heads * p.head_dim;
  p.k_stride = p.kv_num_heads * p.head_dim;
  p.q = q;
  p.k = k;
  p.v = nullptr;
  p.q_out = q_out;
  p.k_out = k_out;
  p.v_out = nullptr;
}

void packed_rows(QKNormRotaryProblem& p, const float* qkv, float* qkv_out) {
  const int64_t q_width = p.num_heads * p.head_dim, kv_width = p.kv_num_heads * p.head_dim;
  p.q_stride = p.k_stride = q_width + 2 * kv_width;
  p.q = qkv;
  p.k = qkv + q_width;
  p.v = qkv + q_width + kv_width;
  p.q_out = qkv_out;
  p.k_out = qkv_out + q_width;
  p.v_out = qkv_out + q_width + kv_width;
}

void qk_norm_rotary(const QKNormRotaryProblem& p, const Parallel& par) {
  const int64_t rows = p.batch * p.seq, D = p.head_dim, half = D / 2;
  const int64_t heads = qk_row_heads(p), qk_heads = p.num_heads + p.kv_num_heads;
  std::atomic<bool> bad{false};
  std::atomic<int64_t> bad_position{0};
  // ~32 heads per task: decode (1 row) runs inline, prefill spreads over the pool.
  parallel_ranges(par, rows * heads, 32, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t row = job / heads, h = job % heads;
      if (h >= qk_heads) {
        const int64_t at = row * p.k_stride + (h - qk_heads) * D;
        std::copy(p.v + at, p.v + at + D, p.v_out + at);
        continue;
      }
      const int64_t pos = p.position_ids[row];
      if (pos < 0 || pos >= p.max_positions) {
        bad_position = pos;
        bad = true;
        continue;
      }
      const float* cos = p.cos + pos * half;
      const float* sin = p.sin + pos * half;
      if (h < p.num_heads) {
        const int64_t at = row * p.q_stride + h * D;
        norm_rotate_head(p.q + at, p.q_weight, cos, sin, p.epsilon, D, p.q_out + at);
      } else {
        const int64_t at = row * p.k_stride + (h - p.num_heads) * D;
        norm_rotate_head(p.k + at, p.k_weight, cos, sin, p.epsilon, D, p.k_out + at);
      }
    }
  });
  if (bad)
    throw std::out_of_range("position id " + std::to_string(bad_position.load()) + " outside the cos/sin cache of " +
                            std::to_string(p.max_positions) + " positions");
}

}  // namespace qwd
