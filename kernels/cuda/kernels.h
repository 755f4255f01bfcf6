// Launchers of the CUDA kernels, callable from plain C++ (no CUDA types): pointers are device
// pointers, `stream` is a cudaStream_t. Each enqueues its work on the stream and returns.
#pragma once

#include <cstdint>

#include "../cpu/qk_norm_rotary.h"
#include "../cpu/weights.h"

namespace qwd::cuda {

// gate_up: [rows, 2*inter] → y: [rows, inter]
void swiglu(const float* gate_up, float* y, int64_t rows, int64_t inter, void* stream);

// x: [tokens, w.cols], w: [2*I, cols] (dense or block-quantized) → y: [tokens, I]
void gate_up_swiglu(const float* x, int64_t tokens, const Weights& w, float* y, void* stream);

struct MoEDevice {
  const float* x;              // [T, H]
  const float* router_logits;  // [T, E]
  int64_t tokens, hidden, experts, inter, top_k;
  bool normalize_topk;
  Weights gate_up;  // every expert stacked: [E*2I, H]
  Weights down;     // [E*H, I]
  const float* shared_gate_up;  // [2S, H] or null
  const float* shared_down;     // [H, S]
  const float* shared_gate;     // [H] or null
  int64_t shared_inter;
};

// y: [T, H]. Allocates its scratch with cudaMallocAsync on the stream.
void moe(const MoEDevice& p, float* y, void* stream);

// As the CPU core; positions outside the caches leave that q/k head's output zero (the CPU core raises).
void qk_norm_rotary(const QKNormRotaryProblem& p, void* stream);

}  // namespace qwd::cuda
