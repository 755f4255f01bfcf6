#include "quant_linear.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "int8_dot.h"
#include "linear.h"

namespace qwd {

namespace {

using namespace int8;

// Decode: 4 rows share each activation load. Prefill: rows x tokens tiles, each unpacked weight step
// feeding kPrefillTokens dot products while it sits in registers (2 x 8 accumulators fit AVX-512's 32
// registers, 2 x 4 the 16 of AVX2 and the scalar/NEON paths).
constexpr int kDecodeRows = 4;
constexpr int kPrefillRows = 2;
#if defined(QWD_INT8_AVX512)
constexpr int kPrefillTokens = 8;
#else
constexpr int kPrefillTokens = 4;
#endif

template <int kBits, int R, int T>
void tile(const Int8Activations& a, const Weights& w, const ScaleGather& gather, const int64_t* rows, int64_t t0,
          float* out /* [T, R] */) {
  const int64_t nb = w.blocks(), row_bytes = nb * w.block_bytes();
  constexpr int64_t kStepBytes = kCols * kBits / 8;
  const int64_t full = row_bytes / kStepBytes, shift = __builtin_ctzll(w.block_size);
  const uint8_t* wr[R];
  const float* sr[R];
  for (int r = 0; r < R; ++r) {
    wr[r] = w.packed + rows[r] * row_bytes;  // [row_bytes]
    sr[r] = w.scales + rows[r] * nb;         // [nb]
  }
  FVec acc[R][T];
  for (auto& row : acc)
    for (FVec& v : row) v = zero();
  auto step = [&](int64_t s, auto partial) {
    const int64_t pos = s * kCols, b0 = pos >> shift;
    WVec wv[R];
    FVec sv[R];
    for (int r = 0; r < R; ++r) {
      // The same bytes of the next tile's rows (the next R rows in memory): decode streams the weights
      // once, and the hardware prefetcher alone leaves the core waiting on R interleaved streams.
      __builtin_prefetch(wr[r] + s * kStepBytes + R * row_bytes);
      __builtin_prefetch(sr[r] + b0 + R * nb);
      wv[r] = load_w<kBits, decltype(partial)::value>(wr[r] + s * kStepBytes, row_bytes - s * kStepBytes);
      sv[r] = gather(sr[r] + b0, nb - b0);
    }
    for (int t = 0; t < T; ++t) {
      const int8_t* xq = a.q_of(t0 + t) + pos;
      const int32_t* init = a.init_of(t0 + t) + pos / 4;
      const float* xs = a.scale_of(t0 + t) + pos / 4;
      for (int r = 0; r < R; ++r) acc[r][t] = accumulate(dot<kBits>(init, wv[r], xq), sv[r], xs, acc[r][t]);
    }
  };
  for (int64_t s = 0; s < full; ++s) step(s, std::false_type{});
  if (full * kStepBytes < row_bytes) step(full, std::true_type{});
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t * R + r] = hsum(acc[r][t]);
}

// Explicit zero points: the tiles computed sum((q - zero) * x); add (zero - zp) * sum(x) per block.
float zero_point_correction(const Int8Activations& a, const Weights& w, int64_t row, int64_t t) {
  const int64_t nb = w.blocks();
  const float* s = w.scales + row * nb;
  const float* bsum = a.block_sum.data() + t * nb;
  float c = 0.0f;
  for (int64_t b = 0; b < nb; ++b) c += s[b] * static_cast<float>(a.zero - w.zero_point(row, b)) * bsum[b];
  return c;
}

template <int kBits, int R, int T>
void rows_tokens(const Int8Activations& a, const Weights& w, const ScaleGather& gather, const int64_t* rows,
                 int64_t count, int64_t t0, float* out) {
  float part[T * R];
  for (int64_t i0 = 0; i0 < count; i0 += R) {
    const int64_t n = std::min<int64_t>(R, count - i0);
    int64_t pick[R];
    for (int r = 0; r < R; ++r) pick[r] = rows[i0 + std::min<int64_t>(r, n - 1)];  // a short group repeats its last row
    tile<kBits, R, T>(a, w, gather, pick, t0, part);
    for (int t = 0; t < T; ++t)
      for (int64_t r = 0; r < n; ++r) out[(t0 + t) * count + i0 + r] = part[t * R + r];
  }
}

template <int kBits>
void dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  const ScaleGather gather(lane_blocks(kBits, w.block_size));
  int64_t t = 0;
  for (; t + kPrefillTokens <= a.tokens; t += kPrefillTokens)
    rows_tokens<kBits, kPrefillRows, kPrefillTokens>(a, w, gather, rows, count, t, out);
  for (; t < a.tokens; ++t) rows_tokens<kBits, kDecodeRows, 1>(a, w, gather, rows, count, t, out);
}

}  // namespace

const char* int8_isa() { return kIsa; }

int64_t int8_grain(const Weights& w, int64_t rows, int64_t rows_per_output) {
  constexpr int64_t kTaskBytes = 256 << 10;
  const int64_t row_bytes = rows_per_output * w.blocks() * (w.block_bytes() + 4);  // codes and scales
  const int64_t by_bytes = std::max<int64_t>(kDecodeRows, kTaskBytes / std::max<int64_t>(row_bytes, 1));
  return std::max<int64_t>(1, std::min(by_bytes, (rows + 7) / 8));
}

void int8_dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  if (w.bits == 8)
    dot_rows<8>(a, w, rows, count, out);
  else
    dot_rows<4>(a, w, rows, count, out);
  if (w.zero_points)
    for (int64_t tt = 0; tt < a.tokens; ++tt)
      for (int64_t i = 0; i < count; ++i) out[tt * count + i] += zero_point_correction(a, w, rows[i], tt);
}

void quant_linear(const float* x, int64_t tokens, const Weights& w, const float* bias, float* y, int accuracy_level,
                  const Parallel& par) {
  const int64_t grain = int8_grain(w, w.rows);
  if (accuracy_level != 4) {
    parallel_ranges(par, w.rows, grain, [&](int64_t begin, int64_t end) {
      linear_rows(x, tokens, w, begin, end, y, w.rows);
      if (bias)
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t r = begin; r < end; ++r) y[t * w.rows + r] += bias[r];
    });
    return;
  }
  const Int8Activations a(x, tokens, w);
  parallel_ranges(par, w.rows, grain, [&](int64_t begin, int64_t end) {
    const int64_t count = end - begin;
    std::vector<int64_t> rows(count);
    for (int64_t i = 0; i < count; ++i) rows[i] = begin + i;
    std::vector<float> out(tokens * count);  // [tokens, count]
    int8_dot_rows(a, w, rows.data(), count, out.data());
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < count; ++i)
        y[t * w.rows + begin + i] = out[t * count + i] + (bias ? bias[begin + i] : 0.0f);
  });
}

}  // namespace qwd
