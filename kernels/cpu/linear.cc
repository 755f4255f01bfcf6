#include "linear.h"

#include <algorithm>
#include <vector>

#include "simd.h"

namespace qwd {

void linear(const float* x, int64_t tokens, const Weights& w, const float* bias, float* y, const Parallel& par) {
  // 64 rows and 32 tokens stay in L2 (448 KiB at 1,792 columns) while each row meets every token of the tile.
  constexpr int64_t kRows = 64, kTokens = 32;
  parallel_ranges(par, w.rows, kRows, [&](int64_t begin, int64_t end) {
    for (int64_t r0 = begin; r0 < end; r0 += kRows) {
      const int64_t r1 = std::min(end, r0 + kRows);
      for (int64_t t0 = 0; t0 < tokens; t0 += kTokens)
        linear_rows(x + t0 * w.cols, std::min(kTokens, tokens - t0), w, r0, r1, y + t0 * w.rows, w.rows);
      for (int64_t t = 0; t < tokens && bias; ++t)
        for (int64_t r = r0; r < r1; ++r) y[t * w.rows + r] += bias[r];
    }
  });
}

namespace {

// Rows per tile: kTileRows x kTileTokens accumulators and one vector per token stay in registers (32 of
// AVX-512 and NEON, 16 of AVX2).
#if defined(QWD_SIMD_AVX2)
constexpr int kTileRows = 2;
#else
constexpr int kTileRows = 4;
#endif
constexpr int kTileTokens = 4;

// y[t * ldy + i] = x[t] . rows[i] for R rows x T tokens (x [T, cols]): each vector of columns loads R + T
// vectors for R * T multiply-adds, where a row against one token at a time loaded two for one.
template <int R, int T>
void dot_tile(const float* const* rows, const float* x, int64_t cols, float* y, int64_t ldy) {
  constexpr int kW = simd::kWidth;
  simd::Vec acc[R][T];
  for (auto& row : acc)
    for (simd::Vec& v : row) v = simd::set1(0.0f);
  int64_t c = 0;
  for (; c + kW <= cols; c += kW) {
    simd::Vec xv[T];  // [T] this vector of columns of each token
    for (int t = 0; t < T; ++t) {
      xv[t] = simd::load(x + t * cols + c);
      simd::in_register(xv[t]);
    }
    for (int i = 0; i < R; ++i) {
      simd::Vec wv = simd::load(rows[i] + c);
      simd::in_register(wv);
      for (int t = 0; t < T; ++t) acc[i][t] = simd::fma(wv, xv[t], acc[i][t]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      float sum = simd::hsum(acc[i][t]);
      for (int64_t k = c; k < cols; ++k) sum += rows[i][k] * x[t * cols + k];
      y[t * ldy + i] = sum;
    }
}

// kTileRows rows against every token, kTileTokens at a time, then the last 1-3.
void dot_tokens(const float* const* rows, const float* x, int64_t tokens, int64_t cols, float* y, int64_t ldy) {
  constexpr int R = kTileRows;
  int64_t t = 0;
  for (; t + kTileTokens <= tokens; t += kTileTokens)
    dot_tile<R, kTileTokens>(rows, x + t * cols, cols, y + t * ldy, ldy);
  switch (tokens - t) {
    case 3: return dot_tile<R, 3>(rows, x + t * cols, cols, y + t * ldy, ldy);
    case 2: return dot_tile<R, 2>(rows, x + t * cols, cols, y + t * ldy, ldy);
    case 1: return dot_tile<R, 1>(rows, x + t * cols, cols, y + t * ldy, ldy);
    default: return;
  }
}

}  // namespace

void linear_rows(const float* x, int64_t tokens, const Weights& w, int64_t row_begin, int64_t row_end, float* y,
                 int64_t ldy) {
  std::vector<float> scratch(w.bits ? kTileRows * w.cols : 0);  // [kTileRows, cols]
  int64_t r = row_begin;
  if (tokens >= kTileTokens) {
    const float* rows[kTileRows];
    for (; r + kTileRows <= row_end; r += kTileRows) {
      for (int i = 0; i < kTileRows; ++i) rows[i] = w.row(r + i, scratch.data() + i * w.cols);  // [cols]
      dot_tokens(rows, x, tokens, w.cols, y + r, ldy);
    }
  }
  // Fewer tokens (decode), and the last rows: a row at a time, streamed by the first token's dot product and
  // in L1 for the others (what reads memory fastest, where there are too few tokens to be compute-bound).
  for (; r < row_end; ++r) {
    const float* row = w.row(r, scratch.data());  // [cols]
    for (int64_t t = 0; t < tokens; ++t) y[t * ldy + r] = simd::dot(x + t * w.cols, row, w.cols);
  }
}

void swiglu_rows(const float* x, int64_t tokens, const Weights& w, int64_t begin, int64_t end, float* y,
                 int64_t ldy) {
  const int64_t inter = w.rows / 2;
  std::vector<float> scratch(w.bits ? 2 * kTileRows * w.cols : 0);  // [2, kTileRows, cols]
  int64_t i = begin;
  if (tokens >= kTileTokens) {  // tiles of gate rows and of their up rows, as linear_rows
    std::vector<float> gate(tokens * kTileRows), up(tokens * kTileRows);  // [tokens, kTileRows]
    const float* gate_rows[kTileRows];
    const float* up_rows[kTileRows];
    for (; i + kTileRows <= end; i += kTileRows) {
      for (int j = 0; j < kTileRows; ++j) {
        gate_rows[j] = w.row(i + j, scratch.data() + j * w.cols);
        up_rows[j] = w.row(inter + i + j, scratch.data() + (kTileRows + j) * w.cols);
      }
      dot_tokens(gate_rows, x, tokens, w.cols, gate.data(), kTileRows);
      dot_tokens(up_rows, x, tokens, w.cols, up.data(), kTileRows);
      for (int64_t t = 0; t < tokens; ++t)
        for (int j = 0; j < kTileRows; ++j)
          y[t * ldy + i + j] = simd::silu_scalar(gate[t * kTileRows + j]) * up[t * kTileRows + j];
    }
  }
  for (; i < end; ++i) {
    const float* gate = w.row(i, scratch.data());               // [cols]
    const float* up = w.row(inter + i, scratch.data() + w.cols);  // [cols]
    for (int64_t t = 0; t < tokens; ++t) {
      const float g = simd::dot(x + t * w.cols, gate, w.cols);
      const float u = simd::dot(x + t * w.cols, up, w.cols);
      y[t * ldy + i] = simd::silu_scalar(g) * u;
    }
  }
}

}  // namespace qwd
