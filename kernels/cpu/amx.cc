#include "amx.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define QWD_AMX 1
#if defined(QWD_AMX_EMULATE)
#include "amx_emulation.h"
#endif
#endif

namespace qwd::amx {

namespace {

// float32 → bf16, rounded to nearest even (the activations are finite).
inline uint32_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u + 0x7FFF + ((u >> 16) & 1)) >> 16;
}

}  // namespace

void pack_token(const float* xt, int64_t cols, int bits, int64_t t, int64_t pairs, uint32_t* amx_x) {
  uint32_t* out = amx_x + (t / 16) * pairs * 16 + t % 16;  // pair k of token t: out[k * 16]
  auto at = [&](int64_t p) {
    const int64_t c = column_of(p, bits, kAmxGroup);
    return c < cols ? bf16_bits(xt[c]) : 0U;
  };
  for (int64_t k = 0; k < pairs; ++k) out[k * 16] = at(2 * k) | at(2 * k + 1) << 16;
}

#if defined(QWD_AMX)

namespace {

constexpr int64_t kTile = 16;  // weight rows and tokens per tile; a tile row is 32 bf16 of K
static_assert(kPassRows == 2 * kTile, "a pass is two row tiles");

struct alignas(64) TileConfig {  // ldtilecfg's 64-byte memory operand, palette 1
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

bool cpu_has_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 22) & 1) && ((d >> 24) & 1);  // AMX-BF16, -TILE
}

bool cpu_has_avx512_bf16() {  // the weights' conversion
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1);
}

// Linux hands a process the 8 KB of tile registers only when asked (ARCH_REQ_XCOMP_PERM for XTILEDATA);
// without it the first tile instruction faults.
bool tile_state_granted() {
  constexpr long kRequestPermission = 0x1023, kTileData = 18;
  return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
}

#define QWD_AMX_TARGET target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")

// Positions [p0, p0 + n) of rows[0..count) of w dequantized to bf16, in the activations' position order
// (int8_act.h: per 32 int4 columns the even ones, then the odd ones), zeros past the last block:
// out[count, n]. p0 and n are multiples of 32. 16 bytes at a time; with int4 blocks of 16 columns those
// bytes hold two blocks, 8 lanes each.
__attribute__((QWD_AMX_TARGET)) void bf16_rows(const Weights& w, const int64_t* rows, int64_t count, int64_t p0,
                                               int64_t n, uint16_t* out) {
  const int64_t nb = w.blocks(), bb = w.block_bytes(), bytes = nb * bb;
  const int64_t begin = p0 * w.bits / 8, end = std::min(bytes, (p0 + n) * w.bits / 8);
  const int shift = __builtin_ctzll(bb);  // block sizes are powers of 2
  const bool two_blocks = bb < 16;          // int4 blocks of 16 columns: 16 bytes hold two, 8 lanes each
  const __m512 implicit_zero = _mm512_set1_ps(static_cast<float>(1 << (w.bits - 1)));
  for (int64_t r = 0; r < count; ++r) {
    const int64_t row = rows[r];
    const Weights::RowBytes q = w.row_at(row);
    const float* s = w.scales + row * nb;
    uint16_t* o = out + r * n;
    int64_t at = -1;  // the step's first block, whose scale and zero are loaded
    __m512 scale = _mm512_setzero_ps(), zero = implicit_zero;
    for (int64_t i = begin; i < end; i += 16) {
      const __mmask16 valid = end - i >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1U << (end - i)) - 1);
      if ((i >> shift) != at) {
        const int64_t b0 = at = i >> shift;
        if (two_blocks) {
          const int64_t b1 = std::min(b0 + 1, nb - 1);
          scale = _mm512_mask_broadcastss_ps(_mm512_set1_ps(s[b0]), 0xFF00, _mm_load_ss(s + b1));
          if (w.zero_points)
            zero = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(static_cast<float>(w.zero_point(row, b0))),
                                        _mm512_set1_ps(static_cast<float>(w.zero_point(row, b1))));
        } else {
          scale = _mm512_set1_ps(s[b0]);
          if (w.zero_points) zero = _mm512_set1_ps(static_cast<float>(w.zero_point(row, b0)));
        }
      }
      const __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, q.at(i)));
      if (w.bits == 4) {  // low nibbles: the group's even columns, positions 0..15; high nibbles: 16..31
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xF)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
        const __m512 flo = _mm512_maskz_mul_ps(valid, _mm512_sub_ps(lo, zero), scale);
        const __m512 fhi = _mm512_maskz_mul_ps(valid, _mm512_sub_ps(hi, zero), scale);
        _mm512_storeu_si512(o, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(fhi, flo)));
        o += 32;
      } else {
        const __m512 f = _mm512_maskz_mul_ps(valid, _mm512_sub_ps(_mm512_cvtepi32_ps(v), zero), scale);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(f)));
        o += 16;
      }
    }
    std::fill(o, out + (r + 1) * n, uint16_t{0});
  }
}

}  // namespace

bool usable() {
  static const bool ok = [] {
    const char* asked = std::getenv("QWDEPLOY_AMX");
    if (asked != nullptr && std::strcmp(asked, "0") == 0) return false;
#if defined(QWD_AMX_EMULATE)
    return cpu_has_avx512_bf16();
#else
    return cpu_has_amx_bf16() && cpu_has_avx512_bf16() && tile_state_granted();
#endif
  }();
  return ok;
}

// 32 weight rows x 32 tokens at a time: four float32 C tiles (tmm0-3) fed by two weight tiles (tmm4-5) and
// two activation tiles (tmm6-7) per 32 positions. K goes in slices whose 32 dequantized weight rows
// (16 KB) stay in L1 while every token pair passes; the C tiles are parked in `sums` between slices.
__attribute__((QWD_AMX_TARGET)) void dot_rows(
    const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out, int64_t ld) {
  constexpr int64_t kSlice = 256;  // positions per K slice: 32 rows x 256 bf16 = 16 KB
  const int64_t pairs = a.amx_pairs, kp = 2 * pairs;
  const int64_t tiles = (a.tokens + kTile - 1) / kTile, tile_pairs = (tiles + 1) / 2;
  thread_local std::vector<uint16_t> panel;  // A tiles: 32 weight rows of one slice, [32, width]
  thread_local std::vector<float> sums;      // C tiles of every token pair: [tile_pairs, 4, 16 rows, 16 tokens]
  panel.resize(kPassRows * kSlice);
  sums.resize(tile_pairs * 4 * kTile * kTile);
  TileConfig config;
  for (int i = 0; i < 8; ++i) config.rows[i] = kTile, config.colsb[i] = 64;
  _tile_loadconfig(&config);
  int64_t pick[kPassRows];
  const uint16_t* x = reinterpret_cast<const uint16_t*>(a.amx_x.data());  // [tiles, pairs, 16 tokens, 2]
  for (int64_t r0 = 0; r0 < count; r0 += kPassRows) {
    const int64_t n = std::min(kPassRows, count - r0);
    const bool two_rows = n > kTile;
    for (int64_t r = 0; r < kPassRows; ++r) pick[r] = rows[r0 + std::min(r, n - 1)];  // a short tile repeats its last row
    for (int64_t p0 = 0; p0 < kp; p0 += kSlice) {
      const int64_t width = std::min(kSlice, kp - p0), chunks = width / 32;
      bf16_rows(w, pick, (two_rows ? 2 : 1) * kTile, p0, width, panel.data());
      const uint16_t* a0 = panel.data();
      const uint16_t* a1 = panel.data() + kTile * width;
      for (int64_t tp = 0; tp < tile_pairs; ++tp) {
        const bool two_tokens = 2 * tp + 1 < tiles;
        const uint16_t* b0 = x + (2 * tp * pairs + p0 / 2) * 32;  // B: pair p0/2 + 16k of token tile 2tp
        const uint16_t* b1 = b0 + pairs * 32;
        float* c = sums.data() + tp * 4 * kTile * kTile;
        if (p0 == 0) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, c, 64);
          _tile_loadd(1, c + 256, 64);
          _tile_loadd(2, c + 512, 64);
          _tile_loadd(3, c + 768, 64);
        }
        for (int64_t k = 0; k < chunks; ++k) {
          _tile_loadd(4, a0 + 32 * k, width * 2);
          _tile_loadd(6, b0 + k * 16 * 32, 64);
          _tile_dpbf16ps(0, 4, 6);
          if (two_tokens) {
            _tile_loadd(7, b1 + k * 16 * 32, 64);
            _tile_dpbf16ps(1, 4, 7);
          }
          if (two_rows) {
            _tile_loadd(5, a1 + 32 * k, width * 2);
            _tile_dpbf16ps(2, 5, 6);
            if (two_tokens) _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, c, 64);
        _tile_stored(1, c + 256, 64);
        _tile_stored(2, c + 512, 64);
        _tile_stored(3, c + 768, 64);
      }
    }
    for (int64_t tp = 0; tp < tile_pairs; ++tp)
      for (int64_t ct = 0; ct < 4; ++ct) {  // C tile ct: row tile ct / 2, token tile 2tp + ct % 2
        const int64_t rt = ct / 2, tile = 2 * tp + ct % 2;
        const int64_t valid_rows = std::min(kTile, n - rt * kTile), valid = std::min(kTile, a.tokens - tile * kTile);
        const float* c = sums.data() + (tp * 4 + ct) * kTile * kTile;  // [rows, tokens]
        for (int64_t i = 0; i < valid; ++i)
          for (int64_t r = 0; r < valid_rows; ++r) out[(tile * kTile + i) * ld + r0 + rt * kTile + r] = c[r * kTile + i];
      }
  }
  _tile_release();
}

#else

bool usable() { return false; }

void dot_rows(const Int8Activations&, const Weights&, const int64_t*, int64_t, float*, int64_t) {}

#endif

}  // namespace qwd::amx
