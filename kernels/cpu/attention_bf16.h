// Attention's two block products (attention.cc) on bf16 operands with float32 sums: AVX512-BF16's
// vdpbf16ps takes two products per lane and instruction, twice float32 FMA's rate, the way OpenVINO and
// bf16 GPUs run attention. Operands are bf16 pairs in uint32 words, the first value in the low half.
// Compiled in AVX-512 builds and used where the CPU has AVX512-BF16 (usable(), checked at run time); in
// other builds usable() is false and nothing else is called (as amx.h's tiles).
#pragma once

#include <cstdint>

#include "simd.h"

#if defined(QWD_SIMD_AVX512) && defined(__GNUC__)
#define QWD_BF16_PRODUCTS 1
#endif

namespace qwd::bf16 {

bool usable();

// x [n, rows] floats → pairs [ceil(n / 2), rows]: word (m, r) = (x[2m, r], x[2m + 1, r]), rounded to
// nearest even, zero past n.
void pair_rows(const float* x, int64_t n, int64_t rows, uint32_t* pairs);

// x [n] floats → [n / 2] pairs of neighbours (n even).
void pair_neighbours(const float* x, int64_t n, uint32_t* pairs);

// c [I, rows] (+)= A . b with A[i, k] = a[i * ai + k * ak] ([I, K] pairs) and b [K, rows] pairs: the
// float32 c[i, r] gains both products of every pair k. rows: a multiple of 16.
void product(const uint32_t* a, int64_t ai, int64_t ak, int64_t I, const uint32_t* b, int64_t K, int64_t rows,
             float* c, bool accumulate);

}  // namespace qwd::bf16
