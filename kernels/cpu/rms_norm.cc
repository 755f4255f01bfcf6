#include "rms_norm.h"

#include <cmath>

namespace qwd {

namespace {

constexpr int kLanes = 8;  // independent float64 sums: the compiler vectorizes them without reassociating

void token(const float* x, int64_t cols, const RmsNorm& n, int64_t t, float* y) {
  const float* xt = x + t * cols;
  const float* s = xt;  // [cols]
  if (n.skip) {
    const float* skip = n.skip + t * cols;
    float* sum = n.sum ? n.sum + t * cols : y + t * cols;  // y holds s until it is normalized in place
    for (int64_t k = 0; k < cols; ++k) sum[k] = xt[k] + skip[k];
    s = sum;
  }
  double lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= cols; k += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += static_cast<double>(s[k + l]) * s[k + l];
  double squares = 0.0;
  for (; k < cols; ++k) squares += static_cast<double>(s[k]) * s[k];
  for (double lane : lanes) squares += lane;
  const float mean = static_cast<float>(squares / static_cast<double>(cols));
  const float inv = 1.0f / std::sqrt(mean + n.epsilon);
  float* yt = y + t * cols;
  for (int64_t c = 0; c < cols; ++c) yt[c] = s[c] * inv * n.weight[c];
}

}  // namespace

void rms_norm(const float* x, int64_t tokens, int64_t cols, const RmsNorm& norm, float* y, const Parallel& par) {
  // A token is ~3*cols float operations: tasks of 16 keep the scheduling cost small beside them.
  parallel_ranges(par, tokens, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) token(x, cols, norm, t, y);
  });
}

const float* normed_input(const float* x, int64_t tokens, int64_t cols, const RmsNorm& norm,
                          std::vector<float>& scratch, const Parallel& par) {
  if (!norm.weight) return x;
  scratch.resize(tokens * cols);
  rms_norm(x, tokens, cols, norm, scratch.data(), par);
  return scratch.data();
}

}  // namespace qwd
