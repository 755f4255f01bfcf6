// quant_linear (kernels/cpu) against a plain reference and against the memory-bandwidth limit, on the
// matrices one decode step of a Qwen2.5-0.5B-shaped int4 model reads. llm.c dev/ style: reference,
// correctness check and timing in one file.
//   g++ -O3 -march=native -std=c++17 -pthread bench/kernels/quant_linear.cc kernels/cpu/{quant_linear,int8_act,weights}.cc \
//       -o /tmp/quant_linear && /tmp/quant_linear [threads] [steps]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "../../kernels/cpu/quant_linear.h"

namespace {

struct Matrix {
  int64_t rows, cols, block = 32;
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  qwd::Weights view() const {
    return qwd::Weights::quantized(packed.data(), scales.data(), nullptr, rows, cols, 4, block);
  }
};

Matrix random_matrix(int64_t rows, int64_t cols, std::mt19937& rng) {
  Matrix m{rows, cols};
  const int64_t nb = (cols + m.block - 1) / m.block;
  m.packed.resize(rows * nb * m.block / 2);
  m.scales.resize(rows * nb);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f);
  for (auto& b : m.packed) b = static_cast<uint8_t>(byte(rng));
  for (auto& s : m.scales) s = scale(rng);
  return m;
}

// Float reference on the same int8 activations: sum over columns of (q - 8) * scale * xq * xscale.
std::vector<double> reference(const Matrix& m, const std::vector<float>& x) {
  const qwd::Weights w = m.view();
  const qwd::Int8Activations a(x.data(), 1, w);
  std::vector<float> xq(m.cols), xs(m.cols);
  for (int64_t p = 0; p < a.positions; ++p) {
    const int64_t c = qwd::column_of(p, 4);
    if (c < m.cols) xq[c] = a.q[p];
  }
  std::vector<double> y(m.rows);
  std::vector<float> row(m.cols);
  for (int64_t r = 0; r < m.rows; ++r) {
    w.row(r, row.data());
    double acc = 0;
    for (int64_t c = 0; c < m.cols; ++c) {
      const int64_t b = c / m.block;
      const float amax_scale = a.block_sum.empty() ? 0 : 0;  // unused: scales come from the lanes below
      (void)amax_scale;
      float block_max = 0;
      for (int64_t k = b * m.block; k < std::min(m.cols, (b + 1) * m.block); ++k) block_max = std::max(block_max, std::fabs(x[k]));
      acc += static_cast<double>(row[c]) * xq[c] * (block_max / 127.0f);
    }
    y[r] = acc;
  }
  return y;
}

class Threads : public qwd::Parallel {
 public:
  explicit Threads(int n) : n_(n) {}
  void run(int64_t tasks, const std::function<void(int64_t)>& fn) const override {
    std::vector<std::thread> pool;
    for (int w = 1; w < n_; ++w) pool.emplace_back([&, w] { for (int64_t t = w; t < tasks; t += n_) fn(t); });
    for (int64_t t = 0; t < tasks; t += n_) fn(t);
    for (auto& th : pool) th.join();
  }

 private:
  int n_;
};

double stream_read_gbs(int threads) {
  const int64_t n = (1LL << 28) / sizeof(float);  // 1 GiB
  std::vector<float> data(n, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> sums(threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int w = 0; w < threads; ++w)
      pool.emplace_back([&, w] {
        double s = 0;
        for (int64_t i = w * n / threads; i < (w + 1) * n / threads; ++i) s += data[i];
        sums[w] = s;
      });
    for (auto& th : pool) th.join();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, n * sizeof(float) / sec / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 20;
  std::mt19937 rng(0);
  std::printf("isa %s, %d threads\n", qwd::int8_isa(), threads);

  // Correctness on odd shapes first.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{7, 96}, {33, 160}, {64, 896}, {5, 4864}}) {
    const Matrix m = random_matrix(rows, cols, rng);
    std::vector<float> x(cols), y(rows);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(rng);
    qwd::quant_linear(x.data(), 1, m.view(), nullptr, y.data());
    const auto ref = reference(m, x);
    double err = 0, mag = 0;
    for (int64_t r = 0; r < rows; ++r) err = std::max(err, std::fabs(y[r] - ref[r])), mag = std::max(mag, std::fabs(ref[r]));
    std::printf("check %4lld x %4lld: max |err| %.2e of max |y| %.2e %s\n", (long long)rows, (long long)cols, err, mag,
                err <= 1e-4 * mag ? "ok" : "FAIL");
  }

  // One decode step's matrices: 24 layers of qkv, o, gate/up, down, then the tied LM head.
  const int64_t H = 896, I = 4864, layers = 24, vocab = 151936;
  std::vector<Matrix> mats;
  for (int l = 0; l < layers; ++l) {
    mats.push_back(random_matrix(H + 2 * 128, H, rng));
    mats.push_back(random_matrix(H, H, rng));
    mats.push_back(random_matrix(2 * I, H, rng));
    mats.push_back(random_matrix(H, I, rng));
  }
  mats.push_back(random_matrix(vocab, H, rng));
  double bytes = 0;
  for (auto& m : mats) bytes += m.packed.size() + m.scales.size() * 4;
  std::vector<float> x(I, 0.5f), y(vocab);
  for (auto& v : x) v = std::normal_distribution<float>()(rng);
  const Threads par(threads);
  std::vector<double> times;
  for (int s = 0; s < steps + 2; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& m : mats) qwd::quant_linear(x.data(), 1, m.view(), nullptr, y.data(), par);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  times.erase(times.begin(), times.begin() + 2);
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  const double bw = stream_read_gbs(threads);
  std::printf("decode step: %.0f MB of weights in %.2f ms = %.1f GB/s; streaming read %.1f GB/s -> %.0f%% of it, "
              "%.1f steps/s\n", bytes / 1e6, med * 1e3, bytes / med / 1e9, bw, 100 * bytes / med / 1e9 / bw, 1 / med);
}
