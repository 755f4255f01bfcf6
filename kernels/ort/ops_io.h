// SwiGLU, QuantSwiGLU, QuantLinear, Linear, QuantGather, MoE and QMoE read once for every provider: schema, attributes, shape checks and
// weight views (pointers are wherever the provider keeps tensors). Device kernels derive from these
// and add kProvider and Compute.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include "../cpu/rms_norm.h"
#include "../cpu/weights.h"
#include "adapter.h"
#include "schema_io.h"
#include "shapes.h"

namespace qwd::ort {

struct SwiGLUOp : schema::SwiGLU {
  struct Args {
    const float* gate_up;  // [rows, 2*inter]
    float* y;              // [rows, inter]
    int64_t rows, inter;
  };

  explicit SwiGLUOp(const Ort::ConstKernelInfo&) {}

  Args read(Ort::KernelContext& ctx) const {
    auto gate_up = ctx.GetInput(0);
    const auto s = shapes::swiglu(shape(gate_up));
    return {gate_up.GetTensorData<float>(), ctx.GetOutput(0, s.out).GetTensorMutableData<float>(), s.rows, s.inter};
  }
};

// MatMulNBits' weight tensors as a view: packed codes, float32 or float16 scales, optional zero points.
inline Weights quantized_weights(const char* op, const Ort::ConstValue& b, const Ort::ConstValue& scales,
                                 const Ort::ConstValue& zp, int64_t N, int64_t K, int64_t bits, int64_t block_size,
                                 int64_t row_tile) {
  const auto scale_type = scales.GetTensorTypeAndShapeInfo().GetElementType();
  if (scale_type != kFloat && scale_type != kFloat16)
    throw std::invalid_argument(std::string("qwdeploy.") + op + ": scales must be float32 or float16");
  const uint8_t* packed = b.GetTensorData<uint8_t>();
  const uint8_t* zero_points = data_or_null<uint8_t>(zp);
  const int nbits = static_cast<int>(bits);
  Weights w = scale_type == kFloat
                  ? Weights::quantized(packed, scales.GetTensorData<float>(), zero_points, N, K, nbits, block_size)
                  : Weights::quantized(packed, static_cast<const uint16_t*>(scales.GetTensorRawData()), zero_points,
                                       N, K, nbits, block_size);
  w.row_tile = row_tile;
  return w;
}

// QuantSwiGLU and QuantLinear: MatMulNBits' attributes and tensors, and the optional norm in front.
template <bool kLinear>
struct QuantMatMulOp : std::conditional_t<kLinear, schema::QuantLinear, schema::QuantSwiGLU> {
  static constexpr size_t kSkip = kLinear ? 5 : 4;  // then norm_weight, the last input
  static_assert(std::size(QuantMatMulOp::kInputs) == kSkip + 2, "skip and norm_weight are the last two inputs");
  int64_t K, N, bits, block_size, accuracy_level, row_tile;
  float epsilon;

  struct Args {
    const float* x;  // [tokens, K]
    int64_t tokens;
    Weights w;          // [N, K], MatMulNBits layout
    const float* bias;  // [N] or null
    float* y;           // [tokens, N] (QuantLinear) or [tokens, N/2] (QuantSwiGLU)
    RmsNorm norm;       // of x, before the product, where norm.weight is set
  };

  explicit QuantMatMulOp(const Ort::ConstKernelInfo& info)
      : K(info.GetAttribute<int64_t>("K")),
        N(info.GetAttribute<int64_t>("N")),
        bits(info.GetAttribute<int64_t>("bits")),
        block_size(info.GetAttribute<int64_t>("block_size")),
        accuracy_level(info.GetAttribute<int64_t>("accuracy_level")),
        row_tile(attr_int(info, "row_tile", 1)),
        epsilon(attr_float(info, "epsilon", 1e-5f)) {}

  Args read(Ort::KernelContext& ctx) const {
    auto x = ctx.GetInput(0), b = ctx.GetInput(1), scales = ctx.GetInput(2), zp = input(ctx, 3);
    const auto bias = kLinear ? input(ctx, 4) : Ort::ConstValue{nullptr};
    const auto skip = input(ctx, kSkip), norm_weight = input(ctx, kSkip + 1);
    const auto zp_shape = optional_shape(zp), bias_shape = optional_shape(bias);
    const auto skip_shape = optional_shape(skip), weight_shape = optional_shape(norm_weight);
    const auto x_shape = shape(x);
    const auto s = kLinear ? shapes::quant_linear(x_shape, shape(b), shape(scales), zp ? &zp_shape : nullptr,
                                                  bias ? &bias_shape : nullptr, K, N, bits, block_size, row_tile)
                           : shapes::quant_swiglu(x_shape, shape(b), shape(scales), zp ? &zp_shape : nullptr, K, N,
                                                  bits, block_size, row_tile);
    auto sum = ctx.GetOutputCount() > 1 ? ctx.GetOutput(1, x_shape) : Ort::UnownedValue{nullptr};
    shapes::prenorm(this->kName, x_shape, skip ? &skip_shape : nullptr, norm_weight ? &weight_shape : nullptr,
                    sum != nullptr);
    return {x.GetTensorData<float>(),
            s.tokens,
            quantized_weights(this->kName, b, scales, zp, N, K, bits, block_size, row_tile),
            data_or_null<float>(bias),
            ctx.GetOutput(0, s.out).GetTensorMutableData<float>(),
            {data_or_null<float>(norm_weight), epsilon, data_or_null<float>(skip),
             sum ? sum.GetTensorMutableData<float>() : nullptr}};
  }
};
using QuantSwiGLUOp = QuantMatMulOp<false>;
using QuantLinearOp = QuantMatMulOp<true>;

// QuantGather: QuantLinear's weight attributes and tensors, read as a table of rows.
struct LinearOp : schema::Linear {
  struct Args {
    const float* x;  // [tokens, K]
    int64_t tokens;
    Weights w;          // [N, K] float
    const float* bias;  // [N] or null
    float* y;           // [tokens, N]
  };

  explicit LinearOp(const Ort::ConstKernelInfo&) {}

  Args read(Ort::KernelContext& ctx) const {
    auto x = ctx.GetInput(0), w = ctx.GetInput(1), bias = input(ctx, 2);
    const auto w_shape = shape(w), bias_shape = optional_shape(bias);
    const auto s = shapes::linear(shape(x), w_shape, bias ? &bias_shape : nullptr);
    return {x.GetTensorData<float>(), s.tokens, Weights::fp32(w.GetTensorData<float>(), w_shape[0], w_shape[1]),
            data_or_null<float>(bias), ctx.GetOutput(0, s.out).GetTensorMutableData<float>()};
  }
};

struct QuantGatherOp : schema::QuantGather {
  int64_t K, N, bits, block_size, row_tile;

  struct Args {
    const int64_t* indices;
    int64_t count;
    Weights table;  // [N, K]
    float* y;       // [count, K]
  };

  explicit QuantGatherOp(const Ort::ConstKernelInfo& info)
      : K(info.GetAttribute<int64_t>("K")),
        N(info.GetAttribute<int64_t>("N")),
        bits(info.GetAttribute<int64_t>("bits")),
        block_size(info.GetAttribute<int64_t>("block_size")),
        row_tile(info.GetAttribute<int64_t>("row_tile")) {}

  Args read(Ort::KernelContext& ctx) const {
    auto data = ctx.GetInput(0), indices = ctx.GetInput(1), scales = ctx.GetInput(2), zp = input(ctx, 3);
    const auto zp_shape = optional_shape(zp);
    const auto s = shapes::quant_gather(shape(data), shape(indices), shape(scales), zp ? &zp_shape : nullptr, K, N,
                                        bits, block_size, row_tile);
    return {indices.GetTensorData<int64_t>(), s.count,
            quantized_weights(kName, data, scales, zp, N, K, bits, block_size, row_tile),
            ctx.GetOutput(0, s.out).GetTensorMutableData<float>()};
  }
};

// MoE and QMoE share everything but how expert weights are read; kQuantized picks the input layout.
template <bool kQuantized>
struct MoEOp : std::conditional_t<kQuantized, schema::QMoE, schema::MoE> {
  static constexpr size_t kShared = kQuantized ? 6 : 4;  // index of shared_gate_up
  int64_t top_k, normalize, bits, block_size;

  struct Args {
    shapes::MoE s;
    const float* x;              // [tokens, hidden]
    const float* router_logits;  // [tokens, experts]
    Weights gate_up, down;       // every expert stacked: [E*2I, H], [E*H, I]
    const float* shared_gate_up;  // [2S, H] or null
    const float* shared_down;     // [H, S] or null
    const float* shared_gate;     // [1, H] or null
    float* y;                     // [tokens, hidden]
  };

  explicit MoEOp(const Ort::ConstKernelInfo& info)
      : top_k(info.GetAttribute<int64_t>("top_k")),
        normalize(attr_int(info, "normalize_topk", 0)),
        bits(kQuantized ? info.GetAttribute<int64_t>("bits") : 0),
        block_size(kQuantized ? info.GetAttribute<int64_t>("block_size") : 0) {}

  Args read(Ort::KernelContext& ctx) const {
    auto x = ctx.GetInput(0), logits = ctx.GetInput(1);
    auto gate_up = ctx.GetInput(2), down = ctx.GetInput(kQuantized ? 4 : 3);
    auto sgu = input(ctx, kShared), sd = input(ctx, kShared + 1), sg = input(ctx, kShared + 2);
    const auto sgu_s = optional_shape(sgu), sd_s = optional_shape(sd), sg_s = optional_shape(sg);
    Args a{};
    a.s = shapes::moe(shape(x), shape(logits), shape(gate_up), shape(down), sgu ? &sgu_s : nullptr,
                      sd ? &sd_s : nullptr, sg ? &sg_s : nullptr, top_k, bits, block_size);
    const int64_t E = a.s.experts, H = a.s.hidden, I = a.s.inter;
    if constexpr (kQuantized) {
      const int b = static_cast<int>(bits);
      a.gate_up = Weights::quantized(gate_up.GetTensorData<uint8_t>(), ctx.GetInput(3).GetTensorData<float>(),
                                     nullptr, E * 2 * I, H, b, block_size);
      a.down = Weights::quantized(down.GetTensorData<uint8_t>(), ctx.GetInput(5).GetTensorData<float>(), nullptr,
                                  E * H, I, b, block_size);
    } else {
      a.gate_up = Weights::fp32(gate_up.GetTensorData<float>(), E * 2 * I, H);
      a.down = Weights::fp32(down.GetTensorData<float>(), E * H, I);
    }
    a.x = x.GetTensorData<float>();
    a.router_logits = logits.GetTensorData<float>();
    a.shared_gate_up = data_or_null<float>(sgu);
    a.shared_down = data_or_null<float>(sd);
    a.shared_gate = data_or_null<float>(sg);
    a.y = ctx.GetOutput(0, {a.s.tokens, H}).template GetTensorMutableData<float>();
    return a;
  }
};

}  // namespace qwd::ort
