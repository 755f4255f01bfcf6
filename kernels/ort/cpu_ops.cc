// CPU execution provider adapters: read tensors and attributes, check shapes, call the core.
#include "../cpu/linear.h"
#include "../cpu/moe.h"
#include "../cpu/quant_gather.h"
#include "../cpu/quant_linear.h"
#include "../cpu/quant_swiglu.h"
#include "../cpu/rms_norm.h"
#include "../cpu/swiglu.h"
#include "adapter.h"
#include "attention_io.h"
#include "ops_io.h"
#include "qk_norm_rotary_io.h"

namespace qwd::ort {

namespace {

constexpr const char* kCpu = "CPUExecutionProvider";

// QuantLinear's and QuantSwiGLU's normed X, kept per thread: a fresh buffer faults its pages in every call.
thread_local std::vector<float> normed;

struct SwiGLUKernel : Kernel<SwiGLUKernel>, SwiGLUOp {
  static constexpr const char* kProvider = kCpu;
  using SwiGLUOp::SwiGLUOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    swiglu(a.gate_up, a.y, a.rows, a.inter, PoolParallel(ctx));
  }
};

struct QuantSwiGLUKernel : Kernel<QuantSwiGLUKernel>, QuantSwiGLUOp {
  static constexpr const char* kProvider = kCpu;
  using QuantSwiGLUOp::QuantSwiGLUOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    const PoolParallel par(ctx);
    quant_swiglu(normed_input(a.x, a.tokens, a.w.cols, a.norm, normed, par), a.tokens, a.w, a.y, static_cast<int>(accuracy_level), par);
  }
};

struct QuantLinearKernel : Kernel<QuantLinearKernel>, QuantLinearOp {
  static constexpr const char* kProvider = kCpu;
  using QuantLinearOp::QuantLinearOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    const PoolParallel par(ctx);
    quant_linear(normed_input(a.x, a.tokens, a.w.cols, a.norm, normed, par), a.tokens, a.w, a.bias, a.y, static_cast<int>(accuracy_level), par);
  }
};

struct LinearKernel : Kernel<LinearKernel>, LinearOp {
  static constexpr const char* kProvider = kCpu;
  using LinearOp::LinearOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    linear(a.x, a.tokens, a.w, a.bias, a.y, PoolParallel(ctx));
  }
};

struct QuantGatherKernel : Kernel<QuantGatherKernel>, QuantGatherOp {
  static constexpr const char* kProvider = kCpu;
  using QuantGatherOp::QuantGatherOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    quant_gather(a.indices, a.count, a.table, a.y, PoolParallel(ctx));
  }
};

template <bool kQuantized>
struct MoEKernel : Kernel<MoEKernel<kQuantized>>, MoEOp<kQuantized> {
  static constexpr const char* kProvider = kCpu;
  using MoEOp<kQuantized>::MoEOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = this->read(ctx);
    const int64_t H = a.s.hidden, I = a.s.inter, S = a.s.shared_inter;
    MoEProblem p;
    p.x = a.x;
    p.router_logits = a.router_logits;
    p.tokens = a.s.tokens;
    p.hidden = H;
    p.top_k = this->top_k;
    p.normalize_topk = this->normalize != 0;
    for (int64_t e = 0; e < a.s.experts; ++e)
      p.experts.push_back({a.gate_up.slice(e * 2 * I, 2 * I), a.down.slice(e * H, H)});
    Expert shared;
    if (a.shared_gate_up) {
      shared = {Weights::fp32(a.shared_gate_up, 2 * S, H), Weights::fp32(a.shared_down, H, S)};
      p.shared = &shared;
      p.shared_gate = a.shared_gate;
    }
    moe(p, a.y, PoolParallel(ctx));
  }
};

template <bool kPacked>
struct QKNormRotaryKernel : Kernel<QKNormRotaryKernel<kPacked>>, QKNormRotaryOp<kPacked> {
  static constexpr const char* kProvider = kCpu;
  using QKNormRotaryOp<kPacked>::QKNormRotaryOp;

  void Compute(Ort::KernelContext& ctx) {
    qk_norm_rotary(this->read(ctx), PoolParallel(ctx));
  }
};

struct AttentionKernel : Kernel<AttentionKernel>, AttentionOp {
  static constexpr const char* kProvider = kCpu;
  using AttentionOp::AttentionOp;

  void Compute(Ort::KernelContext& ctx) { attention(read(ctx), PoolParallel(ctx)); }
};

}  // namespace

std::vector<OrtCustomOp*> cpu_ops() {
  static Op<SwiGLUKernel> swiglu_op;
  static Op<QuantSwiGLUKernel> quant_swiglu_op;
  static Op<QuantLinearKernel> quant_linear_op;
  static Op<LinearKernel> linear_op;
  static Op<QuantGatherKernel> quant_gather_op;
  static Op<MoEKernel<false>> moe_op;
  static Op<MoEKernel<true>> qmoe_op;
  static Op<QKNormRotaryKernel<false>> qk_op;
  static Op<QKNormRotaryKernel<true>> qk_packed_op;
  static Op<AttentionKernel> attention_op;
  return {&swiglu_op, &quant_swiglu_op, &quant_linear_op, &linear_op,    &quant_gather_op, &moe_op,
          &qmoe_op,   &qk_op,           &qk_packed_op,    &attention_op};
}

}  // namespace qwd::ort
