// CPU execution provider adapters: read tensors and attributes, check shapes, call the core.
#include <memory>

#include "../cpu/moe.h"
#include "../cpu/quant_swiglu.h"
#include "../cpu/swiglu.h"
#include "adapter.h"
#include "qk_norm_rotary_io.h"
#include "shapes.h"

namespace qwd::ort {

namespace {

constexpr const char* kCpu = "CPUExecutionProvider";

struct SwiGLUKernel : Kernel<SwiGLUKernel> {
  static constexpr const char* kName = "SwiGLU";
  static constexpr const char* kProvider = kCpu;
  static constexpr const Port* kInputs = io::kSwiGLU;
  static constexpr size_t kInputCount = std::size(io::kSwiGLU);
  static constexpr size_t kOutputs = 1;

  explicit SwiGLUKernel(const Ort::ConstKernelInfo&) {}

  void Compute(Ort::KernelContext& ctx) {
    auto gate_up = ctx.GetInput(0);
    const auto s = shapes::swiglu(shape(gate_up));
    auto y = ctx.GetOutput(0, s.out);
    swiglu(gate_up.GetTensorData<float>(), y.GetTensorMutableData<float>(), s.rows, s.inter, PoolParallel(ctx));
  }
};

struct QuantSwiGLUKernel : Kernel<QuantSwiGLUKernel> {
  static constexpr const char* kName = "QuantSwiGLU";
  static constexpr const char* kProvider = kCpu;
  static constexpr const Port* kInputs = io::kQuantSwiGLU;
  static constexpr size_t kInputCount = std::size(io::kQuantSwiGLU);
  static constexpr size_t kOutputs = 1;
  int64_t K, N, bits, block_size;

  explicit QuantSwiGLUKernel(const Ort::ConstKernelInfo& info)
      : K(info.GetAttribute<int64_t>("K")),
        N(info.GetAttribute<int64_t>("N")),
        bits(info.GetAttribute<int64_t>("bits")),
        block_size(info.GetAttribute<int64_t>("block_size")) {}

  void Compute(Ort::KernelContext& ctx) {
    auto x = ctx.GetInput(0), b = ctx.GetInput(1), scales = ctx.GetInput(2), zp = input(ctx, 3);
    const auto zp_shape = zp ? shape(zp) : shapes::Shape{};
    const auto s = shapes::quant_swiglu(shape(x), shape(b), shape(scales), zp ? &zp_shape : nullptr, K, N, bits,
                                        block_size);
    auto y = ctx.GetOutput(0, s.out);
    const Weights w = Weights::quantized(b.GetTensorData<uint8_t>(), scales.GetTensorData<float>(),
                                         data_or_null<uint8_t>(zp), N, K, static_cast<int>(bits), block_size);
    quant_swiglu(x.GetTensorData<float>(), s.tokens, w, y.GetTensorMutableData<float>(), PoolParallel(ctx));
  }
};

// MoE and QMoE share everything but how expert weights are read; kQuantized picks the input layout.
template <bool kQuantized>
struct MoEKernel : Kernel<MoEKernel<kQuantized>> {
  static constexpr const char* kName = kQuantized ? "QMoE" : "MoE";
  static constexpr const char* kProvider = kCpu;
  static constexpr const Port* kInputs = kQuantized ? io::kQMoE : io::kMoE;
  static constexpr size_t kInputCount = kQuantized ? std::size(io::kQMoE) : std::size(io::kMoE);
  static constexpr size_t kOutputs = 1;
  static constexpr size_t kShared = kQuantized ? 6 : 4;  // index of shared_gate_up
  int64_t top_k, normalize, bits, block_size;

  explicit MoEKernel(const Ort::ConstKernelInfo& info)
      : top_k(info.GetAttribute<int64_t>("top_k")),
        normalize(attr_int(info, "normalize_topk", 0)),
        bits(kQuantized ? info.GetAttribute<int64_t>("bits") : 0),
        block_size(kQuantized ? info.GetAttribute<int64_t>("block_size") : 0) {}

  void Compute(Ort::KernelContext& ctx) {
    auto x = ctx.GetInput(0), logits = ctx.GetInput(1);
    auto gate_up = ctx.GetInput(2), down = ctx.GetInput(kQuantized ? 4 : 3);
    auto sgu = input(ctx, kShared), sd = input(ctx, kShared + 1), sg = input(ctx, kShared + 2);
    const shapes::Shape sgu_s = sgu ? shape(sgu) : shapes::Shape{}, sd_s = sd ? shape(sd) : shapes::Shape{},
                        sg_s = sg ? shape(sg) : shapes::Shape{};
    const auto s = shapes::moe(shape(x), shape(logits), shape(gate_up), shape(down), sgu ? &sgu_s : nullptr,
                               sd ? &sd_s : nullptr, sg ? &sg_s : nullptr, top_k, bits, block_size);
    auto y = ctx.GetOutput(0, {s.tokens, s.hidden});

    MoEProblem p;
    p.x = x.GetTensorData<float>();
    p.router_logits = logits.GetTensorData<float>();
    p.tokens = s.tokens;
    p.hidden = s.hidden;
    p.top_k = top_k;
    p.normalize_topk = normalize != 0;
    p.experts = experts(ctx, gate_up, down, s);
    Expert shared;
    if (sgu) {
      shared = {Weights::fp32(sgu.GetTensorData<float>(), 2 * s.shared_inter, s.hidden),
                Weights::fp32(sd.GetTensorData<float>(), s.hidden, s.shared_inter)};
      p.shared = &shared;
      p.shared_gate = data_or_null<float>(sg);
    }
    moe(p, y.GetTensorMutableData<float>(), PoolParallel(ctx));
  }

  std::vector<Expert> experts(Ort::KernelContext& ctx, const Ort::ConstValue& gate_up, const Ort::ConstValue& down,
                              const shapes::MoE& s) const {
    const int64_t H = s.hidden, I = s.inter;
    Weights all_gate_up, all_down;  // every expert stacked: [E*2I, H], [E*H, I]
    if constexpr (kQuantized) {
      const int b = static_cast<int>(bits);
      all_gate_up = Weights::quantized(gate_up.GetTensorData<uint8_t>(), ctx.GetInput(3).GetTensorData<float>(),
                                       nullptr, s.experts * 2 * I, H, b, block_size);
      all_down = Weights::quantized(down.GetTensorData<uint8_t>(), ctx.GetInput(5).GetTensorData<float>(), nullptr,
                                    s.experts * H, I, b, block_size);
    } else {
      all_gate_up = Weights::fp32(gate_up.GetTensorData<float>(), s.experts * 2 * I, H);
      all_down = Weights::fp32(down.GetTensorData<float>(), s.experts * H, I);
    }
    std::vector<Expert> out;
    for (int64_t e = 0; e < s.experts; ++e)
      out.push_back({all_gate_up.slice(e * 2 * I, 2 * I), all_down.slice(e * H, H)});
    return out;
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

}  // namespace

std::vector<OrtCustomOp*> cpu_ops() {
  static Op<SwiGLUKernel> swiglu_op;
  static Op<QuantSwiGLUKernel> quant_swiglu_op;
  static Op<MoEKernel<false>> moe_op;
  static Op<MoEKernel<true>> qmoe_op;
  static Op<QKNormRotaryKernel<false>> qk_op;
  static Op<QKNormRotaryKernel<true>> qk_packed_op;
  return {&swiglu_op, &quant_swiglu_op, &moe_op, &qmoe_op, &qk_op, &qk_packed_op};
}

}  // namespace qwd::ort
