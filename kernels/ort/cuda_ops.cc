// CUDA execution provider adapters: same schemas and shape checks as the CPU ones; tensors live on
// the GPU and every kernel is enqueued on the session's compute stream.
#include "../cuda/kernels.h"
#include "adapter.h"
#include "ops_io.h"
#include "qk_norm_rotary_io.h"

namespace qwd::ort {

namespace {

constexpr const char* kCuda = "CUDAExecutionProvider";

struct SwiGLUCuda : Kernel<SwiGLUCuda>, SwiGLUOp {
  static constexpr const char* kProvider = kCuda;
  using SwiGLUOp::SwiGLUOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    cuda::swiglu(a.gate_up, a.y, a.rows, a.inter, ctx.GetGPUComputeStream());
  }
};

struct QuantSwiGLUCuda : Kernel<QuantSwiGLUCuda>, QuantSwiGLUOp {
  static constexpr const char* kProvider = kCuda;
  using QuantSwiGLUOp::QuantSwiGLUOp;

  void Compute(Ort::KernelContext& ctx) {
    // accuracy_level 4 permits int8 activations, it does not ask for them: CUDA keeps float, as ONNX Runtime's
    // MatMulNBits CUDA kernel does.
    const auto a = read(ctx);
    if (a.w.scales_f16) throw std::invalid_argument("qwdeploy.QuantSwiGLU: the CUDA kernel reads float32 scales");
    if (a.w.row_tile != 1) throw std::invalid_argument("qwdeploy.QuantSwiGLU: the CUDA kernel reads rows in order");
    if (a.norm.weight) throw std::invalid_argument("qwdeploy.QuantSwiGLU: the CUDA kernel takes no norm in front");
    cuda::gate_up_swiglu(a.x, a.tokens, a.w, a.y, ctx.GetGPUComputeStream());
  }
};

template <bool kQuantized>
struct MoECuda : Kernel<MoECuda<kQuantized>>, MoEOp<kQuantized> {
  static constexpr const char* kProvider = kCuda;
  using MoEOp<kQuantized>::MoEOp;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = this->read(ctx);
    cuda::MoEDevice p{};
    p.x = a.x;
    p.router_logits = a.router_logits;
    p.tokens = a.s.tokens;
    p.hidden = a.s.hidden;
    p.experts = a.s.experts;
    p.inter = a.s.inter;
    p.top_k = this->top_k;
    p.normalize_topk = this->normalize != 0;
    p.gate_up = a.gate_up;
    p.down = a.down;
    p.shared_gate_up = a.shared_gate_up;
    p.shared_down = a.shared_down;
    p.shared_gate = a.shared_gate;
    p.shared_inter = a.s.shared_inter;
    cuda::moe(p, a.y, ctx.GetGPUComputeStream());
  }
};

template <bool kPacked>
struct QKNormRotaryCuda : Kernel<QKNormRotaryCuda<kPacked>>, QKNormRotaryOp<kPacked> {
  static constexpr const char* kProvider = kCuda;
  using QKNormRotaryOp<kPacked>::QKNormRotaryOp;

  void Compute(Ort::KernelContext& ctx) {
    cuda::qk_norm_rotary(this->read(ctx), ctx.GetGPUComputeStream());
  }
};

}  // namespace

std::vector<OrtCustomOp*> cuda_ops() {
  static Op<SwiGLUCuda> swiglu_op;
  static Op<QuantSwiGLUCuda> quant_swiglu_op;
  static Op<MoECuda<false>> moe_op;
  static Op<MoECuda<true>> qmoe_op;
  static Op<QKNormRotaryCuda<false>> qk_op;
  static Op<QKNormRotaryCuda<true>> qk_packed_op;
  return {&swiglu_op, &quant_swiglu_op, &moe_op, &qmoe_op, &qk_op, &qk_packed_op};
}

}  // namespace qwd::ort
