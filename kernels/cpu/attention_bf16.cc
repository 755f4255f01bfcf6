#include "attention_bf16.h"

#if defined(QWD_BF16_PRODUCTS)
#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#define QWD_BF16_TARGET target("avx512f,avx512bw,avx512vl,avx512bf16")

namespace qwd::bf16 {

namespace {

constexpr int kW = 16;

// Words of a and b's bf16 (each [16] floats) interleaved: lane i = (a[i], b[i]).
__attribute__((QWD_BF16_TARGET)) inline __m512i interleave(__m512 a, __m512 b) {
  // cvtne2ps gives [a 0..15 | b 0..15] as 32 halves; the permutation puts b[i] beside a[i].
  alignas(64) static const uint16_t order[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i halves = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));
  return _mm512_permutexvar_epi16(_mm512_load_si512(order), halves);
}

// A finite float's bf16, rounded to nearest even.
inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u + 0x7FFF + ((u >> 16) & 1)) >> 16;
}

template <int kI, int kV>
__attribute__((QWD_BF16_TARGET)) void product_step(const uint32_t* a, int64_t ai, int64_t ak, const uint32_t* b,
                                                    int64_t K, int64_t rows, float* c, bool accumulate) {
  __m512 acc[kI][kV];
  for (int i = 0; i < kI; ++i)
    for (int v = 0; v < kV; ++v) acc[i][v] = accumulate ? _mm512_loadu_ps(c + i * rows + v * kW) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512bh bk[kV];
    for (int v = 0; v < kV; ++v) bk[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + k * rows + v * kW));
    for (int i = 0; i < kI; ++i) {
      const __m512bh ak_i = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[i * ai + k * ak])));
      for (int v = 0; v < kV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ak_i, bk[v]);
    }
  }
  for (int i = 0; i < kI; ++i)
    for (int v = 0; v < kV; ++v) _mm512_storeu_ps(c + i * rows + v * kW, acc[i][v]);
}

template <int kI>
__attribute__((QWD_BF16_TARGET)) void product_rows(const uint32_t* a, int64_t ai, int64_t ak, const uint32_t* b,
                                                    int64_t K, int64_t rows, float* c, bool accumulate) {
  int64_t r = 0;
  for (; r + 4 * kW <= rows; r += 4 * kW) product_step<kI, 4>(a, ai, ak, b + r, K, rows, c + r, accumulate);
  // The last 1-3 vectors in one pass, so each broadcast of a still feeds all of them (Qwen2.5-0.5B's
  // 112 rows: 4 + 3, not 4 + 1 + 1 + 1).
  switch ((rows - r) / kW) {
    case 3: return product_step<kI, 3>(a, ai, ak, b + r, K, rows, c + r, accumulate);
    case 2: return product_step<kI, 2>(a, ai, ak, b + r, K, rows, c + r, accumulate);
    case 1: return product_step<kI, 1>(a, ai, ak, b + r, K, rows, c + r, accumulate);
    default: return;
  }
}

}  // namespace

bool usable() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1);  // CPUID.(7,1):EAX[5] AVX512-BF16
  }();
  return ok;
}

__attribute__((QWD_BF16_TARGET)) void pair_rows(const float* x, int64_t n, int64_t rows, uint32_t* pairs) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t m = 0; 2 * m < n; ++m)
    for (int64_t r = 0; r < rows; r += kW) {
      const __m512 first = _mm512_loadu_ps(x + 2 * m * rows + r);
      const __m512 second = 2 * m + 1 < n ? _mm512_loadu_ps(x + (2 * m + 1) * rows + r) : zero;
      _mm512_storeu_si512(pairs + m * rows + r, interleave(first, second));
    }
}

__attribute__((QWD_BF16_TARGET)) void pair_neighbours(const float* x, int64_t n, uint32_t* pairs) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW)  // 32 floats in order are 16 pairs of neighbours
    _mm512_storeu_si512(pairs + i / 2,
                        reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + kW), _mm512_loadu_ps(x + i))));
  for (; i < n; i += 2) pairs[i / 2] = bits(x[i]) | bits(x[i + 1]) << 16;
}

__attribute__((QWD_BF16_TARGET)) void product(const uint32_t* a, int64_t ai, int64_t ak, int64_t I, const uint32_t* b,
                                               int64_t K, int64_t rows, float* c, bool accumulate) {
  int64_t i = 0;
  for (; i + 4 <= I; i += 4) product_rows<4>(a + i * ai, ai, ak, b, K, rows, c + i * rows, accumulate);
  for (; i < I; ++i) product_rows<1>(a + i * ai, ai, ak, b, K, rows, c + i * rows, accumulate);
}

}  // namespace qwd::bf16

#else

namespace qwd::bf16 {

bool usable() { return false; }
void pair_rows(const float*, int64_t, int64_t, uint32_t*) {}
void pair_neighbours(const float*, int64_t, uint32_t*) {}
void product(const uint32_t*, int64_t, int64_t, int64_t, const uint32_t*, int64_t, int64_t, float*, bool) {}

}  // namespace qwd::bf16

#endif
