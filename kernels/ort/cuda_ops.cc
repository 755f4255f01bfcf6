// CUDA execution provider adapters: same schemas and shape checks as the CPU ones; tensors live on
// the GPU and every kernel is enqueued on the session's compute stream.
#include "../cuda/kernels.h"
#include "adapter.h"
#include "qk_norm_rotary_io.h"
#include "shapes.h"

namespace qwd::ort {

namespace {

constexpr const char* kCuda = "CUDAExecutionProvider";

shapes::Shape optional_shape(const Ort::ConstValue& v) { return v ? shape(v) : shapes::Shape{}; }

struct SwiGLUCuda : Kernel<SwiGLUCuda> {
  static constexpr const char* kName = "SwiGLU";
  static constexpr const char* kProvider = kCuda;
  static constexpr const Port* kInputs = io::kSwiGLU;
  static constexpr size_t kInputCount = std::size(io::kSwiGLU);
  static constexpr size_t kOutputs = 1;

  explicit SwiGLUCuda(const Ort::ConstKernelInfo&) {}

  void Compute(Ort::KernelContext& ctx) {
    auto gate_up = ctx.GetInput(0);
    const auto s = shapes::swiglu(shape(gate_up));
    auto y = ctx.GetOutput(0, s.out);
    cuda::swiglu(gate_up.GetTensorData<float>(), y.GetTensorMutableData<float>(), s.rows, s.inter,
                 ctx.GetGPUComputeStream());
  }
};

struct QuantSwiGLUCuda : Kernel<QuantSwiGLUCuda> {
  static constexpr const char* kName = "QuantSwiGLU";
  static constexpr const char* kProvider = kCuda;
  static constexpr const Port* kInputs = io::kQuantSwiGLU;
  static constexpr size_t kInputCount = std::size(io::kQuantSwiGLU);
  static constexpr size_t kOutputs = 1;
  int64_t K, N, bits, block_size;

  explicit QuantSwiGLUCuda(const Ort::ConstKernelInfo& info)
      : K(info.GetAttribute<int64_t>("K")),
        N(info.GetAttribute<int64_t>("N")),
        bits(info.GetAttribute<int64_t>("bits")),
        block_size(info.GetAttribute<int64_t>("block_size")) {}

  void Compute(Ort::KernelContext& ctx) {
    auto x = ctx.GetInput(0), b = ctx.GetInput(1), scales = ctx.GetInput(2), zp = input(ctx, 3);
    const auto zp_shape = optional_shape(zp);
    const auto s = shapes::quant_swiglu(shape(x), shape(b), shape(scales), zp ? &zp_shape : nullptr, K, N, bits,
                                        block_size);
    auto y = ctx.GetOutput(0, s.out);
    const Weights w = Weights::quantized(b.GetTensorData<uint8_t>(), scales.GetTensorData<float>(),
                                         data_or_null<uint8_t>(zp), N, K, static_cast<int>(bits), block_size);
    cuda::gate_up_swiglu(x.GetTensorData<float>(), s.tokens, w, y.GetTensorMutableData<float>(),
                         ctx.GetGPUComputeStream());
  }
};

template <bool kQuantized>
struct MoECuda : Kernel<MoECuda<kQuantized>> {
  static constexpr const char* kName = kQuantized ? "QMoE" : "MoE";
  static constexpr const char* kProvider = kCuda;
  static constexpr const Port* kInputs = kQuantized ? io::kQMoE : io::kMoE;
  static constexpr size_t kInputCount = kQuantized ? std::size(io::kQMoE) : std::size(io::kMoE);
  static constexpr size_t kOutputs = 1;
  static constexpr size_t kShared = kQuantized ? 6 : 4;
  int64_t top_k, normalize, bits, block_size;

  explicit MoECuda(const Ort::ConstKernelInfo& info)
      : top_k(info.GetAttribute<int64_t>("top_k")),
        normalize(attr_int(info, "normalize_topk", 0)),
        bits(kQuantized ? info.GetAttribute<int64_t>("bits") : 0),
        block_size(kQuantized ? info.GetAttribute<int64_t>("block_size") : 0) {}

  void Compute(Ort::KernelContext& ctx) {
    auto x = ctx.GetInput(0), logits = ctx.GetInput(1);
    auto gate_up = ctx.GetInput(2), down = ctx.GetInput(kQuantized ? 4 : 3);
    auto sgu = input(ctx, kShared), sd = input(ctx, kShared + 1), sg = input(ctx, kShared + 2);
    const auto sgu_s = optional_shape(sgu), sd_s = optional_shape(sd), sg_s = optional_shape(sg);
    const auto s = shapes::moe(shape(x), shape(logits), shape(gate_up), shape(down), sgu ? &sgu_s : nullptr,
                               sd ? &sd_s : nullptr, sg ? &sg_s : nullptr, top_k, bits, block_size);
    auto y = ctx.GetOutput(0, {s.tokens, s.hidden});
    cuda::MoEDevice p{};
    p.x = x.GetTensorData<float>();
    p.router_logits = logits.GetTensorData<float>();
    p.tokens = s.tokens;
    p.hidden = s.hidden;
    p.experts = s.experts;
    p.inter = s.inter;
    p.top_k = top_k;
    p.normalize_topk = normalize != 0;
    if constexpr (kQuantized) {
      const int b = static_cast<int>(bits);
      p.gate_up = Weights::quantized(gate_up.GetTensorData<uint8_t>(), ctx.GetInput(3).GetTensorData<float>(),
                                     nullptr, s.experts * 2 * s.inter, s.hidden, b, block_size);
      p.down = Weights::quantized(down.GetTensorData<uint8_t>(), ctx.GetInput(5).GetTensorData<float>(), nullptr,
                                  s.experts * s.hidden, s.inter, b, block_size);
    } else {
      p.gate_up = Weights::fp32(gate_up.GetTensorData<float>(), s.experts * 2 * s.inter, s.hidden);
      p.down = Weights::fp32(down.GetTensorData<float>(), s.experts * s.hidden, s.inter);
    }
    p.shared_gate_up = data_or_null<float>(sgu);
    p.shared_down = data_or_null<float>(sd);
    p.shared_gate = data_or_null<float>(sg);
    p.shared_inter = s.shared_inter;
    cuda::moe(p, y.GetTensorMutableData<float>(), ctx.GetGPUComputeStream());
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
