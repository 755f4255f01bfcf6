#pragma once

#include <cstdint>
#include <vector>

#include "parallel.h"
#include "weights.h"

namespace qwd {

struct Expert {
  Weights gate_up;  // [2*I, H], gate rows first
  Weights down;     // [H, I]
};

struct MoEProblem {
  const float* x = nullptr;              // [tokens, H]
  const float* router_logits = nullptr;  // [tokens, E]
  int64_t tokens = 0;
  int64_t hidden = 0;
  std::vector<Expert> experts;  // E routed experts
  int64_t top_k = 1;
  bool normalize_topk = false;
  const Expert* shared = nullptr;         // Qwen2-MoE shared expert, or null
  const float* shared_gate = nullptr;     // [H]: shared output scaled by sigmoid(x . shared_gate); null = 1
};

// softmax over E in fp32, the top_k largest (ties: lower expert id first), optionally renormalised.
// ids, weights: [tokens, top_k].
void route(const float* logits, int64_t tokens, int64_t num_experts, int64_t top_k, bool normalize, int64_t* ids,
           float* weights);

// y: [tokens, H]; only the experts some token picked are computed, each on its own tokens only.
void moe(const MoEProblem& p, float* y, const Parallel& par = serial());

}  // namespace qwd
