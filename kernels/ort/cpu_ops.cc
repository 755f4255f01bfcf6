// CPU execution provider adapters: read tensors and attributes, check shapes, call the core.
#include <memory>
#include <mutex>

#include "../cpu/linear.h"
#include "../cpu/moe.h"
#include "../cpu/quant_gather.h"
#include "../cpu/quant_linear.h"
#include "../cpu/quant_swiglu.h"
#include "../cpu/resident.h"
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

// A quantized op's codes and scales where they are initializers, as copies in huge pages (resident.h),
// which the op then reads instead; none where they are not constant or there is nothing to gain.
class ResidentWeights {
 public:
  ResidentWeights() = default;
  // Copies made at kernel creation from the constant inputs `packed` and `scales`.
  ResidentWeights(const Ort::ConstKernelInfo& info, size_t packed, size_t scales)
      : packed_(resident_copy(constant(info, packed))), scales_(resident_copy(constant(info, scales))) {}

  // Copies another kernel made of these tensors, looked up once: QuantGather reads a row per token, so
  // it shares the LM head's copy of a tied table rather than copying a table of its own.
  void adopt(const Ort::ConstValue& packed, const Ort::ConstValue& scales) {
    std::call_once(adopted_, [&] {
      packed_ = resident_held(packed.GetTensorRawData(), bytes(packed));
      scales_ = resident_held(scales.GetTensorRawData(), bytes(scales));
    });
  }

  Weights over(Weights w) const {
    if (packed_) w.packed = static_cast<const uint8_t*>(packed_.get());
    if (scales_ && w.scales_f16) w.scales_f16 = static_cast<const uint16_t*>(scales_.get());
    if (scales_ && w.scales) w.scales = static_cast<const float*>(scales_.get());
    return w;
  }

 private:
  static size_t bytes(const Ort::ConstValue& value) {
    const auto type = value.GetTensorTypeAndShapeInfo();
    const size_t element = type.GetElementType() == kUint8 ? 1 : type.GetElementType() == kFloat16 ? 2 : 4;
    return type.GetElementCount() * element;
  }
  static std::shared_ptr<const void> resident_copy(const Ort::ConstValue& value) {
    return value ? qwd::resident_copy(value.GetTensorRawData(), bytes(value)) : nullptr;
  }
  static Ort::ConstValue constant(const Ort::ConstKernelInfo& info, size_t input) {
    int is_constant = 0;
    const Ort::ConstValue value = info.GetTensorConstantInput(input, &is_constant);
    return is_constant ? value : Ort::ConstValue{nullptr};
  }

  std::shared_ptr<const void> packed_, scales_;
  std::once_flag adopted_;
};

struct QuantSwiGLUKernel : Kernel<QuantSwiGLUKernel>, QuantSwiGLUOp {
  static constexpr const char* kProvider = kCpu;
  ResidentWeights resident;
  explicit QuantSwiGLUKernel(const Ort::ConstKernelInfo& info) : QuantSwiGLUOp(info), resident(info, 1, 2) {}

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    const PoolParallel par(ctx);
    quant_swiglu(normed_input(a.x, a.tokens, a.w.cols, a.norm, normed, par), a.tokens, resident.over(a.w), a.y,
                 static_cast<int>(accuracy_level), par);
  }
};

struct QuantLinearKernel : Kernel<QuantLinearKernel>, QuantLinearOp {
  static constexpr const char* kProvider = kCpu;
  ResidentWeights resident;
  explicit QuantLinearKernel(const Ort::ConstKernelInfo& info) : QuantLinearOp(info), resident(info, 1, 2) {}

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    const PoolParallel par(ctx);
    quant_linear(normed_input(a.x, a.tokens, a.w.cols, a.norm, normed, par), a.tokens, resident.over(a.w), a.bias,
                 a.y, static_cast<int>(accuracy_level), par);
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
  ResidentWeights resident;

  void Compute(Ort::KernelContext& ctx) {
    const auto a = read(ctx);
    resident.adopt(ctx.GetInput(0), ctx.GetInput(2));
    quant_gather(a.indices, a.count, resident.over(a.table), a.y, PoolParallel(ctx));
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

template <ONNXTensorElementDataType kCache>
struct AttentionKernel : Kernel<AttentionKernel<kCache>>, AttentionOp<kCache> {
  static constexpr const char* kProvider = kCpu;
  using AttentionOp<kCache>::AttentionOp;

  void Compute(Ort::KernelContext& ctx) { attention(this->read(ctx), PoolParallel(ctx)); }
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
  static Op<AttentionKernel<kFloat>> attention_op;
  static Op<AttentionKernel<kFloat16>> attention_f16_op;
  return {&swiglu_op, &quant_swiglu_op, &quant_linear_op, &linear_op,    &quant_gather_op, &moe_op,
          &qmoe_op,   &qk_op,           &qk_packed_op,    &attention_op, &attention_f16_op};
}

}  // namespace qwd::ort
