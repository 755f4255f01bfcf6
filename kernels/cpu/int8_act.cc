#include "int8_act.h"

#include <algorithm>
#include <cmath>

#include "amx.h"

namespace qwd {

namespace {

// Inverse of column_of.
int64_t position_of(int64_t c, int bits) {
  if (bits == 8) return c;
  const int64_t group = c / 32, i = c % 32;
  return group * 32 + (i % 2 == 0 ? i / 2 : 16 + i / 2);
}

}  // namespace

Int8Activations::Int8Activations(const float* x, int64_t tokens_, const Weights& w, bool blocked) : tokens(tokens_) {
  const int64_t nb = w.blocks(), bs = w.block_size, cols = w.cols;
  zero = 1 << (w.bits - 1);
  block_sum.assign(tokens * nb, 0.0f);
  // One layout of three: the kernels read amx_* or blocked_* when there, the position layout otherwise.
  const bool tiles = blocked && amx::usable();
  if (tiles) {
    steps = bs / 4;
    const int64_t padded = (tokens + 15) / 16 * 16;
    amx_q.assign(padded * nb * steps * 4, 0);
    amx_init.assign(padded * nb, 0);
    amx_scale.assign(padded * nb, 0.0f);
  } else if (blocked) {
    groups = (nb + 15) / 16;
    steps = bs / 4;
    blocked_q.assign(tokens * groups * steps * 64, 0);
    blocked_init.assign(tokens * groups * 16, 0);
    blocked_scale.assign(tokens * groups * 16, 0.0f);
  } else {
    positions = (nb * bs + kStepCols - 1) / kStepCols * kStepCols;
    q.assign(tokens * positions, 0);
    init.assign(tokens * positions / 4, 0);
    lane_scale.assign(tokens * positions / 4, 0.0f);
  }
  const int64_t lanes = positions / 4;
  std::vector<float> scale(nb);  // [blocks] of the current token
  for (int64_t t = 0; t < tokens; ++t) {
    const float* xt = x + t * cols;  // [cols]
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t begin = b * bs, end = std::min(cols, begin + bs);
      float amax = 0.0f;
      for (int64_t c = begin; c < end; ++c) amax = std::max(amax, std::fabs(xt[c]));
      // Same float32 operations as the numpy reference (kernels/reference.py), so the integers agree.
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      scale[b] = amax / 127.0f;
      int32_t sum = 0;
      for (int64_t c = begin; c < end; ++c) {
        const int8_t v = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(xt[c] * inv))));
        if (tiles)
          amx_q[amx_index(t, b, (c - begin) / 4, (c - begin) % 4, nb, steps)] = v;
        else if (blocked)
          blocked_q[t * groups * steps * 64 + blocked_index(b / 16, (c - begin) / 4, b % 16, (c - begin) % 4, steps)] = v;
        else
          q[t * positions + position_of(c, w.bits)] = v;
        sum += v;
      }
      block_sum[t * nb + b] = scale[b] * static_cast<float>(sum);
      if (tiles) {
        const int64_t at = ((t / 16) * nb + b) * 16 + t % 16;
        amx_init[at] = -zero * sum;
        amx_scale[at] = scale[b];
      } else if (blocked) {
        blocked_init[t * groups * 16 + b] = -zero * sum;
        blocked_scale[t * groups * 16 + b] = scale[b];
      }
    }
    const int8_t* qt = q.data() + t * positions;
    for (int64_t lane = 0; lane < lanes; ++lane) {
      const int64_t block = column_of(4 * lane, w.bits) / bs;
      if (block >= nb) continue;  // padding: q is 0 there
      int32_t sum = 0;
      for (int k = 0; k < 4; ++k) sum += qt[4 * lane + k];
      init[t * lanes + lane] = -zero * sum;
      lane_scale[t * lanes + lane] = scale[block];
    }
  }
}

}  // namespace qwd
