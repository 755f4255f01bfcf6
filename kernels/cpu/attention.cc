#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "simd.h"

namespace qwd {

namespace {

using simd::Vec;
constexpr int kW = simd::kWidth;
constexpr int64_t kKeys = 4 * kW;  // keys per block: four score vectors per row
constexpr int64_t kTokens = 8;     // query tokens per task, each with every q head of one kv head
constexpr int64_t kRows = 4;       // rows of one micro-kernel call

// y = rotate_half(x) at one position, times scale; without cos, a scaled copy.
void rotate(const float* x, const float* cos, const float* sin, int64_t dim, float scale, float* y) {
  if (cos == nullptr) {
    for (int64_t i = 0; i < dim; ++i) y[i] = x[i] * scale;
    return;
  }
  const int64_t half = dim / 2;
  int64_t i = 0;
  if constexpr (kW > 1) {
    const Vec s = simd::set1(scale);
    for (; i + kW <= half; i += kW) {
      const Vec a = simd::load(x + i), b = simd::load(x + half + i);  // [W] first half, [W] second half
      const Vec c = simd::load(cos + i), sn = simd::load(sin + i);
      simd::store(y + i, simd::mul(simd::sub(simd::mul(a, c), simd::mul(b, sn)), s));
      simd::store(y + half + i, simd::mul(simd::fma(a, sn, simd::mul(b, c)), s));
    }
  }
  for (; i < half; ++i) {
    const float a = x[i], b = x[half + i];
    y[i] = (a * cos[i] - b * sin[i]) * scale;
    y[half + i] = (b * cos[i] + a * sin[i]) * scale;
  }
}

// s[i, :] = q[i, :] . kt[:, :] for kRows rows: q [kRows, dim], kt [dim, kKeys], s [kRows, kKeys].
void scores(const float* q, const float* kt, int64_t dim, float* s) {
  Vec acc[kRows][4];
  for (auto& row : acc)
    for (Vec& a : row) a = simd::set1(0.0f);
  for (int64_t d = 0; d < dim; ++d) {
    const float* k = kt + d * kKeys;
    const Vec k0 = simd::load(k), k1 = simd::load(k + kW), k2 = simd::load(k + 2 * kW), k3 = simd::load(k + 3 * kW);
    for (int64_t i = 0; i < kRows; ++i) {
      const Vec qi = simd::set1(q[i * dim + d]);
      acc[i][0] = simd::fma(qi, k0, acc[i][0]);
      acc[i][1] = simd::fma(qi, k1, acc[i][1]);
      acc[i][2] = simd::fma(qi, k2, acc[i][2]);
      acc[i][3] = simd::fma(qi, k3, acc[i][3]);
    }
  }
  for (int64_t i = 0; i < kRows; ++i)
    for (int c = 0; c < 4; ++c) simd::store(s + i * kKeys + c * kW, acc[i][c]);
}

// o[i, :] = o[i, :] * corr[i] + p[i, :n] . v[:n, :] for kRows rows: p [kRows, kKeys], v [n, dim], o [kRows, dim].
template <int kVecs>
void values_step(const float* p, const float* v, int64_t n, const float* corr, float* o, int64_t dim, int64_t d) {
  Vec acc[kRows][kVecs];
  for (int64_t i = 0; i < kRows; ++i)
    for (int c = 0; c < kVecs; ++c) acc[i][c] = simd::mul(simd::load(o + i * dim + d + c * kW), simd::set1(corr[i]));
  for (int64_t j = 0; j < n; ++j) {
    Vec vj[kVecs];
    for (int c = 0; c < kVecs; ++c) vj[c] = simd::load(v + j * dim + d + c * kW);
    for (int64_t i = 0; i < kRows; ++i) {
      const Vec pij = simd::set1(p[i * kKeys + j]);
      for (int c = 0; c < kVecs; ++c) acc[i][c] = simd::fma(pij, vj[c], acc[i][c]);
    }
  }
  for (int64_t i = 0; i < kRows; ++i)
    for (int c = 0; c < kVecs; ++c) simd::store(o + i * dim + d + c * kW, acc[i][c]);
}

void values(const float* p, const float* v, int64_t n, const float* corr, float* o, int64_t dim) {
  int64_t d = 0;
  for (; d + 4 * kW <= dim; d += 4 * kW) values_step<4>(p, v, n, corr, o, dim, d);
  for (; d + kW <= dim; d += kW) values_step<1>(p, v, n, corr, o, dim, d);
  for (; d < dim; ++d)
    for (int64_t i = 0; i < kRows; ++i) {
      float acc = o[i * dim + d] * corr[i];
      for (int64_t j = 0; j < n; ++j) acc += p[i * kKeys + j] * v[j * dim + d];
      o[i * dim + d] = acc;
    }
}

// Scores of one row's first `valid` keys → their exp(score - new max); the rest of the block → 0.
// Returns the factor that rescales what the row accumulated so far; updates its max and sum.
float softmax_block(float* s, int64_t valid, float& max, float& sum) {
  if (valid <= 0) {
    std::fill(s, s + kKeys, 0.0f);
    return 1.0f;
  }
  float block_max = s[0];
  for (int64_t j = 1; j < valid; ++j) block_max = std::max(block_max, s[j]);
  const float new_max = std::max(max, block_max);
  const float corr = std::exp(max - new_max);  // 0 on the first block (max = -inf)
  float block_sum = 0.0f;
  int64_t j = 0;
  if constexpr (kW > 1) {
    const Vec m = simd::set1(new_max);
    Vec acc = simd::set1(0.0f);
    for (; j + kW <= valid; j += kW) {
      const Vec e = simd::exp(simd::sub(simd::load(s + j), m));
      simd::store(s + j, e);
      acc = simd::add(acc, e);
    }
    block_sum = simd::hsum(acc);
  }
  for (; j < valid; ++j) block_sum += s[j] = std::exp(s[j] - new_max);
  std::fill(s + valid, s + kKeys, 0.0f);
  max = new_max;
  sum = sum * corr + block_sum;
  return corr;
}

struct Scratch {
  std::vector<float> q, o, s, kt, max, sum, corr;
  std::vector<int64_t> last;  // each row's last visible key
};

}  // namespace

void attention(const AttentionProblem& p, const Parallel& par) {
  const int64_t B = p.batch, S = p.seq, H = p.num_heads, KV = p.kv_num_heads, D = p.head_dim;
  const int64_t T = p.present_len, half = D / 2, G = H / KV;
  const bool first_prompt = S == T;
  std::vector<int64_t> pasts(B);  // each row's tokens before this call
  for (int64_t b = 0; b < B; ++b) {
    const int64_t total = static_cast<int64_t>(p.seqlens_k[b]) + 1;
    const int64_t past = first_prompt ? 0 : total - S;
    if (total < 1 || total > T || past < 0 || past > p.past_len)
      throw std::invalid_argument("seqlens_k[" + std::to_string(b) + "] = " + std::to_string(total - 1) + " does not fit " +
                                  std::to_string(S) + " new tokens after a past of " + std::to_string(p.past_len) +
                                  " in a total of " + std::to_string(T));
    pasts[b] = past;
  }
  auto position = [&](int64_t b, int64_t s) {
    const int64_t pos = pasts[b] + s;
    if (pos >= p.max_positions)
      throw std::out_of_range("position " + std::to_string(pos) + " outside the cos/sin cache of " +
                              std::to_string(p.max_positions) + " positions");
    return pos;
  };
  if (p.cos)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s) position(b, s);
  auto cos_at = [&](int64_t b, int64_t s) { return p.cos ? p.cos + position(b, s) * half : nullptr; };
  auto sin_at = [&](int64_t b, int64_t s) { return p.cos ? p.sin + position(b, s) * half : nullptr; };

  // present = past, the new keys (rotated) and values, zeros: one task per (batch, kv head).
  par.run(B * KV, [&](int64_t task) {
    const int64_t b = task / KV, h = task % KV, past = pasts[b];
    float* pk = p.present_k + task * T * D;  // [T, D]
    float* pv = p.present_v + task * T * D;
    std::copy(p.past_k + task * p.past_len * D, p.past_k + (task * p.past_len + past) * D, pk);
    std::copy(p.past_v + task * p.past_len * D, p.past_v + (task * p.past_len + past) * D, pv);
    for (int64_t s = 0; s < S; ++s) {
      const int64_t token = b * S + s;
      rotate(p.k + token * p.kv_stride + h * D, cos_at(b, s), sin_at(b, s), D, 1.0f, pk + (past + s) * D);
      std::copy(p.v + token * p.kv_stride + h * D, p.v + token * p.kv_stride + (h + 1) * D, pv + (past + s) * D);
    }
    std::fill(pk + (past + S) * D, pk + T * D, 0.0f);
    std::fill(pv + (past + S) * D, pv + T * D, 0.0f);
  });

  // Attention: one task per (batch, kv head, block of kTokens queries), the last blocks (most keys) first.
  const float scale = p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t blocks = (S + kTokens - 1) / kTokens;
  par.run(B * KV * blocks, [&](int64_t task) {
    const int64_t bh = task / blocks, b = bh / KV, h = bh % KV, s0 = (blocks - 1 - task % blocks) * kTokens;
    const int64_t tokens = std::min(kTokens, S - s0), rows = tokens * G;
    const int64_t padded = (rows + kRows - 1) / kRows * kRows;
    thread_local Scratch w;
    w.q.assign(padded * D, 0.0f);  // [padded, D] rotated, scaled queries; row = token * G + head in group
    w.o.assign(padded * D, 0.0f);  // [padded, D] unnormalized outputs
    w.s.resize(padded * kKeys);    // [padded, kKeys] scores, then probabilities
    w.kt.resize(D * kKeys);        // [D, kKeys] the block's keys, transposed
    w.max.assign(padded, -std::numeric_limits<float>::infinity());
    w.sum.assign(padded, 0.0f);
    w.corr.resize(padded);
    w.last.resize(padded);
    for (int64_t r = 0; r < padded; ++r) {
      const int64_t i = std::min(r, rows - 1) / G;  // padding rows (zero queries) copy the last real one's extent
      w.last[r] = pasts[b] + s0 + i;
      if (r < rows)
        rotate(p.q + (b * S + s0 + i) * p.q_stride + (h * G + r % G) * D, cos_at(b, s0 + i), sin_at(b, s0 + i), D,
               scale, w.q.data() + r * D);
    }
    const float* K = p.present_k + bh * T * D;  // [T, D]
    const float* V = p.present_v + bh * T * D;
    const int64_t end = pasts[b] + s0 + tokens;  // keys any row of this task sees
    for (int64_t j0 = 0; j0 < end; j0 += kKeys) {
      const int64_t n = std::min(kKeys, end - j0);
      for (int64_t d = 0; d < D; ++d) {
        float* kt = w.kt.data() + d * kKeys;
        for (int64_t j = 0; j < n; ++j) kt[j] = K[(j0 + j) * D + d];
        std::fill(kt + n, kt + kKeys, 0.0f);
      }
      for (int64_t r = 0; r < padded; r += kRows) scores(w.q.data() + r * D, w.kt.data(), D, w.s.data() + r * kKeys);
      for (int64_t r = 0; r < padded; ++r) {
        const int64_t valid = std::min(n, w.last[r] + 1 - j0);
        w.corr[r] = softmax_block(w.s.data() + r * kKeys, valid, w.max[r], w.sum[r]);
      }
      for (int64_t r = 0; r < padded; r += kRows)
        values(w.s.data() + r * kKeys, V + j0 * D, n, w.corr.data() + r, w.o.data() + r * D, D);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.0f / w.sum[r];
      const float* o = w.o.data() + r * D;
      float* y = p.out + (b * S + s0 + r / G) * H * D + (h * G + r % G) * D;
      for (int64_t d = 0; d < D; ++d) y[d] = o[d] * inv;
    }
  });
}

}  // namespace qwd
