// GroupQueryAttention's core (kernels/cpu/attention.cc) in llm.c's dev/ style: a plain reference, a
// correctness check (first prompts: float32 against the reference; bf16 products over a float16 cache, as
// the int4 build runs, within bf16's rounding), then the time of one layer's attention as the CPU int4
// build runs it: a first prompt of 128 and 1,024 tokens, and one decode step after 1,024, for Qwen3-0.6B's
// shape (16 heads over 8 kv heads of 128, q/k norms) and Qwen2.5-0.5B's (14 over 2 of 64).
//   g++ -O3 -march=native -std=c++17 -fopenmp bench/kernels/attention.cc \
//       kernels/cpu/{attention,attention_bf16,qk_norm_rotary,half}.cc -o /tmp/attention
//   OMP_NUM_THREADS=2 /tmp/attention [check]   (check: the correctness checks alone)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../../kernels/cpu/attention.h"
#include "../../kernels/cpu/half.h"
#include "threads.h"

namespace {

struct Shape {
  const char* name;
  int64_t heads, kv_heads, dim;
  bool qk_norm;
};

// One layer's inputs for `seq` new tokens after `past` cached ones, and a cache with room for them.
struct Layer {
  Shape shape;
  int64_t seq, past, capacity;
  std::vector<float> qkv, cos, sin, q_norm, k_norm, out;  // qkv [seq, (H + 2 KV) D]
  std::vector<float> cache_f32;                          // [2, KV, capacity, D]: keys, then values
  std::vector<uint16_t> cache_f16;
  int32_t seqlens = 0;

  Layer(Shape s, int64_t seq_, int64_t past_, std::mt19937& rng) : shape(s), seq(seq_), past(past_) {
    capacity = past + seq;
    const int64_t D = s.dim, width = (s.heads + 2 * s.kv_heads) * D, cache = s.kv_heads * capacity * D;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](std::vector<float>& v, int64_t n, float mean, float scale) {
      v.resize(n);
      for (float& x : v) x = mean + scale * normal(rng);
    };
    fill(qkv, seq * width, 0.0f, 1.0f);
    fill(q_norm, D, 1.0f, 0.1f);
    fill(k_norm, D, 1.0f, 0.1f);
    fill(cache_f32, 2 * cache, 0.0f, 1.0f);
    cache_f16.resize(2 * cache);
    for (int64_t i = 0; i < 2 * cache; ++i) cache_f16[i] = qwd::float_to_half(cache_f32[i]);
    cos.resize(capacity * D / 2);
    sin.resize(capacity * D / 2);
    for (int64_t p = 0; p < capacity; ++p)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double angle = p * std::pow(1e6, -2.0 * i / D);  // Qwen3's rope theta
        cos[p * D / 2 + i] = static_cast<float>(std::cos(angle));
        sin[p * D / 2 + i] = static_cast<float>(std::sin(angle));
      }
    out.resize(seq * s.heads * D);
    seqlens = static_cast<int32_t>(past + seq - 1);
  }

  qwd::AttentionProblem problem(bool half, bool bf16) {
    qwd::AttentionProblem p;
    p.batch = 1, p.seq = seq, p.num_heads = shape.heads, p.kv_num_heads = shape.kv_heads, p.head_dim = shape.dim;
    p.past_len = p.present_len = capacity, p.total_len = past + seq, p.max_positions = capacity;
    p.bf16_products = bf16;
    qwd::packed_qkv(p, qkv.data());
    const int64_t cache = shape.kv_heads * capacity * shape.dim;
    p.cache = half ? qwd::CacheType::kFloat16 : qwd::CacheType::kFloat32;
    p.past_k = p.present_k = half ? static_cast<void*>(cache_f16.data()) : cache_f32.data();
    p.past_v = p.present_v = half ? static_cast<void*>(cache_f16.data() + cache) : cache_f32.data() + cache;
    p.seqlens_k = &seqlens;
    p.cos = cos.data(), p.sin = sin.data();
    if (shape.qk_norm) p.q_norm = q_norm.data(), p.k_norm = k_norm.data();
    p.out = out.data();
    return p;
  }
};

// A head of x normalized (with weight w) and rotated at `position`, in double.
std::vector<double> prepared(const float* x, const Layer& l, const float* w, int64_t position) {
  const int64_t D = l.shape.dim;
  double inv = 1.0;
  if (w) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(x[i]) * x[i];
    inv = 1.0 / std::sqrt(ss / D + 1e-6);
  }
  std::vector<double> y(D);
  for (int64_t i = 0; i < D / 2; ++i) {
    const double a = x[i] * inv * (w ? w[i] : 1.0), b = x[D / 2 + i] * inv * (w ? w[D / 2 + i] : 1.0);
    const double c = l.cos[position * D / 2 + i], s = l.sin[position * D / 2 + i];
    y[i] = a * c - b * s;
    y[D / 2 + i] = b * c + a * s;
  }
  return y;
}

// out [seq, H D] of a first prompt, causal, in double.
std::vector<double> reference(const Layer& l) {
  const int64_t H = l.shape.heads, KV = l.shape.kv_heads, D = l.shape.dim, S = l.seq, width = (H + 2 * KV) * D;
  const float* qn = l.shape.qk_norm ? l.q_norm.data() : nullptr;
  const float* kn = l.shape.qk_norm ? l.k_norm.data() : nullptr;
  std::vector<double> out(S * H * D);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / KV);
    std::vector<std::vector<double>> keys(S);
    for (int64_t j = 0; j < S; ++j) keys[j] = prepared(l.qkv.data() + j * width + (H + g) * D, l, kn, j);
    for (int64_t s = 0; s < S; ++s) {
      const std::vector<double> q = prepared(l.qkv.data() + s * width + h * D, l, qn, s);
      std::vector<double> p(s + 1);
      double top = -1e300, sum = 0;
      for (int64_t j = 0; j <= s; ++j) {
        double dot = 0;
        for (int64_t i = 0; i < D; ++i) dot += q[i] * keys[j][i];
        p[j] = dot / std::sqrt(static_cast<double>(D));
        top = std::max(top, p[j]);
      }
      for (double& x : p) sum += x = std::exp(x - top);
      for (int64_t j = 0; j <= s; ++j) {
        const float* value = l.qkv.data() + j * width + (H + KV + g) * D;
        for (int64_t i = 0; i < D; ++i) out[(s * H + h) * D + i] += p[j] / sum * value[i];
      }
    }
  }
  return out;
}

bool check(Shape shape, int64_t seq, bool half, bool bf16, double tolerance, std::mt19937& rng,
           const qwd::Parallel& par) {
  Layer l(shape, seq, 0, rng);
  qwd::attention(l.problem(half, bf16), par);
  const std::vector<double> ref = reference(l);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(l.out[i] - ref[i]));
  const bool ok = worst < tolerance;
  std::printf("check %s, %3lld tokens, %s cache%s: max |error| %.2e %s\n", shape.name, static_cast<long long>(seq),
              half ? "float16" : "float32", bf16 ? ", bf16 products" : "", worst, ok ? "ok" : "WRONG");
  return ok;
}

double median_ms(Layer& l, int reps, const qwd::Parallel& par) {
  const qwd::AttentionProblem p = l.problem(true, true);
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    qwd::attention(p, par);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool check_only = argc == 2 && std::string(argv[1]) == "check";
  const Shape qwen3{"Qwen3-0.6B", 16, 8, 128, true}, qwen25{"Qwen2.5-0.5B", 14, 2, 64, false};
  Threads par;
  std::mt19937 rng(11);
  bool ok = true;
  for (const Shape& s : {qwen3, qwen25})
    for (int64_t seq : {1, 37, 100}) {
      ok &= check(s, seq, false, false, 1e-4, rng, par);
      ok &= check(s, seq, true, true, 3e-2, rng, par);
    }
  if (!ok || check_only) return ok ? 0 : 1;

  std::printf("one layer, float16 cache, bf16 products where the CPU has them, %d threads (median):\n",
              omp_get_max_threads());
  for (const Shape& s : {qwen3, qwen25}) {
    for (int64_t seq : {128, 1024}) {
      Layer l(s, seq, 0, rng);
      const double ms = median_ms(l, seq > 128 ? 9 : 41, par);
      double macs = 0;  // causal: token s meets s + 1 keys in both products
      for (int64_t t = 0; t < seq; ++t) macs += 2.0 * (t + 1) * s.dim * s.heads;
      std::printf("  %-12s prompt %4lld tokens: %8.1f us  %6.1f GMAC/s\n", s.name, static_cast<long long>(seq),
                  ms * 1e3, macs / ms / 1e6);
    }
    Layer l(s, 1, 1024, rng);
    std::printf("  %-12s decode after 1024:  %8.1f us\n", s.name, median_ms(l, 201, par) * 1e3);
  }
}
