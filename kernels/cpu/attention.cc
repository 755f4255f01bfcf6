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
constexpr int64_t kKeys = 64;   // keys per block
constexpr int64_t kTokens = 8;  // query tokens per task, each with every q head of one kv head

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

// Queries and outputs are held transposed, [dim, rows] with rows a multiple of kW, so every step below is
// a vector over rows: no key transposition, and the softmax runs on whole vectors.

// st[j, :] = k[j, :] . qt for kJ keys, over kV row vectors: qt [dim, rows], k [kJ, dim], st [kJ, rows].
template <int kJ, int kV>
void scores_step(const float* qt, int64_t rows, const float* k, int64_t dim, float* st) {
  Vec acc[kJ][kV];
  for (auto& a : acc)
    for (Vec& v : a) v = simd::set1(0.0f);
  for (int64_t d = 0; d < dim; ++d) {
    Vec q[kV];
    for (int c = 0; c < kV; ++c) q[c] = simd::load(qt + d * rows + c * kW);
    for (int j = 0; j < kJ; ++j) {
      const Vec kj = simd::set1(k[j * dim + d]);
      for (int c = 0; c < kV; ++c) acc[j][c] = simd::fma(kj, q[c], acc[j][c]);
    }
  }
  for (int j = 0; j < kJ; ++j)
    for (int c = 0; c < kV; ++c) simd::store(st + j * rows + c * kW, acc[j][c]);
}

template <int kJ>
void scores_keys(const float* qt, int64_t rows, const float* k, int64_t dim, float* st) {
  int64_t r = 0;
  for (; r + 4 * kW <= rows; r += 4 * kW) scores_step<kJ, 4>(qt + r, rows, k, dim, st + r);
  for (; r < rows; r += kW) scores_step<kJ, 1>(qt + r, rows, k, dim, st + r);
}

// st [n, rows] = the block's n keys [n, dim] against every row.
void scores(const float* qt, int64_t rows, const float* k, int64_t n, int64_t dim, float* st) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) scores_keys<4>(qt, rows, k + j * dim, dim, st + j * rows);
  for (; j < n; ++j) scores_keys<1>(qt, rows, k + j * dim, dim, st + j * rows);
}

// ot[d, :] += sum_j v[j, d] * pt[j, :] for kD dims from d, over kV row vectors: pt [n, rows], v [n, dim].
template <int kD, int kV>
void values_step(const float* pt, int64_t rows, const float* v, int64_t n, int64_t dim, float* ot) {
  Vec acc[kD][kV];
  for (int i = 0; i < kD; ++i)
    for (int c = 0; c < kV; ++c) acc[i][c] = simd::load(ot + i * rows + c * kW);
  for (int64_t j = 0; j < n; ++j) {
    Vec p[kV];
    for (int c = 0; c < kV; ++c) p[c] = simd::load(pt + j * rows + c * kW);
    for (int i = 0; i < kD; ++i) {
      const Vec vj = simd::set1(v[j * dim + i]);
      for (int c = 0; c < kV; ++c) acc[i][c] = simd::fma(vj, p[c], acc[i][c]);
    }
  }
  for (int i = 0; i < kD; ++i)
    for (int c = 0; c < kV; ++c) simd::store(ot + i * rows + c * kW, acc[i][c]);
}

template <int kD>
void values_dims(const float* pt, int64_t rows, const float* v, int64_t n, int64_t dim, float* ot) {
  int64_t r = 0;
  for (; r + 4 * kW <= rows; r += 4 * kW) values_step<kD, 4>(pt + r, rows, v, n, dim, ot + r);
  for (; r < rows; r += kW) values_step<kD, 1>(pt + r, rows, v, n, dim, ot + r);
}

// ot [dim, rows] += the block's values [n, dim] weighted by pt [n, rows].
void values(const float* pt, int64_t rows, const float* v, int64_t n, int64_t dim, float* ot) {
  int64_t d = 0;
  for (; d + 4 <= dim; d += 4) values_dims<4>(pt, rows, v + d, n, dim, ot + d * rows);
  for (; d < dim; ++d) values_dims<1>(pt, rows, v + d, n, dim, ot + d * rows);
}

// st [n, rows] scores → exp(score - new max) per row; the row's running max and sum follow, and what it
// accumulated so far (ot [dim, rows]) is rescaled to the new max.
void softmax_block(float* st, int64_t n, int64_t rows, float* max, float* sum, float* ot, int64_t dim) {
  for (int64_t r = 0; r < rows; r += kW) {
    Vec m = simd::load(max + r);
    for (int64_t j = 0; j < n; ++j) m = simd::max(m, simd::load(st + j * rows + r));
    const Vec corr = simd::exp(simd::sub(simd::load(max + r), m));  // ~0 on the first block (max = -inf)
    Vec s = simd::mul(simd::load(sum + r), corr);
    for (int64_t j = 0; j < n; ++j) {
      const Vec e = simd::exp(simd::sub(simd::load(st + j * rows + r), m));
      simd::store(st + j * rows + r, e);
      s = simd::add(s, e);
    }
    simd::store(max + r, m);
    simd::store(sum + r, s);
    for (int64_t d = 0; d < dim; ++d) simd::store(ot + d * rows + r, simd::mul(simd::load(ot + d * rows + r), corr));
  }
}

struct Scratch {
  std::vector<float> qt, ot, st, max, sum, row;
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
  for (int64_t b = 0; b < B && p.cos; ++b)
    if (pasts[b] + S > p.max_positions)
      throw std::out_of_range("position " + std::to_string(pasts[b] + S - 1) + " outside the cos/sin cache of " +
                              std::to_string(p.max_positions) + " positions");
  // Token s of row b sits at position pasts[b] + s.
  auto cos_at = [&](int64_t b, int64_t s) { return p.cos ? p.cos + (pasts[b] + s) * half : nullptr; };
  auto sin_at = [&](int64_t b, int64_t s) { return p.cos ? p.sin + (pasts[b] + s) * half : nullptr; };

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
    const int64_t tokens = std::min(kTokens, S - s0), rows = tokens * G;  // row = token * G + head in group
    const int64_t padded = (rows + kW - 1) / kW * kW;  // padding rows: zero queries, never written out
    thread_local Scratch w;
    w.qt.assign(D * padded, 0.0f);  // [D, padded] rotated, scaled queries
    w.ot.assign(D * padded, 0.0f);  // [D, padded] unnormalized outputs
    w.st.resize(kKeys * padded);    // [kKeys, padded] scores, then probabilities
    w.max.assign(padded, -std::numeric_limits<float>::infinity());
    w.sum.assign(padded, 0.0f);
    w.row.resize(D);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r / G;
      rotate(p.q + (b * S + s0 + i) * p.q_stride + (h * G + r % G) * D, cos_at(b, s0 + i), sin_at(b, s0 + i), D,
             scale, w.row.data());
      for (int64_t d = 0; d < D; ++d) w.qt[d * padded + r] = w.row[d];
    }
    const float* K = p.present_k + bh * T * D;  // [T, D]
    const float* V = p.present_v + bh * T * D;
    const int64_t first = pasts[b] + s0;  // key of the task's first token: every row sees keys 0 ..= first
    const int64_t end = first + tokens;   // keys any row sees
    for (int64_t j0 = 0; j0 < end; j0 += kKeys) {
      const int64_t n = std::min(kKeys, end - j0);
      // Causal: key j is hidden from the rows of tokens before it, a prefix of rows (padding rows see all).
      auto hide = [&](float value) {
        for (int64_t j = std::max<int64_t>(0, first + 1 - j0); j < n; ++j)
          std::fill_n(w.st.data() + j * padded, (j0 + j - first) * G, value);
      };
      scores(w.qt.data(), padded, K + j0 * D, n, D, w.st.data());
      hide(-std::numeric_limits<float>::infinity());
      softmax_block(w.st.data(), n, padded, w.max.data(), w.sum.data(), w.ot.data(), D);
      hide(0.0f);  // exactly: the vector exp stops at e^-87, and its products with values would be denormal
      values(w.st.data(), padded, V + j0 * D, n, D, w.ot.data());
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.0f / w.sum[r];
      float* y = p.out + (b * S + s0 + r / G) * H * D + (h * G + r % G) * D;
      for (int64_t d = 0; d < D; ++d) y[d] = w.ot[d * padded + r] * inv;
    }
  });
}

}  // namespace qwd
