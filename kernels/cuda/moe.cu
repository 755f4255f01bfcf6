// MoE on CUDA: route per token, then every (token, k) slot runs its own expert's rows only, so
// work scales with top_k, never with the number of experts.
#include <algorithm>

#include "common.cuh"
#include "kernels.h"

namespace qwd::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

// One thread per token: softmax over E, top-k by repeated selection (k is small), renormalise.
__global__ void route_kernel(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, bool normalize,
                             int* ids, float* weights) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const float* l = logits + t * experts;  // [E]
  float top = l[0], total = 0.0f;
  for (int64_t e = 1; e < experts; ++e) top = fmaxf(top, l[e]);
  for (int64_t e = 0; e < experts; ++e) total += __expf(l[e] - top);
  float picked = 0.0f, previous = INFINITY;
  int previous_id = -1;
  for (int64_t j = 0; j < top_k; ++j) {
    int best = -1;
    float best_p = -1.0f;
    for (int64_t e = 0; e < experts; ++e) {  // the largest after (previous, previous_id) in (p desc, id asc)
      const float p = __expf(l[e] - top);
      const bool after = p < previous || (p == previous && e > previous_id);
      if (after && p > best_p) best = static_cast<int>(e), best_p = p;
    }
    ids[t * top_k + j] = best;
    weights[t * top_k + j] = best_p;
    picked += best_p;
    previous = best_p;
    previous_id = best;
  }
  const float denom = normalize ? picked : total;
  for (int64_t j = 0; j < top_k; ++j) weights[t * top_k + j] /= denom;
}

// grid: (ceil(I / 8), min(slots, 65535)); hidden[s, i] = SwiGLU of slot s's expert row i on its token.
__global__ void expert_up_kernel(const float* x, const int* ids, int64_t top_k, Weights gate_up, int64_t inter,
                                 int64_t slots, float* hidden) {
  const int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (i >= inter) return;
  for (int64_t s = blockIdx.y; s < slots; s += gridDim.y) {
    const int64_t first = (ids ? ids[s] : 0) * 2 * inter;
    const float* xt = x + (ids ? s / top_k : s) * gate_up.cols;  // [H]
    const float g = warp_dot(xt, gate_up, first + i), u = warp_dot(xt, gate_up, first + inter + i);
    if (threadIdx.x % kWarp == 0) hidden[s * inter + i] = silu(g) * u;
  }
}

// grid: (ceil(H / 8), min(slots, 65535)); out[s, h] = hidden[s] . down[expert(s), h].
__global__ void expert_down_kernel(const float* hidden, const int* ids, Weights down, int64_t hidden_size,
                                   int64_t slots, float* out) {
  const int64_t h = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (h >= hidden_size) return;
  for (int64_t s = blockIdx.y; s < slots; s += gridDim.y) {
    const float v = warp_dot(hidden + s * down.cols, down, (ids ? ids[s] : 0) * hidden_size + h);
    if (threadIdx.x % kWarp == 0) out[s * hidden_size + h] = v;
  }
}

// One warp per token: sigmoid(x . shared_gate), or 1 without a gate.
__global__ void shared_gate_kernel(const float* x, const float* gate, int64_t tokens, int64_t hidden, float* out) {
  const int64_t t = blockIdx.x;
  float acc = 0.0f;
  for (int64_t c = threadIdx.x; c < hidden; c += kWarp) acc += x[t * hidden + c] * gate[c];
  acc = warp_sum(acc);
  if (threadIdx.x == 0) out[t] = 1.0f / (1.0f + __expf(-acc));
}

__global__ void combine_kernel(const float* routed, const float* weights, int64_t top_k, const float* shared,
                               const float* shared_scale, int64_t tokens, int64_t hidden, float* y) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, h = i % hidden;
    float acc = 0.0f;
    for (int64_t j = 0; j < top_k; ++j) acc += weights[t * top_k + j] * routed[(t * top_k + j) * hidden + h];
    if (shared) acc += (shared_scale ? shared_scale[t] : 1.0f) * shared[i];
    y[i] = acc;
  }
}

dim3 rows_grid(int64_t rows, int64_t slots) {
  return dim3(static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(std::min<int64_t>(slots, 65535)));
}

}  // namespace

void moe(const MoEDevice& p, float* y, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t T = p.tokens, H = p.hidden, K = p.top_k, S = p.shared_inter, slots = T * K;
  if (T == 0) return;
  // One scratch allocation: ids [T*K] | weights [T*K] | hidden [T*K, I] | routed [T*K, H] |
  // shared hidden [T, S] | shared out [T, H] | shared scale [T]
  const size_t floats = slots + slots * p.inter + slots * H + (S ? T * S + T * H + T : 0);
  void* scratch = nullptr;
  check(cudaMallocAsync(&scratch, slots * sizeof(int) + floats * sizeof(float), stream), "MoE scratch");
  int* ids = static_cast<int*>(scratch);
  float* weights = reinterpret_cast<float*>(ids + slots);
  float* hidden = weights + slots;
  float* routed = hidden + slots * p.inter;
  float* shared_hidden = routed + slots * H;
  float* shared_out = shared_hidden + T * S;
  float* shared_scale = shared_out + T * H;
  const int block = kWarpsPerBlock * kWarp;

  route_kernel<<<static_cast<unsigned>((T + 127) / 128), 128, 0, stream>>>(p.router_logits, T, p.experts, K,
                                                                            p.normalize_topk, ids, weights);
  expert_up_kernel<<<rows_grid(p.inter, slots), block, 0, stream>>>(p.x, ids, K, p.gate_up, p.inter, slots, hidden);
  expert_down_kernel<<<rows_grid(H, slots), block, 0, stream>>>(hidden, ids, p.down, H, slots, routed);
  if (S) {
    const Weights sgu = Weights::fp32(p.shared_gate_up, 2 * S, H), sd = Weights::fp32(p.shared_down, H, S);
    expert_up_kernel<<<rows_grid(S, T), block, 0, stream>>>(p.x, nullptr, 1, sgu, S, T, shared_hidden);
    expert_down_kernel<<<rows_grid(H, T), block, 0, stream>>>(shared_hidden, nullptr, sd, H, T, shared_out);
    if (p.shared_gate) shared_gate_kernel<<<static_cast<unsigned>(T), kWarp, 0, stream>>>(p.x, p.shared_gate, T, H,
                                                                                          shared_scale);
  }
  const unsigned combine_blocks = static_cast<unsigned>(std::min<int64_t>((T * H + 255) / 256, 65535));
  combine_kernel<<<combine_blocks, 256, 0, stream>>>(routed, weights, K, S ? shared_out : nullptr,
                                                     S && p.shared_gate ? shared_scale : nullptr, T, H, y);
  check(cudaGetLastError(), "MoE launch");
  check(cudaFreeAsync(scratch, stream), "MoE scratch free");
}

}  // namespace qwd::cuda
