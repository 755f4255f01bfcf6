// Linear's core (kernels/cpu/linear.cc) in llm.c's dev/ style: a plain reference, a correctness check on
// odd shapes, then the time of a tied float LM head (Qwen3-0.6B's 151,936 x 1,024, or the rows and columns
// given) for 1 to 16 tokens, against a row at a time dotted with each token (the path 1-3 tokens keep) in
// interleaved rounds: the tiles pay where a batch makes the head compute-bound, not where it streams.
//   g++ -O3 -march=native -std=c++17 -fopenmp bench/kernels/linear.cc kernels/cpu/{linear,weights,half}.cc \
//       -o /tmp/linear
//   OMP_NUM_THREADS=2 /tmp/linear [rows cols | check]   (check: the correctness checks alone)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../../kernels/cpu/linear.h"
#include "../../kernels/cpu/simd.h"
#include "threads.h"

namespace {

std::vector<float> normal(int64_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// y [tokens, rows] = x [tokens, cols] . w^T in double.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, int64_t tokens,
                              int64_t rows, int64_t cols) {
  std::vector<double> y(tokens * rows);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(x[t * cols + c]) * w[r * cols + c];
      y[t * rows + r] = s;
    }
  return y;
}

// The variant: each row once, dotted with every token in turn.
void rows_then_tokens(const float* x, int64_t tokens, const qwd::Weights& w, float* y, const qwd::Parallel& par) {
  qwd::parallel_ranges(par, w.rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t t = 0; t < tokens; ++t)
        y[t * w.rows + r] = qwd::simd::dot(x + t * w.cols, w.dense + r * w.cols, w.cols);
  });
}

bool check(int64_t tokens, int64_t rows, int64_t cols, std::mt19937& rng, const qwd::Parallel& par) {
  const std::vector<float> x = normal(tokens * cols, 1.0f, rng), w = normal(rows * cols, 1.0f / std::sqrt(cols), rng);
  std::vector<float> y(tokens * rows);
  qwd::linear(x.data(), tokens, qwd::Weights::fp32(w.data(), rows, cols), nullptr, y.data(), par);
  const std::vector<double> ref = reference(x, w, tokens, rows, cols);
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(y[i] - ref[i]));
  const bool ok = worst < 1e-4;
  std::printf("check %3lld tokens x %4lld rows x %4lld cols: max |error| %.2e %s\n", static_cast<long long>(tokens),
              static_cast<long long>(rows), static_cast<long long>(cols), worst, ok ? "ok" : "WRONG");
  return ok;
}

template <class Fn>
double seconds(Fn fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const bool check_only = argc == 2 && std::string(argv[1]) == "check";
  const int64_t rows = argc > 2 ? std::atoll(argv[1]) : 151936, cols = argc > 2 ? std::atoll(argv[2]) : 1024;
  Threads par;
  std::mt19937 rng(7);
  bool ok = true;
  for (const auto& [t, r, c] : {std::tuple{1, 37, 896}, {3, 9, 33}, {4, 64, 64}, {18, 37, 100}, {70, 130, 19}})
    ok &= check(t, r, c, rng, par);
  if (!ok || check_only) return ok ? 0 : 1;

  const std::vector<float> w = normal(rows * cols, 1.0f / std::sqrt(cols), rng), x = normal(16 * cols, 1.0f, rng);
  const qwd::Weights view = qwd::Weights::fp32(w.data(), rows, cols);
  std::vector<float> y(16 * rows);
  std::printf("%lld x %lld float head, %d threads, median of 7 interleaved rounds:\n", static_cast<long long>(rows),
              static_cast<long long>(cols), omp_get_max_threads());
  for (int64_t tokens : {1, 2, 4, 8, 16}) {
    std::vector<double> ours, variant;
    for (int round = 0; round < 7; ++round) {
      ours.push_back(seconds([&] { qwd::linear(x.data(), tokens, view, nullptr, y.data(), par); }));
      variant.push_back(seconds([&] { rows_then_tokens(x.data(), tokens, view, y.data(), par); }));
    }
    std::sort(ours.begin(), ours.end());
    std::sort(variant.begin(), variant.end());
    const double macs = static_cast<double>(tokens) * rows * cols;
    std::printf("  %2lld tokens: linear %7.2f ms (%5.1f GMAC/s), a row at a time %7.2f ms: %.2fx\n",
                static_cast<long long>(tokens), ours[3] * 1e3, macs / ours[3] / 1e9, variant[3] * 1e3,
                variant[3] / ours[3]);
  }
}
