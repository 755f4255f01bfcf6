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
// kFour: token_scales' shortcut for whole steps (T == 1 only).
template <int kBits, int R, int T, bool kFour, class S>
void tile(const Int8Activations& a, const Weights& w, const S* scales, const ScaleGather& gather, const int64_t* rows,
          int64_t t0, float* out /* [T, R] */) {
  const int64_t nb = w.blocks(), row_bytes = w.row_bytes();
  constexpr int64_t kCols = cols_of(kBits), kStepBytes = kCols * kBits / 8;
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
  // The tokens' codes, zero-point lanes and scales, fetched here once: reloaded from `a` in every step they
  // left the decode loop short of registers. With token_scales' shortcut its step is 81 instructions
  // instead of 104, and 20% faster on weights in cache (the shortcut alone gained 5%).
  const int8_t* xq[T];
  const int32_t* init[T];
  const float* xs[T];
  for (int t = 0; t < T; ++t) xq[t] = a.q_of(t0 + t), init[t] = a.init_of(t0 + t), xs[t] = a.scale_of(t0 + t);
  FVec acc[R][T];
  for (auto& row : acc)
    for (FVec& v : row) v = zero();
  auto step = [&](int64_t s, auto partial) {
    const int64_t pos = s * kCols, b0 = pos >> shift;
    WVecOf<kBits> wv[R];
    const S* at_scales[R];
    for (int r = 0; r < R; ++r) {
      // Decode streams the weights once, and the hardware prefetcher alone leaves the core waiting.
      const uint8_t* at = wr[r].at(s * kStepBytes);
      at_scales[r] = sr[r] + b0;
      __builtin_prefetch(at + ahead, 0, 0);
      __builtin_prefetch(at_scales[r] + R * nb);
      wv[r] = load_w<kBits, decltype(partial)::value>(at, row_bytes - s * kStepBytes);
    }
    FVec sv[R];  // T == 1: times the token's activation scales; else the weights' alone
    if constexpr (T == 1)
      token_scales<R, kFour && !decltype(partial)::value>(gather, at_scales, nb - b0, xs[0] + s * kLanes, sv);
    else
      for (int r = 0; r < R; ++r) sv[r] = gather(at_scales[r], nb - b0);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r)
        acc[r][t] = accumulate(dot<kBits>(init[t] + s * kLanes, wv[r], xq[t] + pos),
                               T == 1 ? sv[r] : scaled(sv[r], xs[t] + s * kLanes), acc[r][t]);
  };
  for (int64_t s = 0; s < full; ++s) step(s, std::false_type{});
  if (full * kStepBytes < row_bytes) step(full, std::true_type{});
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t * R + r] = hsum(acc[r][t]);
}

#if defined(QWD_INT8_AVX512)
// Prefill with rows in the lanes: lane i of a vpdpbusd accumulates row i's 4 codes of a step against the
// same 4 activation codes, broadcast (Int8Activations::blocked_q). A block's scales then apply to 16 rows
// at once, 16 outputs of a token come out of one register with no horizontal sum, and no K is padded.
// Rows are rearranged into a panel, [dwords, 2 vectors of 16 rows, 4 bytes], once per call; every token
// then reads it. The panel keeps the packed bytes: an int4 dword's low nibbles are one step (its even
// columns) and its high nibbles the next (the odd ones), two ands and a shift apart, so it is half the
// size of unpacked codes and built with a transpose alone (128 tokens of a layer 8% faster, 1,024 the
// same). 2 vectors of rows x 6 tokens: 12 int32 and 12 float accumulators, and each broadcast of a
// token's codes feeds two vpdpbusd. One vector x 12 tokens ran 12% slower on a 1,024-token layer (AMD
// EPYC family 26, 2 threads), 3 x 4 no faster than 2 x 6, 4 x 3 slower.
constexpr int kLaneRows = 16;
constexpr int kPanelVecs = 2, kPanelRows = kPanelVecs * kLaneRows;
constexpr int kSubTokens = 6;  // tokens of a token tile (kLaneTokens) per pass over the panel
static_assert(kLaneTokens % kSubTokens == 0, "passes split a token tile evenly");

// Weight scales whose exponent field lies in [kLowField, kHighField], times 2^e with |e| <= kScaleExp, keep
// it within a normal float's [1, 254]: the prefill then multiplies by adding e to the exponent bits.
constexpr int kLowField = 1 + kScaleExp, kHighField = 254 - kScaleExp;

// 16 rows of w (rows[0..16)) as vector v of a panel: packed bytes [dwords, kPanelVecs, 16, 4] and scales
// [blocks, kPanelVecs, 16] as floats. Returns whether every scale's exponent field lies within
// [kLowField, kHighField] (zero scales do not).
bool build_panel(const Weights& w, const int64_t* rows, int v, uint8_t* codes, float* scales) {
  const int64_t nb = w.blocks(), words = w.row_bytes() / 4;  // dwords per row
  Weights::RowBytes bytes[kLaneRows];
  for (int i = 0; i < kLaneRows; ++i) bytes[i] = w.row_at(rows[i]);
  // A chunk of 64 bytes (16 dwords) of every row at a time, transposed: dword d of the 16 rows.
  for (int64_t c = 0; c * 16 < words; ++c) {
    const int64_t n = std::min<int64_t>(16, words - c * 16);
    const __mmask16 valid = static_cast<__mmask16>((1U << n) - 1);
    __m512i r[kLaneRows];
    for (int i = 0; i < kLaneRows; ++i) r[i] = _mm512_maskz_loadu_epi32(valid, bytes[i].at(c * Weights::kTileChunk));
    simd::transpose16(r);
    for (int64_t d = 0; d < n; ++d) _mm512_storeu_si512(codes + ((c * 16 + d) * kPanelVecs + v) * 64, r[d]);
  }
  // Scales: 16 blocks of the 16 rows at a time (float16 ones widened), transposed the same way.
  __mmask16 in_range = 0xFFFF;
  for (int64_t b0 = 0; b0 < nb; b0 += 16) {
    const int64_t n = std::min<int64_t>(16, nb - b0);
    const __mmask16 valid = static_cast<__mmask16>((1U << n) - 1);
    __m512i r[kLaneRows];
    for (int i = 0; i < kLaneRows; ++i) {
      const int64_t at = rows[i] * nb + b0;
      r[i] = w.scales_f16 ? _mm512_castps_si512(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(valid, w.scales_f16 + at)))
                          : _mm512_maskz_loadu_epi32(valid, w.scales + at);
    }
    simd::transpose16(r);
    for (int64_t d = 0; d < n; ++d) {
      _mm512_storeu_si512(scales + ((b0 + d) * kPanelVecs + v) * kLaneRows, r[d]);
      const __m512i field = _mm512_and_si512(_mm512_srli_epi32(r[d], 23), _mm512_set1_epi32(0xFF));
      in_range = _mm512_cmpge_epi32_mask(field, _mm512_set1_epi32(kLowField)) &
                 _mm512_cmple_epi32_mask(field, _mm512_set1_epi32(kHighField)) & in_range;
    }
  }
  return in_range == 0xFFFF;
}

// Tokens [sub, sub + kSubTokens) of token tile `tile` against a panel of kBits-bit codes: out[t * ld + i]
// for the first `tokens` of them and the panel's first `rows` rows. kSteps: steps per block known at
// compile time (block sizes 16-128), so the step loop unrolls; 0 for other block sizes. kAddExp: each
// block's weight scales times its activation scale 2^e by an integer add to their exponents (int4 weights'
// activations: Int8Activations::blocked_pow2; the panel's scales within range: build_panel), the same floats
// as a multiply, which would take a turn on the pipes every vpdpbusd needs (Zen 4: a layer's GEMMs 1.07-1.10x).
template <int kBits, int kSteps, bool kAddExp>
void lane_tile(const Int8Activations& a, int64_t nb, int64_t block_steps, const uint8_t* codes, const float* scales,
               int64_t tile, int64_t sub, float* out, int64_t ld, int64_t rows, int64_t tokens) {
  constexpr int R = kPanelVecs, T = kSubTokens, L = kLaneTokens;
  constexpr int D = 8 / kBits;  // steps per panel dword
  const int64_t steps = kSteps ? kSteps : block_steps;
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const int8_t* x = a.blocked_q.data() + tile * a.blocked_steps * L * 4 + sub * 4;  // [steps, L, 4]
  const int32_t* init = a.blocked_init.data() + tile * nb * L + sub;             // [nb, L]
  const int32_t* xe = a.blocked_exp.data() + tile * nb * L + sub;               // [nb, L]
  __m512 facc[R][T];
  for (auto& row : facc)
    for (__m512& v : row) v = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i acc[R][T];
    for (int t = 0; t < T; ++t) {
      const __m512i start = _mm512_set1_epi32(init[b * L + t]);
      for (int r = 0; r < R; ++r) acc[r][t] = start;
    }
#pragma GCC unroll 32
    for (int64_t k = 0; k < steps; k += D) {
      const int64_t s = b * steps + k;
      __m512i wv[D][R];  // the dword's steps
      for (int r = 0; r < R; ++r) {
        const __m512i packed = _mm512_loadu_si512(codes + (s / D * R + r) * 64);
        if constexpr (kBits == 4) {
          wv[0][r] = _mm512_and_si512(packed, nibble);
          wv[1][r] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble);
        } else {
          wv[0][r] = packed;
          // Kept in a register: left alone, the compiler folds the load into every vpdpbusd that reads
          // it, and the loads, not the multiplies, set the pace.
          asm("" : "+v"(wv[0][r]));
        }
      }
      for (int j = 0; j < D; ++j)
        for (int t = 0; t < T; ++t) {
          int32_t four;
          std::memcpy(&four, x + ((s + j) * L + t) * 4, 4);
          const __m512i codes4 = _mm512_set1_epi32(four);
          for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv[j][r], codes4);
        }
    }
    for (int r = 0; r < R; ++r) {
      const __m512i ws = _mm512_loadu_si512(scales + (b * R + r) * kLaneRows);  // float bits
      for (int t = 0; t < T; ++t) {
        const int32_t e = xe[b * L + t];
        const __m512 s = kAddExp ? _mm512_castsi512_ps(_mm512_add_epi32(ws, _mm512_set1_epi32(e)))
                                 : _mm512_mul_ps(_mm512_castsi512_ps(ws),
                                                 _mm512_castsi512_ps(_mm512_set1_epi32(e + kExpOne)));
        facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), s, facc[r][t]);
      }
    }
  }
  // Whole loops over T: with a bound of min(T, tokens) the compiler kept facc in memory, 25% slower.
  for (int r = 0; r < R; ++r) {
    const int64_t n = std::clamp<int64_t>(rows - r * kLaneRows, 0, kLaneRows);
    const __mmask16 valid = static_cast<__mmask16>((1U << n) - 1);
    for (int t = 0; t < T; ++t)
      if (t < tokens) _mm512_mask_storeu_ps(out + t * ld + r * kLaneRows, valid, facc[r][t]);
  }
}

// Panels a task holds at once, and the activation bytes a chunk of its token tiles may take: every panel of a
// group passes over a chunk while the chunk stays in L2, instead of each panel streaming all the tokens' codes
// from L3 again (1,024 tokens: 1.25 MB for K = 1,024, more than Zen 4's L2).
constexpr int64_t kGroupPanels = 8;
constexpr int64_t kChunkBytes = 256 << 10;

template <int kBits, int kSteps>
void lane_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out,
               int64_t ld) {
  const int64_t nb = w.blocks(), block_steps = w.block_size / 4;
  const int64_t panel_codes = a.blocked_steps * kBits / 2 * kPanelRows, panel_scales = nb * kPanelRows;
  thread_local std::vector<uint8_t> codes;  // [kGroupPanels][dwords, kPanelVecs, 16, 4]
  thread_local std::vector<float> scales;   // [kGroupPanels][nb, kPanelVecs, 16]
  const int64_t group = std::min(kGroupPanels, (count + kPanelRows - 1) / kPanelRows);
  codes.resize(group * panel_codes);
  scales.resize(group * panel_scales);
  bool add_exp[kGroupPanels];
  const int64_t tiles = (a.tokens + kLaneTokens - 1) / kLaneTokens, lines = (w.row_bytes() + 63) / 64;
  const int64_t tile_bytes = a.blocked_steps * kLaneTokens * 4 + nb * kLaneTokens * 8;  // codes, init and e
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / tile_bytes);
  int64_t pick[kPanelRows], next[kPanelRows];
  const char* scale_base = w.scales_f16 ? reinterpret_cast<const char*>(w.scales_f16)
                                        : reinterpret_cast<const char*>(w.scales);
  const int64_t scale_row = nb * w.scale_bytes();
  for (int64_t g0 = 0; g0 < count; g0 += group * kPanelRows) {
    const int64_t panels = std::min(group, (count - g0 + kPanelRows - 1) / kPanelRows);
    for (int64_t t0 = 0; t0 < tiles; t0 += chunk) {
      const int64_t t1 = std::min(tiles, t0 + chunk);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t p0 = g0 + p * kPanelRows, n = std::min<int64_t>(kPanelRows, count - p0);
        uint8_t* pc = codes.data() + p * panel_codes;
        float* ps = scales.data() + p * panel_scales;
        // A panel is built as the first chunk reaches it, with the next one's rows on their way to L2
        // meanwhile (a share per tile), so its build reads cache instead of waiting on DRAM.
        int64_t per_tile = 0, row = 0, line = 0;
        if (t0 == 0) {
          for (int i = 0; i < kPanelRows; ++i) {
            pick[i] = rows[p0 + std::min<int64_t>(i, n - 1)];  // short: repeat the last
            next[i] = rows[std::min(p0 + kPanelRows + i, count - 1)];
          }
          add_exp[p] = a.blocked_pow2;
          for (int v = 0; v < kPanelVecs; ++v) add_exp[p] &= build_panel(w, pick + v * kLaneRows, v, pc, ps);
          for (int i = 0; i < kPanelRows; ++i)
            for (int64_t at = 0; at < scale_row; at += 64)
              __builtin_prefetch(scale_base + next[i] * scale_row + at, 0, 2);
          per_tile = (kPanelRows * lines + (t1 - t0) - 1) / (t1 - t0);
        }
        auto tiles_with = [&](auto add_exp) {
          for (int64_t tile = t0; tile < t1; ++tile) {
            for (int64_t i = 0; i < per_tile && row < kPanelRows; ++i) {
              __builtin_prefetch(w.row_at(next[row]).at(line * 64), 0, 2);
              if (++line == lines) line = 0, ++row;
            }
            for (int64_t sub = 0; sub < std::min(kLaneTokens, a.tokens - tile * kLaneTokens); sub += kSubTokens)
              lane_tile<kBits, kSteps, decltype(add_exp)::value>(a, nb, block_steps, pc, ps, tile, sub,
                                                                 out + (tile * kLaneTokens + sub) * ld + p0, ld, n,
                                                                 a.tokens - tile * kLaneTokens - sub);
          }
        };
        add_exp[p] ? tiles_with(std::true_type{}) : tiles_with(std::false_type{});
      }
    }
  }
}

template <int kBits>
void lane_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out,
               int64_t ld) {
  switch (w.block_size / 4) {
    case 4: return lane_rows<kBits, 4>(a, w, rows, count, out, ld);
    case 8: return lane_rows<kBits, 8>(a, w, rows, count, out, ld);
    case 16: return lane_rows<kBits, 16>(a, w, rows, count, out, ld);
    case 32: return lane_rows<kBits, 32>(a, w, rows, count, out, ld);
    default: return lane_rows<kBits, 0>(a, w, rows, count, out, ld);
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

template <int kBits, int R, int T, bool kFour = false, class S>
void rows_tokens(const Int8Activations& a, const Weights& w, const S* scales, const ScaleGather& gather,
                 const int64_t* rows, int64_t count, int64_t t0, float* out, int64_t ld) {
  float part[T * R];
  for (int64_t i0 = 0; i0 < count; i0 += R) {
    const int64_t n = std::min<int64_t>(R, count - i0);
    int64_t pick[R];
    for (int r = 0; r < R; ++r) pick[r] = rows[i0 + std::min<int64_t>(r, n - 1)];  // a short group repeats its last row
    tile<kBits, R, T, kFour>(a, w, scales, gather, pick, t0, part);
    for (int t = 0; t < T; ++t)
      for (int64_t r = 0; r < n; ++r) out[(t0 + t) * ld + i0 + r] = part[t * R + r];
  }
}

template <int kBits, class S>
void dot_rows(const Int8Activations& a, const Weights& w, const S* scales, const int64_t* rows, int64_t count,
              float* out, int64_t ld) {
  const ScaleGather gather(lane_blocks(kBits, w.block_size));
  int64_t t = 0;
  for (; t + kPrefillTokens <= a.tokens; t += kPrefillTokens)
    rows_tokens<kBits, kPrefillRows, kPrefillTokens>(a, w, scales, gather, rows, count, t, out, ld);
  // A few sequences decoding together (batch 2-7): each pass over the weights serves up to 4 tokens.
  for (; t + 4 <= a.tokens; t += 4) rows_tokens<kBits, kBatchRows, 4>(a, w, scales, gather, rows, count, t, out, ld);
  for (; t + 2 <= a.tokens; t += 2) rows_tokens<kBits, kBatchRows, 2>(a, w, scales, gather, rows, count, t, out, ld);
  for (; t < a.tokens; ++t)
    if constexpr (std::is_same_v<S, uint16_t>)
      four_blocks(gather) ? rows_tokens<kBits, kDecodeRows, 1, true>(a, w, scales, gather, rows, count, t, out, ld)
                          : rows_tokens<kBits, kDecodeRows, 1>(a, w, scales, gather, rows, count, t, out, ld);
    else
      rows_tokens<kBits, kDecodeRows, 1>(a, w, scales, gather, rows, count, t, out, ld);
}

template <int kBits>
void dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out,
              int64_t ld) {
  if (w.scales_f16)
    dot_rows<kBits>(a, w, w.scales_f16, rows, count, out, ld);
  else
    dot_rows<kBits>(a, w, w.scales, rows, count, out, ld);
}

// Rows per task when a call streams w once: long runs of contiguous bytes, because every task start costs
// the hardware prefetcher a ramp, yet at least 8 tasks.
int64_t stream_grain(const Weights& w, int64_t rows, int64_t rows_per_output) {
  constexpr int64_t kTaskBytes = 256 << 10;
  const int64_t row_bytes = rows_per_output * w.blocks() * (w.block_bytes() + w.scale_bytes());  // codes and scales
  const int64_t by_bytes = std::max<int64_t>(kDecodeRows, kTaskBytes / std::max<int64_t>(row_bytes, 1));
  return std::max<int64_t>(1, std::min(by_bytes, (rows + 7) / 8));
}

}  // namespace

const char* int8_isa() {
#if defined(QWD_INT8_AVX512)
  if (amx::usable()) return "avx512-vnni, amx bf16 prefill";
#endif
  return kIsa;
}

int64_t int8_grain(const Int8Activations& a, const Weights& w, int64_t rows, int64_t rows_per_output) {
  // Prefill: a task's work is its rows times every token, so it is cut for balance; at least 32 tasks
  // keep a thread slowed by a neighbour from leaving the others waiting at the end of the op.
  return a.tokens >= kBlockedMinTokens ? std::max<int64_t>(1, rows / 32) : stream_grain(w, rows, rows_per_output);
}

int64_t int8_align([[maybe_unused]] const Int8Activations& a) {
#if defined(QWD_INT8_AVX512)
  static_assert(kPanelRows % Weights::kRowTile == 0 && amx::kPassRows % Weights::kRowTile == 0,
                "a panel and a tile pass hold whole row tiles");
  if (!a.amx_x.empty()) return amx::kPassRows;
  if (!a.blocked_q.empty()) return kPanelRows;
#endif
  return Weights::kRowTile;
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

void int8_dot_rows(const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out,
                   int64_t ld) {
#if defined(QWD_INT8_AVX512)
  if (!a.amx_x.empty()) {  // the tiles apply w's zero points themselves
    amx::dot_rows(a, w, rows, count, out, ld);
    return;
  }
  if (!a.blocked_q.empty())
    w.bits == 8 ? lane_rows<8>(a, w, rows, count, out, ld) : lane_rows<4>(a, w, rows, count, out, ld);
  else
#endif
  if (w.bits == 8)
    dot_rows<8>(a, w, rows, count, out, ld);
  else
    dot_rows<4>(a, w, rows, count, out, ld);
  if (w.zero_points)
    for (int64_t tt = 0; tt < a.tokens; ++tt)
      for (int64_t i = 0; i < count; ++i) out[tt * ld + i] += zero_point_correction(a, w, rows[i], tt);
}

void quant_linear(const float* x, int64_t tokens, const Weights& w, const float* bias, float* y, int accuracy_level,
                  const Parallel& par) {
  if (accuracy_level != 4) {
    parallel_ranges(par, w.rows, stream_grain(w, w.rows, 1), [&](int64_t begin, int64_t end) {
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
  parallel_ranges(par, w.rows, int8_grain(a, w, w.rows), [&](int64_t begin, int64_t end) {
    const int64_t count = end - begin;
    std::vector<int64_t> rows(count);
    for (int64_t i = 0; i < count; ++i) rows[i] = begin + i;
    int8_dot_rows(a, wa, rows.data(), count, y + begin, w.rows);
    if (bias)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t i = 0; i < count; ++i) y[t * w.rows + begin + i] += bias[begin + i];
  }, int8_align(a));
}

}  // namespace qwd
