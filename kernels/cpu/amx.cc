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
#endif

namespace qwd::amx {

#if defined(QWD_AMX)

namespace {

constexpr int64_t kTile = 16;  // weight rows and tokens per tile

struct alignas(64) TileConfig {  // ldtilecfg's 64-byte memory operand, palette 1
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

bool cpu_has_amx_int8() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ((d >> 24) & 1) && ((d >> 25) & 1);  // AMX-TILE, AMX-INT8
}

// Linux hands a process the 8 KB of tile registers only when asked (ARCH_REQ_XCOMP_PERM for XTILEDATA);
// without it the first tile instruction faults.
bool tile_state_granted() {
  constexpr long kRequestPermission = 0x1023, kTileData = 18;
  return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
}

// Weight row `row` as codes in column order, each block's bytes padded to block_size: [blocks * block_size].
// Runs once per 16 rows and call, so it must cost little next to the tiles: 16 bytes at a time.
__attribute__((target("avx2"))) void codes_of(const Weights& w, int64_t row, uint8_t* out) {
  const int64_t bytes = w.blocks() * w.block_bytes();  // a multiple of 8 (block_size >= 16)
  const uint8_t* q = w.packed + row * bytes;
  if (w.bits == 8) {
    std::memcpy(out, q, bytes);
    return;
  }
  const __m128i low = _mm_set1_epi8(0x0F);
  int64_t i = 0;
  for (; i + 16 <= bytes; i += 16) {  // low nibble first: byte i holds columns 2i and 2i + 1
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i));
    const __m128i lo = _mm_and_si128(v, low), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), _mm_unpacklo_epi8(lo, hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i + 16), _mm_unpackhi_epi8(lo, hi));
  }
  for (; i < bytes; ++i) {
    out[2 * i] = q[i] & 0xF;
    out[2 * i + 1] = q[i] >> 4;
  }
}

#define QWD_AMX_TARGET target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq")

// acc[r] += (sums[r] + init) * xscale * (scale of row pick[r], block b), for token tile and block `at`
// (tile * blocks + b): one block's int32 sums [16 rows, 16 tokens] made floats. init is the tokens'
// -zero * sum(q), which the tiles leave out.
__attribute__((QWD_AMX_TARGET, always_inline)) inline void scale_block(__m512* acc, const int32_t* sums,
                                                                       const Int8Activations& a, int64_t at,
                                                                       const Weights& w, const int64_t* pick,
                                                                       int64_t b) {
  const __m512 xs = _mm512_loadu_ps(&a.amx_scale[at * kTile]);
  const __m512i init = _mm512_loadu_si512(&a.amx_init[at * kTile]);
  for (int64_t r = 0; r < kTile; ++r) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_load_si512(sums + r * kTile), init));
    acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(v, xs), _mm512_set1_ps(w.scales[pick[r] * w.blocks() + b]), acc[r]);
  }
}

}  // namespace

bool usable() {
  static const bool ok = [] {
    const char* asked = std::getenv("QWDEPLOY_AMX");
    if (asked != nullptr && std::strcmp(asked, "0") == 0) return false;
    return cpu_has_amx_int8() && tile_state_granted();
  }();
  return ok;
}

__attribute__((QWD_AMX_TARGET)) void dot_rows(
    const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  const int64_t nb = w.blocks(), bs = w.block_size, steps = a.steps;
  const int64_t kc = std::min<int64_t>(bs, 64), chunks = bs / kc;  // a tile row holds 64 bytes of K
  const int64_t tiles = (a.tokens + kTile - 1) / kTile, row_bytes = nb * bs;
  thread_local std::vector<uint8_t> panel;  // A tiles: 16 weight rows of codes, [16, nb * bs]; kept per thread
  panel.resize(kTile * row_bytes);
  TileConfig config;
  config.rows[0] = kTile, config.colsb[0] = 64;                                 // C: 16 rows x 16 tokens, int32
  config.rows[1] = kTile, config.colsb[1] = static_cast<uint16_t>(kc);          // A: 16 rows x kc codes
  config.rows[2] = static_cast<uint8_t>(kc / 4), config.colsb[2] = 64;          // B: kc/4 steps x 16 tokens x 4
  _tile_loadconfig(&config);
  alignas(64) int32_t sums[kTile * kTile];  // [rows, tokens]
  alignas(64) float lanes[kTile];
  int64_t pick[kTile];
  for (int64_t r0 = 0; r0 < count; r0 += kTile) {
    const int64_t n = std::min(kTile, count - r0);
    for (int64_t r = 0; r < kTile; ++r) {
      pick[r] = rows[r0 + std::min(r, n - 1)];  // a short tile repeats its last row
      codes_of(w, pick[r], panel.data() + r * row_bytes);
    }
    for (int64_t tile = 0; tile < tiles; ++tile) {
      __m512 acc[kTile];  // [rows] x 16 tokens
      for (__m512& v : acc) v = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        _tile_zero(0);
        for (int64_t c = 0; c < chunks; ++c) {
          _tile_loadd(1, panel.data() + b * bs + c * kc, row_bytes);
          _tile_loadd(2, &a.amx_q[amx_index(tile * kTile, b, c * kc / 4, 0, nb, steps)], 64);
          _tile_dpbusd(0, 1, 2);
        }
        _tile_stored(0, sums, 64);
        scale_block(acc, sums, a, tile * nb + b, w, pick, b);
      }
      const int64_t valid = std::min(kTile, a.tokens - tile * kTile);
      for (int64_t r = 0; r < n; ++r) {
        _mm512_store_ps(lanes, acc[r]);
        for (int64_t i = 0; i < valid; ++i) out[(tile * kTile + i) * count + r0 + r] = lanes[i];
      }
    }
  }
  _tile_release();
}

#else

bool usable() { return false; }

void dot_rows(const Int8Activations&, const Weights&, const int64_t*, int64_t, float*) {}

#endif

}  // namespace qwd::amx
