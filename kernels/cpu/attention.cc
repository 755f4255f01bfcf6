#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "attention_bf16.h"
#include "qk_norm_rotary.h"
#include "simd.h"

namespace qwd {

namespace {

using simd::Vec;
constexpr int kW = simd::kWidth;
// Keys per block: 128 rather than 64 halves the per-block work (softmax bookkeeping, the outputs' loads and
// stores around each value product): one Qwen3 layer (bench/kernels/attention.cc' shapes, interleaved) 1.02x
// at 1,024 tokens on two threads, 1.07x on one, Qwen2.5's 1.06x, a decode step after 1,024 tokens 1.14x.
constexpr int64_t kKeys = 128;
constexpr int64_t kTokens = 8;  // query tokens per task at least, each with every q head of one kv head
constexpr int64_t kRows = 4 * kW;  // rows per task at least: the products' broadcasts each feed four vectors
constexpr int64_t kChunk = 16;  // new keys and values written to the cache, then paired, at a time (even)

// Query tokens per task: from kTokens up, the first whose rows (tokens x G heads) fill whole vectors, at
// least kRows of them (Qwen2.5-0.5B's G = 7: 16 tokens, 112 rows, where 8 would pad 56 rows to 64;
// Qwen3-0.6B's G = 2: 32 tokens, 64 rows, where 8 gave one vector and a broadcast per multiply-add).
int64_t task_tokens(int64_t G) {
  for (int64_t t = kTokens; t <= 8 * kTokens; ++t)
    if (t * G % kW == 0 && t * G >= kRows) return t;
  return kTokens;
}

// y = x * scale.
void scaled(const float* x, int64_t n, float scale, float* y) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) simd::store(y + i, simd::mul(simd::load(x + i), simd::set1(scale)));
  for (; i < n; ++i) y[i] = x[i] * scale;
}

// Asks for the cache lines of [p, p + bytes) ahead of their use.
void prefetch(const void* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(static_cast<const char*>(p) + b);
}

// inv [n] = 1 / RMS of each head (head(r): dim floats) as qk_norm_rotary.cc normalizes a head, or 1s
// without a norm weight. All before any row's pass: the rows' reductions then overlap instead of each
// stalling its own row, and the rows kAhead on come from memory meanwhile (rows of a packed QKV tensor lie
// pages apart, out of the hardware prefetchers' reach: a 1,024-token Qwen3 layer 5% faster on one thread).
template <class Head>
const float* inv_rms_rows(Head head, int64_t n, int64_t dim, const float* weight, float eps, std::vector<float>& inv) {
  constexpr int64_t kAhead = 8;
  inv.assign(n, 1.0f);
  if (weight)
    for (int64_t r = 0; r < n; ++r) {
      if (r + kAhead < n) prefetch(head(r + kAhead), dim * static_cast<int64_t>(sizeof(float)));
      inv[r] = head_inv_rms(head(r), dim, eps);
    }
  return inv.data();
}

// y = rotate_half(x') at one position, times scale, where x' is x RMS-normalized with weight (inv: its
// 1/RMS), or x itself without weight; without cos, x' scaled.
void prepare(const float* x, const float* weight, float inv, const float* cos, const float* sin, int64_t dim,
             float scale, float* y) {
  auto vec = [&](int64_t i) {  // [W] of x'
    return weight ? simd::mul(simd::mul(simd::load(x + i), simd::set1(inv)), simd::load(weight + i)) : simd::load(x + i);
  };
  auto one = [&](int64_t i) { return weight ? x[i] * inv * weight[i] : x[i]; };
  const Vec s = simd::set1(scale);
  int64_t i = 0;
  if (cos == nullptr) {
    for (; i + kW <= dim; i += kW) simd::store(y + i, simd::mul(vec(i), s));
    for (; i < dim; ++i) y[i] = one(i) * scale;
    return;
  }
  const int64_t half = dim / 2;
  if constexpr (kW > 1)
    for (; i + kW <= half; i += kW) {
      const Vec a = vec(i), b = vec(half + i);  // [W] first half, [W] second half
      const Vec c = simd::load(cos + i), sn = simd::load(sin + i);
      simd::store(y + i, simd::mul(simd::sub(simd::mul(a, c), simd::mul(b, sn)), s));
      simd::store(y + half + i, simd::mul(simd::fma(a, sn, simd::mul(b, c)), s));
    }
  for (; i < half; ++i) {
    const float a = one(i), b = one(half + i);
    y[i] = (a * cos[i] - b * sin[i]) * scale;
    y[half + i] = (b * cos[i] + a * sin[i]) * scale;
  }
}

// Queries and outputs are held transposed, [dim, rows] with rows a multiple of kW, so both products are
// one micro-kernel of broadcasts against vectors over rows: no key transposition, and the softmax runs on
// whole vectors.
//   scores: st [n, rows] = keys [n, dim] . qt [dim, rows]         (a = keys,   i = key, k = dim)
//   values: ot [dim, rows] += values [n, dim]^T . pt [n, rows]    (a = values, i = dim, k = key)

// c[i, :] (+)= sum_k a[i * ai + k * ak] * b[k, :] for kI rows of c, over kV row vectors: b [K, rows], c [kI, rows];
// b float or float16 (a decode step's values, read from the cache).
template <int kI, int kV, class B>
void product_step(const float* a, int64_t ai, int64_t ak, const B* b, int64_t K, int64_t rows, float* c,
                  bool accumulate) {
  Vec acc[kI][kV];
  for (int i = 0; i < kI; ++i)
    for (int v = 0; v < kV; ++v) acc[i][v] = accumulate ? simd::load(c + i * rows + v * kW) : simd::set1(0.0f);
  for (int64_t k = 0; k < K; ++k) {
    Vec bk[kV];
    for (int v = 0; v < kV; ++v) bk[v] = simd::load(b + k * rows + v * kW);
    for (int i = 0; i < kI; ++i) {
      const Vec ak_i = simd::set1(a[i * ai + k * ak]);
      for (int v = 0; v < kV; ++v) acc[i][v] = simd::fma(ak_i, bk[v], acc[i][v]);
    }
  }
  for (int i = 0; i < kI; ++i)
    for (int v = 0; v < kV; ++v) simd::store(c + i * rows + v * kW, acc[i][v]);
}

template <int kI, class B>
void product_rows(const float* a, int64_t ai, int64_t ak, const B* b, int64_t K, int64_t rows, float* c,
                  bool accumulate) {
  int64_t r = 0;
  for (; r + 4 * kW <= rows; r += 4 * kW) product_step<kI, 4>(a, ai, ak, b + r, K, rows, c + r, accumulate);
  switch ((rows - r) / kW) {  // the last 1-3 vectors in one pass, as attention_bf16.cc
    case 3: return product_step<kI, 3>(a, ai, ak, b + r, K, rows, c + r, accumulate);
    case 2: return product_step<kI, 2>(a, ai, ak, b + r, K, rows, c + r, accumulate);
    case 1: return product_step<kI, 1>(a, ai, ak, b + r, K, rows, c + r, accumulate);
    default: return;
  }
}

// c [I, rows] (+)= A . b with A[i, k] = a[i * ai + k * ak] ([I, K]) and b [K, rows].
template <class B>
void product(const float* a, int64_t ai, int64_t ak, int64_t I, const B* b, int64_t K, int64_t rows, float* c,
             bool accumulate) {
  int64_t i = 0;
  for (; i + 4 <= I; i += 4) product_rows<4>(a + i * ai, ai, ak, b, K, rows, c + i * rows, accumulate);
  for (; i < I; ++i) product_rows<1>(a + i * ai, ai, ak, b, K, rows, c + i * rows, accumulate);
}

// st [n, rows] scores → exp(score - new max) per row; the row's running max and sum follow, and what it
// accumulated so far (ot [dim, rows]) is rescaled to the new max, unless this is the first block (nothing yet)
// or no row of the vector found a new max (a correction of exactly 1, as most blocks after the first few).
void softmax_block(float* st, int64_t n, int64_t rows, float* max, float* sum, float* ot, int64_t dim, bool first) {
  for (int64_t r = 0; r < rows; r += kW) {
    const Vec old = simd::load(max + r);
    Vec m = old;
    for (int64_t j = 0; j < n; ++j) m = simd::max(m, simd::load(st + j * rows + r));
    const Vec corr = simd::exp(simd::sub(old, m));  // ~0 on the first block (max = -inf)
    Vec s = simd::mul(simd::load(sum + r), corr);
    for (int64_t j = 0; j < n; ++j) {
      const Vec e = simd::exp(simd::sub(simd::load(st + j * rows + r), m));
      simd::store(st + j * rows + r, e);
      s = simd::add(s, e);
    }
    simd::store(max + r, m);
    simd::store(sum + r, s);
    if (!first && !simd::all_equal(old, m))
      for (int64_t d = 0; d < dim; ++d) simd::store(ot + d * rows + r, simd::mul(simd::load(ot + d * rows + r), corr));
  }
}

struct Scratch {
  std::vector<float> qt, ot, st, max, sum, row;
  std::vector<float> inv;  // each row's 1/RMS (inv_rms_rows)
  std::vector<float> keys, values;  // a float16 cache's block of keys and values, widened
  std::vector<uint32_t> q2, p2;  // bf16 products: qt and st as pairs of rows
};

inline float as_float(float x) { return x; }
inline float as_float(uint16_t h) { return half_to_float(h); }

// x [n] as floats: x itself, or a float16 cache's widened into scratch.
const float* as_floats(const float* x, int64_t, std::vector<float>&) { return x; }
const float* as_floats(const uint16_t* x, int64_t n, std::vector<float>& scratch) {
  scratch.resize(n);
  halves_to_floats(x, n, scratch.data());
  return scratch.data();
}

// y [n] = x in the cache's element type.
void put(const float* x, int64_t n, float* y) { std::copy(x, x + n, y); }
void put(const float* x, int64_t n, uint16_t* y) { floats_to_halves(x, n, y); }

// dst [cols, ldt] = src [n, cols] transposed as floats, src's rows `stride` elements apart; dst's columns
// n .. ldt are zeros.
template <class T>
void transpose(const T* src, int64_t n, int64_t cols, int64_t stride, int64_t ldt, float* dst) {
#if defined(QWD_SIMD_AVX512)
  if (cols % 16 == 0 && ldt % 16 == 0) {
    for (int64_t j0 = 0; j0 < ldt; j0 += 16)
      for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        __m512i r[16];  // 16 rows' 16 columns, then 16 columns' 16 rows
        for (int i = 0; i < 16; ++i)
          r[i] = j0 + i < n ? _mm512_castps_si512(simd::load(src + (j0 + i) * stride + c0)) : _mm512_setzero_si512();
        simd::transpose16(r);
        for (int i = 0; i < 16; ++i) _mm512_storeu_si512(dst + (c0 + i) * ldt + j0, r[i]);
      }
    return;
  }
#endif
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t j = 0; j < ldt; ++j) dst[c * ldt + j] = j < n ? as_float(src[j * stride + c]) : 0.0f;
}

// The first `cols` columns of x [n, ld] (ld a multiple of the vector width), column r times scale[r]
// written as the row out(r) [n].
template <class Out>
void columns_to_rows(const float* x, int64_t n, int64_t ld, int64_t cols, const float* scale, Out out) {
#if defined(QWD_SIMD_AVX512)
  if (n % 16 == 0) {
    for (int64_t c0 = 0; c0 < cols; c0 += 16)
      for (int64_t j0 = 0; j0 < n; j0 += 16) {
        __m512i r[16];  // x's rows j0.., then its columns c0..
        for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(simd::load(x + (j0 + i) * ld + c0));
        simd::transpose16(r);
        for (int64_t i = 0; i < std::min<int64_t>(16, cols - c0); ++i)
          simd::store(out(c0 + i) + j0, simd::mul(_mm512_castsi512_ps(r[i]), simd::set1(scale[c0 + i])));
      }
    return;
  }
#endif
  for (int64_t r = 0; r < cols; ++r) {
    float* row = out(r);
    for (int64_t j = 0; j < n; ++j) row[j] = x[j * ld + r] * scale[r];
  }
}

#if defined(QWD_SIMD_AVX512)
// Decode: q heads per kv head up to which scores go key by key, measured faster for 2 (Qwen3: 95 -> 70 us
// after 1,024 tokens), the same for 4, slower for 7 (Qwen2.5: 27 -> 32 us) than transposed keys.
constexpr int64_t kDotHeads = 2;

// st [G, lanes] = q [G, D] . keys [n, D]^T with each key's dot product over D in a vector, reduced 16 keys at
// a time: no transposed copy of the keys. Lanes past n are left for the caller.
template <class C>
void scores_by_key(const float* q, int64_t G, int64_t D, const C* K, int64_t n, int64_t lanes, float* st) {
  for (int64_t g = 0; g < G; ++g)
    for (int64_t j0 = 0; j0 < lanes; j0 += 16) {
      const int keys = static_cast<int>(std::min<int64_t>(16, n - j0));
      __m512 acc[16];  // key i's products
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
      for (int64_t c = 0; c < D; c += 16) {
        const __m512 qc = _mm512_loadu_ps(q + g * D + c);
        const C* k = K + j0 * D + c;
        auto add = [&](int i) { acc[i] = simd::fma(qc, simd::load(k + i * D), acc[i]); };
        if (keys == 16) {  // a fixed count, so the accumulators stay in registers
          for (int i = 0; i < 16; ++i) add(i);
        } else {
          for (int i = 0; i < keys; ++i) add(i);
        }
      }
      _mm512_storeu_ps(st + g * lanes + j0, simd::reduce16(acc, simd::add));
    }
}
#endif

// One new token (decode): a task's rows are its G query heads, too few to fill vectors across rows (a
// Qwen3 task has 2, padded to 16), so scores run with keys across the vector (a block of keys transposed,
// or for G <= kDotHeads each key's dot product reduced 16 at a time) and values with head_dim across it,
// no padded rows, a float16 cache widened as it is read. q [G, D] rotated and scaled; K, V [keys, D]; out [G, D], normalized. D is a multiple of the
// vector width.
template <class C>
void decode_heads(const float* q, int64_t G, int64_t D, const C* K, const C* V, int64_t keys, Scratch& w,
                  float* out) {
  w.qt.resize(D * kKeys);  // [D, kKeys] a block of keys, transposed
  w.st.resize(G * kKeys);  // [G, kKeys] scores, then exp(score - max)
  w.ot.assign(G * D, 0.0f);  // [G, D] unnormalized outputs
  w.max.assign(G, -std::numeric_limits<float>::infinity());
  w.sum.assign(G, 0.0f);
  for (int64_t j0 = 0; j0 < keys; j0 += kKeys) {
    const int64_t n = std::min(kKeys, keys - j0), lanes = (n + kW - 1) / kW * kW;
    if (j0 + kKeys < keys) {  // the next block's keys and values come from memory while this one computes
      const int64_t next = std::min(kKeys, keys - j0 - kKeys) * D;  // elements
      prefetch(K + (j0 + kKeys) * D, next * static_cast<int64_t>(sizeof(C)));
      prefetch(V + (j0 + kKeys) * D, next * static_cast<int64_t>(sizeof(C)));
    }
#if defined(QWD_SIMD_AVX512)
    if (G <= kDotHeads) {
      scores_by_key(q, G, D, K + j0 * D, n, lanes, w.st.data());  // scores [G, lanes]
    } else
#endif
    {
      transpose(K + j0 * D, n, D, D, lanes, w.qt.data());  // [D, lanes]
      product(q, D, 1, G, w.qt.data(), D, lanes, w.st.data(), false);  // scores [G, lanes]
    }
    for (int64_t g = 0; g < G; ++g) {
      float* s = w.st.data() + g * lanes;
      std::fill(s + n, s + lanes, -std::numeric_limits<float>::infinity());
      Vec block_max = simd::load(s);
      for (int64_t j = kW; j < lanes; j += kW) block_max = simd::max(block_max, simd::load(s + j));
      const float m = std::max(w.max[g], simd::hmax(block_max));
      const float corr = std::exp(w.max[g] - m);  // 0 on the first block (max = -inf)
      for (int64_t j = 0; j < lanes; j += kW)
        simd::store(s + j, simd::exp(simd::sub(simd::load(s + j), simd::set1(m))));
      std::fill(s + n, s + lanes, 0.0f);  // exactly: the vector exp stops at e^-87
      Vec sum = simd::set1(0.0f);
      for (int64_t j = 0; j < lanes; j += kW) sum = simd::add(sum, simd::load(s + j));
      w.max[g] = m;
      w.sum[g] = w.sum[g] * corr + simd::hsum(sum);
      if (j0 > 0)
        for (int64_t d = 0; d < D; d += kW)
          simd::store(w.ot.data() + g * D + d, simd::mul(simd::load(w.ot.data() + g * D + d), simd::set1(corr)));
    }
    product(w.st.data(), lanes, 1, G, V + j0 * D, n, D, w.ot.data(), true);  // out += p . values
  }
  for (int64_t g = 0; g < G; ++g) scaled(w.ot.data() + g * D, D, 1.0f / w.sum[g], out + g * D);
}

bool bf16_products(const AttentionProblem& p) {
  return p.bf16_products && p.seq >= kTokens && p.head_dim % kW == 0 && bf16::usable();
}

// attention() on a cache of element type C: float, or uint16_t for IEEE float16.
template <class C>
void attend(const AttentionProblem& p, const Parallel& par) {
  const int64_t B = p.batch, S = p.seq, H = p.num_heads, KV = p.kv_num_heads, D = p.head_dim;
  const int64_t T = p.present_len, half = D / 2, G = H / KV;
  const bool first_prompt = S == p.total_len;
  std::vector<int64_t> pasts(B);  // each row's tokens before this call
  for (int64_t b = 0; b < B; ++b) {
    const int64_t total = static_cast<int64_t>(p.seqlens_k[b]) + 1;
    const int64_t past = first_prompt ? 0 : total - S;
    if (total < 1 || total > T || past < 0 || past > p.past_len)
      throw std::invalid_argument("seqlens_k[" + std::to_string(b) + "] = " + std::to_string(total - 1) + " does not fit " +
                                  std::to_string(S) + " new tokens after a past of " + std::to_string(p.past_len) +
                                  " in a total of " + std::to_string(T));
    pasts[b] = past;
  }
  for (int64_t b = 0; b < B && p.cos; ++b)
    if (pasts[b] + S > p.max_positions)
      throw std::out_of_range("position " + std::to_string(pasts[b] + S - 1) + " outside the cos/sin cache of " +
                              std::to_string(p.max_positions) + " positions");
  // Token s of row b sits at position pasts[b] + s.
  auto cos_at = [&](int64_t b, int64_t s) { return p.cos ? p.cos + (pasts[b] + s) * half : nullptr; };
  auto sin_at = [&](int64_t b, int64_t s) { return p.cos ? p.sin + (pasts[b] + s) * half : nullptr; };

  // present = past, the new keys (rotated) and values, zeros: one task per (batch, kv head). A shared buffer
  // already holds the past, and what lies after the new tokens is never read. With bf16 products the task
  // also pairs its keys (neighbouring dims) and values (neighbouring keys) once for every query task.
  const C* past_k = static_cast<const C*>(p.past_k);
  const C* past_v = static_cast<const C*>(p.past_v);
  C* present_k = static_cast<C*>(p.present_k);
  C* present_v = static_cast<C*>(p.present_v);
  const bool shared = present_k == past_k && present_v == past_v;
  const bool bf16 = bf16_products(p);
  const int64_t keys = *std::max_element(pasts.begin(), pasts.end()) + S, key_pairs = (keys + 1) / 2;
  std::vector<uint32_t> k2(bf16 ? B * KV * keys * half : 0);       // [B*KV, keys, D/2]
  std::vector<uint32_t> v2(bf16 ? B * KV * key_pairs * D : 0);     // [B*KV, keys/2, D]
  // One new token into a shared buffer is a few hundred floats a task: cheaper here than waking the pool.
  (S == 1 && shared ? serial() : par).run(B * KV, [&](int64_t task) {
    const int64_t b = task / KV, h = task % KV, past = pasts[b];
    C* pk = present_k + task * T * D;  // [T, D]
    C* pv = present_v + task * T * D;
    if (!shared) {
      std::copy(past_k + task * p.past_len * D, past_k + (task * p.past_len + past) * D, pk);
      std::copy(past_v + task * p.past_len * D, past_v + (task * p.past_len + past) * D, pv);
      std::fill(pk + (past + S) * D, pk + T * D, C{0});
      std::fill(pv + (past + S) * D, pv + T * D, C{0});
    }
    thread_local Scratch w;
    w.row.resize(D);
    auto key_in = [&](int64_t s) { return p.k + (b * S + s) * p.kv_stride + h * D; };  // [D]
    auto value_in = [&](int64_t s) { return p.v + (b * S + s) * p.kv_stride + h * D; };
    uint32_t* K2 = k2.data() + task * keys * half;
    uint32_t* V2 = v2.data() + task * key_pairs * D;
    // Values pair with their neighbouring key: a past of odd length leaves its last value to pair with the
    // first new one.
    const int64_t paired = bf16 ? past / 2 * 2 : past;
    if (bf16 && paired > 0) {
      bf16::pair_neighbours(as_floats(pk, paired * D, w.keys), paired * D, K2);
      bf16::pair_rows(as_floats(pv, paired * D, w.values), paired, D, V2);
    }
    for (int64_t c0 = paired; c0 < past + S; c0 += kChunk) {  // cache rows c0 .. c1, new from past on
      const int64_t c1 = std::min(c0 + kChunk, past + S), s0 = std::max(c0, past) - past;
      const float* inv = inv_rms_rows([&](int64_t i) { return key_in(s0 + i); }, c1 - past - s0, D, p.k_norm,
                                      p.epsilon, w.inv);
      for (int64_t s = s0; s < c1 - past; ++s) {
        if (s + kChunk < S) {  // the next chunk's rows come from memory meanwhile
          prefetch(key_in(s + kChunk), D * static_cast<int64_t>(sizeof(float)));
          prefetch(value_in(s + kChunk), D * static_cast<int64_t>(sizeof(float)));
        }
        C* key = pk + (past + s) * D;
        if constexpr (std::is_same_v<C, float>) {
          prepare(key_in(s), p.k_norm, inv[s - s0], cos_at(b, s), sin_at(b, s), D, 1.0f, key);
        } else {  // rotated in float32, then rounded
          prepare(key_in(s), p.k_norm, inv[s - s0], cos_at(b, s), sin_at(b, s), D, 1.0f, w.row.data());
          put(w.row.data(), D, key);
        }
        put(value_in(s), D, pv + (past + s) * D);
      }
      if (bf16) {  // paired as the cache holds them, while they are in L1
        bf16::pair_neighbours(as_floats(pk + c0 * D, (c1 - c0) * D, w.keys), (c1 - c0) * D, K2 + c0 * half);
        bf16::pair_rows(as_floats(pv + c0 * D, (c1 - c0) * D, w.values), c1 - c0, D, V2 + c0 / 2 * D);
      }
    }
  });

  // Attention: one task per (batch, kv head, block of queries), the last blocks (most keys) first.
  const float scale = p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t per_task = task_tokens(G), blocks = (S + per_task - 1) / per_task;
  par.run(B * KV * blocks, [&](int64_t task) {
    const int64_t bh = task / blocks, b = bh / KV, h = bh % KV, s0 = (blocks - 1 - task % blocks) * per_task;
    const int64_t tokens = std::min(per_task, S - s0), rows = tokens * G;  // row = token * G + head in group
    const int64_t padded = (rows + kW - 1) / kW * kW;  // padding rows: zero queries, never written out
    thread_local Scratch w;
    const C* K = present_k + bh * T * D;  // [T, D]
    const C* V = present_v + bh * T * D;
    if (S == 1 && D % kW == 0) {
      auto query = [&](int64_t g) { return p.q + b * p.q_stride + (h * G + g) * D; };  // [D]
      const float* inv = inv_rms_rows(query, G, D, p.q_norm, p.epsilon, w.inv);
      w.row.resize(G * D);  // [G, D] rotated, scaled queries
      for (int64_t g = 0; g < G; ++g)
        prepare(query(g), p.q_norm, inv[g], cos_at(b, 0), sin_at(b, 0), D, scale, w.row.data() + g * D);
      decode_heads(w.row.data(), G, D, K, V, pasts[b] + 1, w, p.out + b * H * D + h * G * D);  // out [G, D]
      return;
    }
    w.qt.resize(D * padded);        // [D, padded] rotated, scaled queries; padding rows zero
    w.ot.assign(D * padded, 0.0f);  // [D, padded] unnormalized outputs
    w.st.resize(kKeys * padded);    // [kKeys, padded] scores, then probabilities
    w.max.assign(padded, -std::numeric_limits<float>::infinity());
    w.sum.assign(padded, 0.0f);
    w.row.resize(rows * D);  // [rows, D] the queries
    auto query = [&](int64_t r) { return p.q + (b * S + s0 + r / G) * p.q_stride + (h * G + r % G) * D; };  // [D]
    const float* inv = inv_rms_rows(query, rows, D, p.q_norm, p.epsilon, w.inv);
    for (int64_t r = 0; r < rows; ++r)
      prepare(query(r), p.q_norm, inv[r], cos_at(b, s0 + r / G), sin_at(b, s0 + r / G), D, scale, w.row.data() + r * D);
    transpose(w.row.data(), rows, D, D, padded, w.qt.data());
    const int64_t first = pasts[b] + s0;  // key of the task's first token: every row sees keys 0 ..= first
    const int64_t end = first + tokens;   // keys any row sees
    const uint32_t* K2 = k2.data() + bh * keys * half;  // [keys, D/2]
    const uint32_t* V2 = v2.data() + bh * key_pairs * D;  // [keys/2, D]
    if (bf16) {
      w.q2.resize(half * padded);
      w.p2.resize(kKeys / 2 * padded);
      bf16::pair_rows(w.qt.data(), D, padded, w.q2.data());
    }
    for (int64_t j0 = 0; j0 < end; j0 += kKeys) {
      const int64_t n = std::min(kKeys, end - j0);
      // Causal: key j is hidden from the rows of tokens before it, a prefix of rows (padding rows see all).
      auto hide = [&](float value) {
        for (int64_t j = std::max<int64_t>(0, first + 1 - j0); j < n; ++j)
          std::fill_n(w.st.data() + j * padded, (j0 + j - first) * G, value);
      };
      if (bf16)
        bf16::product(K2 + j0 * half, half, 1, n, w.q2.data(), half, padded, w.st.data(), false);
      else  // scores [n, padded]
        product(as_floats(K + j0 * D, n * D, w.keys), D, 1, n, w.qt.data(), D, padded, w.st.data(), false);
      hide(-std::numeric_limits<float>::infinity());
      softmax_block(w.st.data(), n, padded, w.max.data(), w.sum.data(), w.ot.data(), D, j0 == 0);
      hide(0.0f);  // exactly: the vector exp stops at e^-87, and its products with values would be denormal
      if (bf16) {  // kKeys is even: the block's pairs of keys are pairs of the whole cache
        bf16::pair_rows(w.st.data(), n, padded, w.p2.data());
        bf16::product(V2 + j0 / 2 * D, 1, D, D, w.p2.data(), (n + 1) / 2, padded, w.ot.data(), true);
      } else {
        // ot += values^T . probabilities
        product(as_floats(V + j0 * D, n * D, w.values), 1, D, D, w.st.data(), n, padded, w.ot.data(), true);
      }
    }
    // Each row's outputs over its sum, transposed into its place in out (padding rows are never written).
    w.inv.resize(rows);
    for (int64_t r = 0; r < rows; ++r) w.inv[r] = 1.0f / w.sum[r];
    columns_to_rows(w.ot.data(), D, padded, rows, w.inv.data(),
                    [&](int64_t r) { return p.out + (b * S + s0 + r / G) * H * D + (h * G + r % G) * D; });
  });
}

}  // namespace

void packed_qkv(AttentionProblem& p, const float* qkv) {
  const int64_t q_width = p.num_heads * p.head_dim, kv_width = p.kv_num_heads * p.head_dim;
  p.q_stride = p.kv_stride = q_width + 2 * kv_width;
  p.q = qkv;
  p.k = qkv + q_width;
  p.v = qkv + q_width + kv_width;
}

void separate_qkv(AttentionProblem& p, const float* q, const float* k, const float* v) {
  p.q_stride = p.num_heads * p.head_dim;
  p.kv_stride = p.kv_num_heads * p.head_dim;
  p.q = q;
  p.k = k;
  p.v = v;
}

void attention(const AttentionProblem& p, const Parallel& par) {
  if (p.cache == CacheType::kFloat16) return attend<uint16_t>(p, par);
  attend<float>(p, par);
}

}  // namespace qwd
