// AMX tiles in plain C++, so amx.cc's tile path can be checked on CPUs without them. Only the test driver
// kernel_test_amx_emulated builds amx.cc with QWD_AMX_EMULATE, which includes this header after <immintrin.h>:
// the six tile intrinsics amx.cc calls then run here, on per-thread registers as the hardware's are, while
// the rest of amx.cc (the AVX512-BF16 weight conversion) stays native. TDPBF16PS follows the SDM's
// pseudocode: per C row m, pair k and column n, two float32 products of bf16 added to the sum in that
// order; a product of two bf16 is exact in float32, so product-then-add is the instruction's FMA.
// Unlike the instruction, denormals are not flushed (the checked values have none).
#pragma once

#include <cstdint>
#include <cstring>

namespace qwd::amx::emulated {

constexpr int kTiles = 8, kRows = 16, kRowBytes = 64;

struct Registers {
  uint8_t rows[kTiles] = {};
  uint16_t colsb[kTiles] = {};
  uint8_t data[kTiles][kRows][kRowBytes] = {};
};

inline Registers& registers() {
  thread_local Registers r;
  return r;
}

// ldtilecfg's 64-byte operand: palette, start row, 14 reserved bytes, colsb[16] (uint16), rows[16].
inline void load_config(const void* config) {
  const auto* c = static_cast<const uint8_t*>(config);
  Registers& r = registers();
  for (int i = 0; i < kTiles; ++i) {
    std::memcpy(&r.colsb[i], c + 16 + 2 * i, 2);
    r.rows[i] = c[48 + i];
  }
}

inline void release() { registers() = Registers{}; }

inline void zero(int t) { std::memset(registers().data[t], 0, sizeof registers().data[t]); }

inline void load(int t, const void* base, int64_t stride) {
  Registers& r = registers();
  zero(t);
  for (int i = 0; i < r.rows[t]; ++i)
    std::memcpy(r.data[t][i], static_cast<const uint8_t*>(base) + i * stride, r.colsb[t]);
}

inline void store(int t, void* base, int64_t stride) {
  const Registers& r = registers();
  for (int i = 0; i < r.rows[t]; ++i) std::memcpy(static_cast<uint8_t*>(base) + i * stride, r.data[t][i], r.colsb[t]);
}

inline float bf16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// c[m][n] += a[m][2k] * b[k][2n] + a[m][2k+1] * b[k][2n+1]: a [rows(c), colsb(a)/4 pairs], b [pairs, colsb(c)/4 pairs].
inline void dpbf16ps(int c, int a, int b) {
  Registers& r = registers();
  for (int m = 0; m < r.rows[c]; ++m)
    for (int k = 0; k < r.colsb[a] / 4; ++k)
      for (int n = 0; n < r.colsb[c] / 4; ++n) {
        const uint8_t* x = r.data[a][m] + 4 * k;
        const uint8_t* y = r.data[b][k] + 4 * n;
        float sum;
        std::memcpy(&sum, r.data[c][m] + 4 * n, 4);
        sum += bf16_at(x) * bf16_at(y);
        sum += bf16_at(x + 2) * bf16_at(y + 2);
        std::memcpy(r.data[c][m] + 4 * n, &sum, 4);
      }
}

}  // namespace qwd::amx::emulated

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps
#define _tile_loadconfig(config) ::qwd::amx::emulated::load_config(config)
#define _tile_release() ::qwd::amx::emulated::release()
#define _tile_zero(t) ::qwd::amx::emulated::zero(t)
#define _tile_loadd(t, base, stride) ::qwd::amx::emulated::load(t, base, stride)
#define _tile_stored(t, base, stride) ::qwd::amx::emulated::store(t, base, stride)
#define _tile_dpbf16ps(c, a, b) ::qwd::amx::emulated::dpbf16ps(c, a, b)
