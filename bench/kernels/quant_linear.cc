// QuantLinear's core (kernels/cpu/quant_linear.cc) in llm.c's dev/ style: a plain reference, a correctness
// check on odd shapes, then the time of one decode step's matrices of a Qwen2.5-0.5B-shaped int4 model
// (24 layers of qkv, o, gate/up, down, and the tied LM head) against the machine's streaming-read
// bandwidth, with the weights' rows in order and in row tiles (kernels/cpu/weights.h; interleaved rounds,
// float16 scales), the decode of one matrix held in cache (the arithmetic's own pace), and a prefill (128
// tokens, or the count after `prefill`) of one layer's matrices (on AMX tiles where the CPU has them; run
// it again with QWDEPLOY_AMX=0 for the AVX-512 VNNI path).
//   g++ -O3 -march=native -std=c++17 -fopenmp bench/kernels/quant_linear.cc \
//       kernels/cpu/{amx,quant_linear,int8_act,weights,linear,half}.cc -o /tmp/quant_linear
//   OMP_NUM_THREADS=2 /tmp/quant_linear [prefill [tokens] | check]   (check: the correctness checks alone)
#include <immintrin.h>
#include <omp.h>

#include <cstdlib>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../kernels/cpu/amx.h"
#include "../../kernels/cpu/quant_linear.h"
#include "threads.h"

namespace {

struct Matrix {
  int64_t rows, cols, block = 32;
  std::vector<uint8_t> packed;  // [rows, blocks, block/2]
  std::vector<float> scales;    // [rows, blocks], float16 values
  std::vector<uint16_t> halves;  // the same scales as float16
  std::vector<uint8_t> tiled;   // packed in row tiles, rows padded to whole tiles; empty where rows do not fit
  qwd::Weights view() const { return qwd::Weights::quantized(packed.data(), scales.data(), nullptr, rows, cols, 4, block); }
  qwd::Weights half_view(bool tiles) const {
    qwd::Weights w = qwd::Weights::quantized(tiles ? tiled.data() : packed.data(), halves.data(), nullptr, rows,
                                             cols, 4, block);
    w.row_tile = tiles ? qwd::Weights::kRowTile : 1;
    return w;
  }
  double bytes() const { return packed.size() + 2.0 * scales.size(); }
};

// Row tiles as the export writes them (kernels/quantize.py tile_rows): each 4 rows' bytes 64 at a time.
std::vector<uint8_t> tile_rows(const std::vector<uint8_t>& packed, int64_t rows, int64_t row_bytes) {
  constexpr int64_t T = qwd::Weights::kRowTile, C = qwd::Weights::kTileChunk;
  if (row_bytes % C) return {};
  std::vector<uint8_t> out((rows + T - 1) / T * T * row_bytes, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < row_bytes / C; ++c)
      std::memcpy(out.data() + ((r / T) * (row_bytes / C) + c) * T * C + (r % T) * C, packed.data() + r * row_bytes + c * C, C);
  return out;
}

Matrix random_matrix(int64_t rows, int64_t cols, std::mt19937& rng) {
  Matrix m{rows, cols};
  const int64_t nb = (cols + m.block - 1) / m.block;
  m.packed.resize(rows * nb * m.block / 2);
  m.scales.resize(rows * nb);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f);
  for (auto& b : m.packed) b = static_cast<uint8_t>(rng());
  for (auto& s : m.scales) {
    m.halves.push_back(_cvtss_sh(scale(rng), 0));
    s = qwd::half_to_float(m.halves.back());
  }
  m.tiled = tile_rows(m.packed, rows, nb * m.block / 2);
  return m;
}

float bf16(float f) {  // nearest bfloat16, ties to even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

// The op's meaning at accuracy_level 4, one column at a time in double: int8 activations per block (scale
// max|x| / 127, rounded up to a power of two where the build prefills in the blocked layout: int8_act.h), or on
// AMX tiles (16+ tokens where the CPU has them) weights and activations rounded to bf16 (kernels/cpu/amx.h).
std::vector<double> reference(const Matrix& m, const std::vector<float>& x, int64_t tokens) {
  const bool tiles = tokens >= qwd::kBlockedMinTokens && qwd::amx::usable();
  const bool pow2 = !tiles && qwd::int8_blocked(tokens);  // the harness's weights are int4
  const int64_t nb = (m.cols + m.block - 1) / m.block;
  std::vector<double> y(tokens * m.rows, 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x.data() + t * m.cols + b * m.block;
      const int64_t n = std::min(m.block, m.cols - b * m.block);
      float amax = 0.0f;
      for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(xb[i]));
      float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      if (pow2 && amax > 0.0f) {
        scale = std::exp2(std::ceil(std::log2(scale)));
        inv = 1.0f / scale;
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t c = b * m.block + i;
        const double xq = tiles ? bf16(xb[i]) : std::clamp(std::nearbyint(xb[i] * inv), -127.0f, 127.0f) * scale;
        for (int64_t r = 0; r < m.rows; ++r) {
          const uint8_t byte = m.packed[(r * nb + b) * m.block / 2 + i / 2];
          const int q = i % 2 ? byte >> 4 : byte & 0xF;
          const float w = static_cast<float>(q - 8) * m.scales[r * nb + b];
          y[t * m.rows + r] += (tiles ? bf16(w) : w) * xq;
        }
      }
    }
  return y;
}

double median_seconds(int runs, const std::function<void()>& fn) {
  std::vector<double> times;
  for (int i = 0; i < runs + 2; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  times.erase(times.begin(), times.begin() + 2);  // warm-up
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double streaming_read_gbs() {  // all threads summing a 1 GiB array: integer adds, which vectorize
  const int64_t n = (1LL << 30) / sizeof(uint64_t);
  std::vector<uint64_t> data(n, 1);
  uint64_t sink = 0;
  const double s = median_seconds(5, [&] {
    uint64_t total = 0;
#pragma omp parallel for reduction(+ : total)
    for (int64_t i = 0; i < n; ++i) total += data[i];
    sink += total;
  });
  return n * sizeof(uint64_t) / s / 1e9 + 0.0 * static_cast<double>(sink);
}

}  // namespace

int main(int argc, char** argv) {
  const bool prefill_only = argc > 1 && std::strcmp(argv[1], "prefill") == 0;
  const bool check_only = argc > 1 && std::strcmp(argv[1], "check") == 0;
  std::mt19937 rng(0);
  const Threads par;
  std::printf("int8 dot: %s, %d threads\n", qwd::int8_isa(), omp_get_max_threads());
  bool ok = true;
  // The last: tasks of three 32-row panels and token tiles in two chunks (AVX-512's prefill, quant_linear.cc).
  for (auto [rows, cols, tokens] : {std::tuple<int64_t, int64_t, int64_t>{7, 96, 1}, {33, 160, 9}, {64, 896, 1},
                                    {37, 900, 21}, {5, 4864, 3}, {2100, 4100, 50}}) {
    const Matrix m = random_matrix(rows, cols, rng);
    std::vector<float> x(tokens * cols), y(tokens * rows);
    std::normal_distribution<float> normal;
    for (auto& v : x) v = normal(rng);
    const auto ref = reference(m, x, tokens);
    for (bool tiles : {false, true}) {
      if (tiles && m.tiled.empty()) continue;
      qwd::quant_linear(x.data(), tokens, tiles ? m.half_view(true) : m.view(), nullptr, y.data(), 4, par);
      double err = 0, mag = 0;
      for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(y[i] - ref[i])), mag = std::max(mag, std::fabs(ref[i]));
      std::printf("check %lldx%lld, %lld tokens%s: max |error| %.1e of max |y| %.1e: %s\n", (long long)rows,
                  (long long)cols, (long long)tokens, tiles ? ", row tiles" : "", err, mag,
                  err <= 1e-5 * mag ? "ok" : "FAIL");
      ok &= err <= 1e-5 * mag;
    }
  }
  if (!ok || check_only) return ok ? 0 : 1;

  const int64_t H = 896, I = 4864, layers = 24, vocab = 151936;
  std::vector<Matrix> step;
  for (int l = 0; l < layers; ++l)
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{H + 2 * 128, H}, {H, H}, {2 * I, H}, {H, I}})
      step.push_back(random_matrix(rows, cols, rng));
  step.push_back(random_matrix(vocab, H, rng));
  const char* names[] = {"qkv", "o", "gate/up", "down"};
  const int64_t prompt = prefill_only && argc > 2 ? std::atoll(argv[2]) : 128;
  std::vector<float> x(prompt * I), y(prompt * vocab);
  for (auto& v : x) v = std::normal_distribution<float>()(rng);
  if (!prefill_only) {  // `quant_linear prefill` times the prefill alone
    // Rounds alternate the two layouts, so a neighbour's load moves both alike; medians over rounds.
    std::vector<double> times[2];
    for (int round = 0; round < 7; ++round)
      for (bool tiles : {false, true})
        times[tiles].push_back(median_seconds(5, [&] {
          for (auto& m : step) qwd::quant_linear(x.data(), 1, m.half_view(tiles), nullptr, y.data(), 4, par);
        }));
    const double bandwidth = streaming_read_gbs();
    double bytes = 0;
    for (auto& m : step) bytes += m.bytes();
    for (bool tiles : {false, true}) {
      std::sort(times[tiles].begin(), times[tiles].end());
      const double decode = times[tiles][times[tiles].size() / 2];
      std::printf("decode step, %s: %.0f MB in %.2f ms = %.1f GB/s, %.0f%% of the %.1f GB/s streaming read\n",
                  tiles ? "row tiles" : "rows in order", bytes / 1e6, decode * 1e3, bytes / decode / 1e9,
                  100 * bytes / decode / 1e9 / bandwidth, bandwidth);
    }
    // The kernel's own pace, memory aside: one gate/up matrix (4.9 MB) read again and again from the
    // last-level cache. Where it is not well above the streaming read, decode waits on the arithmetic.
    const Matrix& hot = step[2];
    const double s = median_seconds(7, [&] {
      for (int i = 0; i < 50; ++i) qwd::quant_linear(x.data(), 1, hot.half_view(true), nullptr, y.data(), 4, par);
    }) / 50;
    std::printf("decode, %lldx%lld in cache, row tiles: %.1f us = %.1f GB/s\n", (long long)hot.rows,
                (long long)hot.cols, s * 1e6, hot.bytes() / s / 1e9);
  }
  // One decoder layer's matrices as the export writes them (row tiles, float16 scales), `prompt` tokens each.
  double layer = 0, macs = 0;
  for (int i = 0; i < 4; ++i) {
    const Matrix& m = step[i];
    const double s = median_seconds(5, [&] { qwd::quant_linear(x.data(), prompt, m.half_view(true), nullptr, y.data(), 4, par); });
    std::printf("prefill, %lld tokens x %-7s %5lldx%-5lld: %6.2f ms = %5.1f GMAC/s\n", (long long)prompt, names[i],
                (long long)m.rows, (long long)m.cols, s * 1e3, double(prompt) * m.rows * m.cols / s / 1e9);
    layer += s, macs += double(prompt) * m.rows * m.cols;
  }
  std::printf("prefill, %lld tokens x one layer: %.2f ms = %.1f GMAC/s\n", (long long)prompt, layer * 1e3,
              macs / layer / 1e9);
}
