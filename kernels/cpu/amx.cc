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

// B tiles for every 16 tokens (int8_act.h's amx_*); tokens past the last are zero, and never stored.
void tile_layout(const Int8Activations& a, int64_t nb) {
  const int64_t steps = a.steps, groups = a.groups, tiles = (a.tokens + kTile - 1) / kTile;
  a.amx_q.assign(tiles * nb * steps * 64, 0);
  a.amx_init.assign(tiles * nb * kTile, 0);
  a.amx_scale.assign(tiles * nb * kTile, 0.0f);
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t tile = t / kTile, lane = t % kTile;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t at = (tile * nb + b) * kTile + lane;
      for (int64_t k = 0; k < steps; ++k)
        std::memcpy(&a.amx_q[(((tile * nb + b) * steps + k) * kTile + lane) * 4],
                    a.blocked_q_of(t) + blocked_index(b / 16, k, b % 16, 0, steps), 4);
      a.amx_init[at] = a.blocked_init[t * groups * 16 + b];
      a.amx_scale[at] = a.blocked_scale[t * groups * 16 + b];
    }
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
  std::call_once(a.amx_once, [&] { tile_layout(a, nb); });
  const std::vector<int8_t>& xq = a.amx_q;
  thread_local std::vector<uint8_t> panel;  // A tiles: 16 weight rows of codes, [16, nb * bs]; kept per thread
  panel.resize(kTile * row_bytes);
  TileConfig config;
  for (int pair = 0; pair < 2; ++pair) {  // tiles 0-2 for even blocks, 3-5 for odd ones
    config.rows[3 * pair] = kTile, config.colsb[3 * pair] = 64;  // C: 16 rows x 16 tokens of int32
    config.rows[3 * pair + 1] = kTile, config.colsb[3 * pair + 1] = static_cast<uint16_t>(kc);  // A: codes
    config.rows[3 * pair + 2] = static_cast<uint8_t>(kc / 4), config.colsb[3 * pair + 2] = 64;  // B: tokens
  }
  _tile_loadconfig(&config);
  alignas(64) int32_t sums[2][kTile * kTile];  // [even/odd block][rows, tokens]
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
      // One block's sums into tile C (from A x B); tile numbers must be literals. Both blocks of a pair are
      // multiplied before either is stored, so the second multiply overlaps the first one's latency.
#define QWD_AMX_BLOCK(C, A, B, b)                                                \
  do {                                                                           \
    _tile_zero(C);                                                               \
    for (int64_t c = 0; c < chunks; ++c) {                                       \
      _tile_loadd(A, panel.data() + (b) * bs + c * kc, row_bytes);               \
      _tile_loadd(B, &xq[((tile * nb + (b)) * steps + c * kc / 4) * 64], 64);    \
      _tile_dpbusd(C, A, B);                                                     \
    }                                                                            \
  } while (0)
      int64_t b = 0;
      for (; b + 2 <= nb; b += 2) {
        QWD_AMX_BLOCK(0, 1, 2, b);
        QWD_AMX_BLOCK(3, 4, 5, b + 1);
        _tile_stored(0, sums[0], 64);
        _tile_stored(3, sums[1], 64);
        scale_block(acc, sums[0], a, tile * nb + b, w, pick, b);
        scale_block(acc, sums[1], a, tile * nb + b + 1, w, pick, b + 1);
      }
      if (b < nb) {
        QWD_AMX_BLOCK(0, 1, 2, b);
        _tile_stored(0, sums[0], 64);
        scale_block(acc, sums[0], a, tile * nb + b, w, pick, b);
      }
#undef QWD_AMX_BLOCK
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
