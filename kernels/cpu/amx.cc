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
void codes_of(const Weights& w, int64_t row, uint8_t* out) {
  const int64_t nb = w.blocks(), bb = w.block_bytes();
  const uint8_t* q = w.packed + row * nb * bb;  // [nb, bb]
  if (w.bits == 8) {
    std::memcpy(out, q, nb * bb);
    return;
  }
  for (int64_t i = 0; i < nb * bb; ++i) {  // low nibble first: byte i holds columns 2i and 2i + 1
    out[2 * i] = q[i] & 0xF;
    out[2 * i + 1] = q[i] >> 4;
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

__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq"))) void dot_rows(
    const Int8Activations& a, const Weights& w, const int64_t* rows, int64_t count, float* out) {
  const int64_t nb = w.blocks(), bs = w.block_size, steps = a.steps, groups = a.groups;
  const int64_t kc = std::min<int64_t>(bs, 64), chunks = bs / kc;  // a tile row holds 64 bytes of K
  const int64_t tiles = (a.tokens + kTile - 1) / kTile, row_bytes = nb * bs;
  // B tiles: [tiles, nb, steps, 16 tokens, 4] int8, and per (tile, block) the 16 tokens' init and scale;
  // tokens past the last are zero (their sums are never stored).
  std::vector<int8_t> xq(tiles * nb * steps * 64, 0);
  std::vector<int32_t> xinit(tiles * nb * kTile, 0);
  std::vector<float> xscale(tiles * nb * kTile, 0.0f);
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t tile = t / kTile, lane = t % kTile;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t at = (tile * nb + b) * kTile + lane;
      for (int64_t k = 0; k < steps; ++k)
        std::memcpy(&xq[(((tile * nb + b) * steps + k) * kTile + lane) * 4],
                    a.blocked_q_of(t) + blocked_index(b / 16, k, b % 16, 0, steps), 4);
      xinit[at] = a.blocked_init[t * groups * 16 + b];
      xscale[at] = a.blocked_scale[t * groups * 16 + b];
    }
  }
  std::vector<uint8_t> panel(kTile * row_bytes);  // A tiles: 16 weight rows of codes, [16, nb * bs]
  TileConfig config;
  config.rows[0] = kTile, config.colsb[0] = 64;  // C: 16 rows x 16 tokens of int32
  config.rows[1] = kTile, config.colsb[1] = static_cast<uint16_t>(kc);  // A: 16 rows x kc codes
  config.rows[2] = static_cast<uint8_t>(kc / 4), config.colsb[2] = 64;  // B: kc/4 rows x 16 tokens x 4
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
        const int64_t at = (tile * nb + b) * kTile;
        _tile_loadd(0, &xinit[at], 0);  // stride 0: every row starts at -zero * sum(q) of its token
        for (int64_t c = 0; c < chunks; ++c) {
          _tile_loadd(1, panel.data() + b * bs + c * kc, row_bytes);
          _tile_loadd(2, &xq[((tile * nb + b) * steps + c * kc / 4) * 64], 64);
          _tile_dpbusd(0, 1, 2);
        }
        _tile_stored(0, sums, 64);
        const __m512 xs = _mm512_loadu_ps(&xscale[at]);
        for (int64_t r = 0; r < kTile; ++r) {
          const __m512 s = _mm512_cvtepi32_ps(_mm512_load_si512(sums + r * kTile));
          acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(s, xs), _mm512_set1_ps(w.scales[pick[r] * nb + b]), acc[r]);
        }
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
