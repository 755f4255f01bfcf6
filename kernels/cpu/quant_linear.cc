#include "quant_linear.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "amx.h"
#include "int8_dot.h"
#include "linear.h"

namespace qwd {

namespace {

using namespace int8;

// Decode: 4 rows share each activation load. Prefill: rows x tokens tiles, each unpacked weight step
// feeding kPrefillTokens dot products while it sits in registers (2 x 8 accumulators fit AVX-512's 32
// registers, 2 x 4 the 16 of AVX2 and the scalar/NEON paths); batches of 2-7 tokens the same way.
constexpr int kDecodeRows = 4;
static_assert(kDecodeRows == Weights::kRowTile, "decode reads one row tile at a time");
constexpr int kPrefillRows = 2;
#if defined(QWD_INT8_AVX512)
constexpr int kPrefillTokens = 8;
constexpr int kBatchRows = 4;  // x 4 tokens: 16 accumulators
#else
constexpr int kPrefillTokens = 4;
constexpr int kBatchRows = 2;
#endif

// S: the scales' element type, float or uint16_t (float16, widened as each step gathers them).
template <int kBits, int R, int T, class S>
void tile(const Int8Activations& a, const Weights& w, const S* scales, const ScaleGather& gather, const int64_t* rows,
          int64_t t0, float* out /* [T, R] */) {
  const int64_t nb = w.blocks(), row_bytes = w.row_bytes();
  constexpr int64_t kStepBytes = kCols * kBits / 8;
  static_assert(Weights::kTileChunk % kStepBytes == 0, "a step must not straddle a row tile's chunk");
  const int64_t full = row_bytes / kStepBytes, shift = __builtin_ctzll(w.block_size);
  // Prefetch distance: the next R rows' bytes (row order), or 4 KB on in the tile's one stream.
  const int64_t ahead = w.row_tile == 1 ? R * row_bytes : 4096;
  Weights::RowBytes wr[R];
  const S* sr[R];
  for (int r = 0; r < R; ++r) {
    wr[r] = w.row_at(rows[r]);
    sr[r] = scales + rows[r] * nb;  // [nb]
  }
  FVec acc[R][T];
  for (auto& row : acc)
    for (FVec& v : row) v = zero();
  auto step = [&](int64_t s, auto partial) {
    const int64_t pos = s * kCols, b0 = pos >> shift;
    WVec wv[R];
    FVec sv[R];
    for (int r = 0; r < R; ++r) {
      // Decode streams the weights once, and the hardware prefetcher alone leaves the core waiting.
      const uint8_t* at = wr[r].at(s * kStepBytes);
      __builtin_prefetch(at + ahead, 0, 0);
      __builtin_prefetch(sr[r] + b0 + R * nb);
      wv[r] = load_w<kBits, decltype(partial)::value>(at, row_bytes - s * kStepBytes);
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

#if defined(QWD_INT8_AVX512)
// Prefill with 16 blocks side by side (Int8Activations::blocked_q): lane j of a vpdpbusd accumulates
// block j of the group, so a block's scales are applied once (3 float ops per 16 blocks) instead of once
// per 64 columns. Weight rows are rearranged to match into `panel` once per row tile and then serve every
// token. 4 rows x 3 tokens: 12 int32 and 12 float accumulators, 4 weight vectors and one activation
// vector, 29 of the 32 registers (4x4 with float accumulators in L1, and wider tiles, measured slower).
constexpr int kBlockedRows = 4, kBlockedTokens = 3;

// Row `row` of w as unsigned codes in the blocked layout: [groups, steps, 16, 4] bytes. Each block's codes
// in column order, then 4 of them (one lane's bytes) per step.
void blocked_row(const Weights& w, int64_t row, int64_t groups, int64_t steps, uint8_t* out) {
  if (w.bits == 4) {
    // Step k of a block is its 16-bit word k spread to 4 codes: one gather of dword d from the group's
    // 16 blocks gives steps 2d and 2d+1.
    const int64_t nb = w.blocks(), bb = w.block_bytes();
    const Weights::RowBytes bytes = w.row_at(row);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    // [b0 b1 b2 b3] per dword → [b0 b0 b1 b1] and [b2 b2 b3 b3]: then low nibble in the low byte, high
    // nibble in the high byte of each 16-bit half.
    const __m512i first = _mm512_set4_epi32(0x0D0D0C0C, 0x09090808, 0x05050404, 0x01010000);
    const __m512i second = _mm512_set4_epi32(0x0F0F0E0E, 0x0B0B0A0A, 0x07070606, 0x03030202);
    const __m512i low = _mm512_set1_epi16(0x000F), high = _mm512_set1_epi16(0x0F00);
    auto spread = [&](__m512i v) {
      return _mm512_or_si512(_mm512_and_si512(v, low), _mm512_and_si512(_mm512_srli_epi16(v, 4), high));
    };
    for (int64_t g = 0; g < groups; ++g) {
      const __mmask16 valid = static_cast<__mmask16>((1U << std::min<int64_t>(16, nb - g * 16)) - 1);
      const __m512i block_at = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(g * 16)),
                                                  _mm512_set1_epi32(bb));  // byte offsets in the row
      for (int64_t d = 0; d < bb / 4; ++d) {
        const __m512i at = _mm512_add_epi32(block_at, _mm512_set1_epi32(4 * d));
        const __m512i index = _mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_srli_epi32(at, 6), _mm512_set1_epi32(bytes.stride)),
            _mm512_and_si512(at, _mm512_set1_epi32(Weights::kTileChunk - 1)));  // RowBytes::at, per lane
        const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, index, bytes.base, 1);
        _mm512_storeu_si512(out + (g * steps + 2 * d) * 64, spread(_mm512_shuffle_epi8(v, first)));
        _mm512_storeu_si512(out + (g * steps + 2 * d + 1) * 64, spread(_mm512_shuffle_epi8(v, second)));
      }
    }
    return;
  }
  const int64_t nb = w.blocks(), bb = w.block_bytes();  // 8-bit codes: a block's bytes are its codes
  std::fill(out, out + groups * steps * 64, uint8_t{0});
  const Weights::RowBytes bytes = w.row_at(row);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t k = 0; k < steps; ++k)
      std::memcpy(out + blocked_index(b / 16, k, b % 16, 0, steps), bytes.at(b * bb) + 4 * k, 4);
}

// kSteps: a.steps known at compile time (block sizes 16-128), so the step loop unrolls and the
// accumulators stay in place; 0 for any other block size.
template <int R, int T, int kSteps>
void blocked_tile(const Int8Activations& a, const Weights& w, const uint8_t* panel, const int64_t* rows, int64_t t0,
                  float* out /* [T, R] */) {
  const int64_t nb = w.blocks(), groups = a.groups, steps = kSteps ? kSteps : a.steps, row_bytes = groups * steps * 64;
  __m512 facc[R][T];
  for (auto& row : facc)
    for (__m512& v : row) v = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i acc[R][T];
    for (int t = 0; t < T; ++t) {
      const __m512i init = _mm512_loadu_si512(a.blocked_init.data() + (t0 + t) * groups * 16 + g * 16);
      for (int r = 0; r < R; ++r) acc[r][t] = init;
    }
#pragma GCC unroll 32
    for (int64_t k = 0; k < steps; ++k) {
      // Each vector loaded once into a register: left alone, the compiler folds the loads into every
      // vpdpbusd that reads them, and the loads, not the multiplies, set the pace (1.5x slower here).
      __m512i wv[R];
      for (int r = 0; r < R; ++r) {
        wv[r] = _mm512_loadu_si512(panel + r * row_bytes + (g * steps + k) * 64);
        asm("" : "+v"(wv[r]));
      }
      for (int t = 0; t < T; ++t) {
        __m512i xv = _mm512_loadu_si512(a.blocked_q_of(t0 + t) + (g * steps + k) * 64);
        asm("" : "+v"(xv));
        for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv[r], xv);
      }
    }
    const __mmask16 valid = static_cast<__mmask16>((1U << std::min<int64_t>(16, nb - g * 16)) - 1);
    __m512 ws[R];
    for (int r = 0; r < R; ++r) {
      const int64_t at = rows[r] * nb + g * 16;
      ws[r] = w.scales_f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(valid, w.scales_f16 + at))
                           : _mm512_maskz_loadu_ps(valid, w.scales + at);
    }
    for (int t = 0; t < T; ++t) {
      const __m512 xs = _mm512_loadu_ps(a.blocked_scale.data() + (t0 + t) * groups * 16 + g * 16);
      for (int r = 0; r < R; ++r)
        facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(ws[r], xs), facc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t * R + r] = _mm512_reduce_add_ps(facc[r][t]);
}

// Rows in panels of ~16 KB (L1), each token tile's activations (4 KB) read from L2 once per panel and
// then reused by all its rows: streaming every token past every row tile would be bound by L2.
template <int kSteps>
void blocked_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  constexpr int R = kBlockedRows, T = kBlockedTokens;
  const int64_t row_bytes = a.groups * a.steps * 64;
  const int64_t panel_rows = std::max<int64_t>(1, (16 << 10) / row_bytes / R) * R;
  std::vector<uint8_t> panel(panel_rows * row_bytes);  // [panel_rows, groups, steps, 16, 4]
  std::vector<int64_t> pick(panel_rows);
  float part[T * R];
  for (int64_t p0 = 0; p0 < count; p0 += panel_rows) {
    const int64_t n = std::min(panel_rows, count - p0), used = (n + R - 1) / R * R;
    for (int64_t r = 0; r < used; ++r) {
      pick[r] = rows[p0 + std::min(r, n - 1)];  // a short panel repeats its last row
      blocked_row(w, pick[r], a.groups, a.steps, panel.data() + r * row_bytes);
    }
    int64_t t = 0;
    auto tiles = [&](auto tokens) {  // token tiles of tokens.value from t on, while they fit
      constexpr int U = decltype(tokens)::value;
      for (; t + U <= a.tokens; t += U)
        for (int64_t r0 = 0; r0 < used; r0 += R) {
          blocked_tile<R, U, kSteps>(a, w, panel.data() + r0 * row_bytes, pick.data() + r0, t, part);
          for (int u = 0; u < U; ++u)
            for (int64_t r = 0; r < R && r0 + r < n; ++r) out[(t + u) * count + p0 + r0 + r] = part[u * R + r];
        }
    };
    tiles(std::integral_constant<int, T>{});
    tiles(std::integral_constant<int, 2>{});
    tiles(std::integral_constant<int, 1>{});
  }
}

void blocked_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  switch (a.steps) {
    case 4: return blocked_rows<4>(a, w, rows, count, out);
    case 8: return blocked_rows<8>(a, w, rows, count, out);
    case 16: return blocked_rows<16>(a, w, rows, count, out);
    case 32: return blocked_rows<32>(a, w, rows, count, out);
    default: return blocked_rows<0>(a, w, rows, count, out);
  }
}
#endif

// Explicit zero points: the tiles computed sum((q - zero) * x); add (zero - zp) * sum(x) per block.
float zero_point_correction(const Int8Activations& a, const Weights& w, int64_t row, int64_t t) {
  const int64_t nb = w.blocks();
  const float* bsum = a.block_sum.data() + t * nb;
  float c = 0.0f;
  for (int64_t b = 0; b < nb; ++b) c += w.scale(row, b) * static_cast<float>(a.zero - w.zero_point(row, b)) * bsum[b];
  return c;
}

template <int kBits, int R, int T, class S>
void rows_tokens(const Int8Activations& a, const Weights& w, const S* scales, const ScaleGather& gather,
                 const int64_t* rows, int64_t count, int64_t t0, float* out) {
  float part[T * R];
  for (int64_t i0 = 0; i0 < count; i0 += R) {
    const int64_t n = std::min<int64_t>(R, count - i0);
    int64_t pick[R];
    for (int r = 0; r < R; ++r) pick[r] = rows[i0 + std::min<int64_t>(r, n - 1)];  // a short group repeats its last row
    tile<kBits, R, T>(a, w, scales, gather, pick, t0, part);
    for (int t = 0; t < T; ++t)
      for (int64_t r = 0; r < n; ++r) out[(t0 + t) * count + i0 + r] = part[t * R + r];
  }
}

template <int kBits, class S>
void dot_rows(const Int8Activations& a, const Weights& w, const S* scales, const int64_t* rows, int64_t count,
              float* out) {
  const ScaleGather gather(lane_blocks(kBits, w.block_size));
  int64_t t = 0;
  for (; t + kPrefillTokens <= a.tokens; t += kPrefillTokens)
    rows_tokens<kBits, kPrefillRows, kPrefillTokens>(a, w, scales, gather, rows, count, t, out);
  // A few sequences decoding together (batch 2-7): each pass over the weights serves up to 4 tokens.
  for (; t + 4 <= a.tokens; t += 4) rows_tokens<kBits, kBatchRows, 4>(a, w, scales, gather, rows, count, t, out);
  for (; t + 2 <= a.tokens; t += 2) rows_tokens<kBits, kBatchRows, 2>(a, w, scales, gather, rows, count, t, out);
  for (; t < a.tokens; ++t) rows_tokens<kBits, kDecodeRows, 1>(a, w, scales, gather, rows, count, t, out);
}

template <int kBits>
void dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  if (w.scales_f16)
    dot_rows<kBits>(a, w, w.scales_f16, rows, count, out);
  else
    dot_rows<kBits>(a, w, w.scales, rows, count, out);
}

}  // namespace

const char* int8_isa() {
#if defined(QWD_INT8_AVX512)
  if (amx::usable()) return "avx512-vnni, amx bf16 prefill";
#endif
  return kIsa;
}

int64_t int8_grain(const Weights& w, int64_t rows, int64_t rows_per_output) {
  constexpr int64_t kTaskBytes = 256 << 10;
  const int64_t row_bytes = rows_per_output * w.blocks() * (w.block_bytes() + w.scale_bytes());  // codes and scales
  const int64_t by_bytes = std::max<int64_t>(kDecodeRows, kTaskBytes / std::max<int64_t>(row_bytes, 1));
  return std::max<int64_t>(1, std::min(by_bytes, (rows + 7) / 8));
}

bool int8_blocked([[maybe_unused]] int64_t tokens) {
#if defined(QWD_INT8_AVX512)
  return tokens >= kBlockedMinTokens;
#else
  return false;  // no blocked path on this ISA
#endif
}

Weights int8_weights(const Int8Activations& a, const Weights& w, std::vector<float>& scratch) {
  return a.amx_x.empty() ? w : w.with_float_scales(scratch);
}

void int8_dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
#if defined(QWD_INT8_AVX512)
  if (!a.amx_x.empty()) {  // the tiles apply w's zero points themselves
    amx::dot_rows(a, w, rows, count, out);
    return;
  }
  if (!a.blocked_q.empty())
    blocked_rows(a, w, rows, count, out);
  else
#endif
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
  const Int8Activations a(x, tokens, w, int8_blocked(tokens), par);
  std::vector<float> scales;
  const Weights wa = int8_weights(a, w, scales);
  parallel_ranges(par, w.rows, grain, [&](int64_t begin, int64_t end) {
    const int64_t count = end - begin;
    std::vector<int64_t> rows(count);
    for (int64_t i = 0; i < count; ++i) rows[i] = begin + i;
    thread_local std::vector<float> out;  // [tokens, count]; kept per thread, as a fresh one faults its pages in
    out.resize(tokens * count);
    int8_dot_rows(a, wa, rows.data(), count, out.data());
    for (int64_t t = 0; t < tokens; ++t) {
      float* yt = y + t * w.rows + begin;
      std::memcpy(yt, out.data() + t * count, count * sizeof(float));
      if (bias)
        for (int64_t i = 0; i < count; ++i) yt[i] += bias[begin + i];
    }
  }, Weights::kRowTile);
}

}  // namespace qwd
