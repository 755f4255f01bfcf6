#include "quant_swiglu.h"

#include <algorithm>
#include <vector>

#include "quant_linear.h"
#include "simd.h"

namespace qwd {

namespace {

using simd::Vec;
constexpr int W = simd::kWidth;

// Columns of a block that the vector loops cover: whole chunks of 2*W int4 values (W bytes) or W
// int8 values; the rest of the block (odd sizes, a short last block) goes through the scalar lane.
int64_t vector_part(int64_t n, int bits) { return bits == 4 ? n / (2 * W) * (2 * W) : n / W * W; }

int quantized_value(const uint8_t* qb, int64_t i, int bits) {
  return bits == 8 ? qb[i] : (qb[i / 2] >> (4 * (i & 1))) & 0xF;
}

// x [cols] in the order the int4 vector loops meet the columns: load_u4 yields the W even columns of a
// chunk, then its W odd ones, so x is permuted once per call instead of interleaving nibbles per row.
void permute_x(const float* x, const Weights& w, float* out) {
  for (int64_t start = 0; start < w.cols; start += w.block_size) {
    const int64_t n = std::min(w.block_size, w.cols - start);
    const int64_t vec = w.bits == 4 ? vector_part(n, 4) : 0;
    const float* xb = x + start;
    float* ob = out + start;
    for (int64_t c = 0; c < vec; c += 2 * W) {
      for (int j = 0; j < W; ++j) {
        ob[c + j] = xb[c + 2 * j];
        ob[c + W + j] = xb[c + 2 * j + 1];
      }
    }
    std::copy(xb + vec, xb + n, ob + vec);
  }
}

// Decode: x . w[ra] and x . w[rb] straight from the packed bytes, each x chunk loaded once for both
// rows. Per block: sum q*x in a vector, then scale it, and subtract zp*scale*sum(x) (xsum: [blocks]).
void dot_pair(const Weights& w, int64_t ra, int64_t rb, const float* xp, const float* xsum, float* out_a,
              float* out_b) {
  const int64_t nb = w.blocks(), bb = w.block_bytes();
  Vec tot_a = simd::set1(0.0f), tot_b = simd::set1(0.0f);
  float rest_a = 0.0f, rest_b = 0.0f;  // scalar tails and zero-point terms
  const Weights::RowBytes row_a = w.row_at(ra), row_b = w.row_at(rb);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t *qa = row_a.at(b * bb), *qb = row_b.at(b * bb);
    const int64_t start = b * w.block_size;
    const int64_t n = std::min(w.block_size, w.cols - start);
    const int64_t vec = vector_part(n, w.bits);
    const float* xb = xp + start;
    Vec acc_a = simd::set1(0.0f), acc_b = simd::set1(0.0f);
    if (w.bits == 4) {
      for (int64_t i = 0; i < vec; i += 2 * W) {
        const Vec x0 = simd::load(xb + i), x1 = simd::load(xb + i + W);
        Vec lo, hi;
        simd::load_u4(qa + i / 2, lo, hi);
        acc_a = simd::fma(hi, x1, simd::fma(lo, x0, acc_a));
        simd::load_u4(qb + i / 2, lo, hi);
        acc_b = simd::fma(hi, x1, simd::fma(lo, x0, acc_b));
      }
    } else {
      for (int64_t i = 0; i < vec; i += W) {
        const Vec x0 = simd::load(xb + i);
        acc_a = simd::fma(simd::load_u8(qa + i), x0, acc_a);
        acc_b = simd::fma(simd::load_u8(qb + i), x0, acc_b);
      }
    }
    float tail_a = 0.0f, tail_b = 0.0f;
    for (int64_t i = vec; i < n; ++i) {
      tail_a += quantized_value(qa, i, w.bits) * xb[i];
      tail_b += quantized_value(qb, i, w.bits) * xb[i];
    }
    const float sa = w.scale(ra, b), sb = w.scale(rb, b);
    tot_a = simd::fma(acc_a, simd::set1(sa), tot_a);
    tot_b = simd::fma(acc_b, simd::set1(sb), tot_b);
    rest_a += sa * (tail_a - w.zero_point(ra, b) * xsum[b]);
    rest_b += sb * (tail_b - w.zero_point(rb, b) * xsum[b]);
  }
  *out_a = simd::hsum(tot_a) + rest_a;
  *out_b = simd::hsum(tot_b) + rest_b;
}

// Prefill: row r of w as floats, in permute_x's column order.
void dequantize_row(const Weights& w, int64_t r, float* out) {
  const int64_t nb = w.blocks(), bb = w.block_bytes();
  const Weights::RowBytes row = w.row_at(r);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* q = row.at(b * bb);
    const float scale = w.scale(r, b);
    const float offset = -static_cast<float>(w.zero_point(r, b)) * scale;  // (q - zp) * s = q*s + offset
    const int64_t start = b * w.block_size;
    const int64_t n = std::min(w.block_size, w.cols - start);
    const int64_t vec = vector_part(n, w.bits);
    const Vec vs = simd::set1(scale), vo = simd::set1(offset);
    float* ob = out + start;
    if (w.bits == 4) {
      for (int64_t i = 0; i < vec; i += 2 * W) {
        Vec lo, hi;
        simd::load_u4(q + i / 2, lo, hi);
        simd::store(ob + i, simd::fma(lo, vs, vo));
        simd::store(ob + i + W, simd::fma(hi, vs, vo));
      }
    } else {
      for (int64_t i = 0; i < vec; i += W) simd::store(ob + i, simd::fma(simd::load_u8(q + i), vs, vo));
    }
    for (int64_t i = vec; i < n; ++i) ob[i] = quantized_value(q, i, w.bits) * scale + offset;
  }
}

// Prefill tile: kPairs gate/up pairs x kVecs*W tokens, accumulators acc[row][token vector]. Each step
// over k loads kVecs vectors of x^T (tokens along the vector) and broadcasts one weight per row, so
// there is no horizontal sum and every load feeds 2*kPairs (or kVecs) FMAs, as in a GEMM micro-kernel.
// 3 pairs keep a panel (6 rows of floats) in L1 next to the x^T stream; measured faster than 6 pairs
// x 2 vectors. AVX2 has 16 registers: 2 vectors keep its 12 accumulators out of memory.
constexpr int kPairs = 3;
#if defined(QWD_SIMD_AVX2)
constexpr int kVecs = 2;
#else
constexpr int kVecs = 4;
#endif
constexpr int kTile = kVecs * W;  // tokens per tile
constexpr int kDecode = 4;        // below this many tokens, dequantizing rows costs more than it saves

// panel: [2*kPairs, cols] dequantized rows (gate rows, then up rows); xt: [cols, ldx] x transposed, in
// permute_x's column order; y[t * inter + i0 + p] for the tile's tokens [t0, t0 + tokens).
void tile(const float* panel, int64_t cols, const float* xt, int64_t ldx, int64_t t0, int64_t tokens,
          int64_t pairs, float* y, int64_t i0, int64_t inter) {
  Vec acc[2 * kPairs][kVecs];
  for (auto& row : acc)
    for (Vec& a : row) a = simd::set1(0.0f);
  for (int64_t k = 0; k < cols; ++k) {
    Vec xv[kVecs];
    for (int v = 0; v < kVecs; ++v) xv[v] = simd::load(xt + k * ldx + t0 + v * W);
    for (int r = 0; r < 2 * kPairs; ++r) {
      const Vec wr = simd::set1(panel[r * cols + k]);
      for (int v = 0; v < kVecs; ++v) acc[r][v] = simd::fma(wr, xv[v], acc[r][v]);
    }
  }
  float h[kTile];  // one row's outputs for the tile's tokens
  for (int64_t p = 0; p < pairs; ++p) {
    for (int v = 0; v < kVecs; ++v) {
      const Vec g = acc[p][v];
      simd::store(h + v * W, simd::mul(simd::silu(g), acc[kPairs + p][v]));
    }
    for (int64_t t = 0; t < tokens; ++t) y[(t0 + t) * inter + i0 + p] = h[t];
  }
}

void decode_rows(const float* xp, const float* xsum, int64_t tokens, const Weights& w, int64_t begin, int64_t end,
                 float* y, int64_t inter) {
  const int64_t nb = w.blocks();
  for (int64_t i = begin; i < end; ++i) {
    for (int64_t t = 0; t < tokens; ++t) {
      float g, u;
      dot_pair(w, i, inter + i, xp + t * w.cols, xsum + t * nb, &g, &u);
      y[t * inter + i] = simd::silu_scalar(g) * u;
    }
  }
}

void prefill_rows(const float* xt, int64_t ldx, int64_t tokens, const Weights& w, int64_t begin, int64_t end,
                  float* y, int64_t inter) {
  const int64_t cols = w.cols;
  std::vector<float> panel(2 * kPairs * cols, 0.0f);  // [2, kPairs, cols]; rows past `pairs` are never stored
  for (int64_t i0 = begin; i0 < end; i0 += kPairs) {
    const int64_t pairs = std::min<int64_t>(kPairs, end - i0);
    for (int64_t p = 0; p < pairs; ++p) {
      dequantize_row(w, i0 + p, panel.data() + p * cols);
      dequantize_row(w, inter + i0 + p, panel.data() + (kPairs + p) * cols);
    }
    for (int64_t t0 = 0; t0 < tokens; t0 += kTile)
      tile(panel.data(), cols, xt, ldx, t0, std::min<int64_t>(kTile, tokens - t0), pairs, y, i0, inter);
  }
}

// accuracy_level 4: gate and up rows [begin, end) as int8 dot products, then SwiGLU.
void int8_rows(const Int8Activations& a, const Weights& w, int64_t begin, int64_t end, float* y) {
  const int64_t inter = w.rows / 2, n = end - begin;
  std::vector<int64_t> rows(2 * n);  // gate rows, then the matching up rows
  for (int64_t i = 0; i < n; ++i) rows[i] = begin + i, rows[n + i] = inter + begin + i;
  thread_local std::vector<float> out;  // [tokens, 2n]; kept per thread, as a fresh one faults its pages in
  out.resize(a.tokens * 2 * n);
  int8_dot_rows(a, w, rows.data(), 2 * n, out.data(), 2 * n);
  for (int64_t t = 0; t < a.tokens; ++t) {
    const float* o = out.data() + t * 2 * n;  // [gate n, up n]
    float* yt = y + t * inter + begin;
    int64_t i = 0;
    for (; i + W <= n; i += W) simd::store(yt + i, simd::mul(simd::silu(simd::load(o + i)), simd::load(o + n + i)));
    for (; i < n; ++i) yt[i] = simd::silu_scalar(o[i]) * o[n + i];
  }
}

}  // namespace

void quant_swiglu(const float* x, int64_t tokens, const Weights& w, float* y, int accuracy_level,
                  const Parallel& par) {
  const int64_t inter = w.rows / 2, cols = w.cols, nb = w.blocks();
  if (accuracy_level == 4) {
    const Int8Activations a(x, tokens, w, int8_blocked(tokens), par);
    std::vector<float> scales;
    const Weights wa = int8_weights(a, w, scales);
    parallel_ranges(
        par, inter, int8_grain(a, w, inter, 2), [&](int64_t begin, int64_t end) { int8_rows(a, wa, begin, end, y); },
        int8_align(a));
    return;
  }
  std::vector<float> xp(tokens * cols);  // [tokens, cols] in the int4 chunk order
  for (int64_t t = 0; t < tokens; ++t) permute_x(x + t * cols, w, xp.data() + t * cols);
  if (tokens < kDecode) {
    std::vector<float> xsum(tokens * nb, 0.0f);  // [tokens, blocks]
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t k = 0; k < cols; ++k) xsum[t * nb + k / w.block_size] += x[t * cols + k];
    // Each pair of rows costs ~cols MACs per token: 64 pairs per task keeps the scheduling cost small.
    parallel_ranges(par, inter, 64, [&](int64_t begin, int64_t end) {
      decode_rows(xp.data(), xsum.data(), tokens, w, begin, end, y, inter);
    });
    return;
  }
  const int64_t ldx = (tokens + kTile - 1) / kTile * kTile;
  std::vector<float> xt(cols * ldx, 0.0f);  // [cols, ldx]: x transposed, tokens padded to whole tiles
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t k = 0; k < cols; ++k) xt[k * ldx + t] = xp[t * cols + k];
  // A task dequantizes its rows once for all tokens: give it several panels so that pays off.
  parallel_ranges(par, inter, 4 * kPairs, [&](int64_t begin, int64_t end) {
    prefill_rows(xt.data(), ldx, tokens, w, begin, end, y, inter);
  });
}

}  // namespace qwd
