// GroupQueryAttention's tensors and attributes read into the core's problem (kernels/cpu/attention.h).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/attention.h"
#include "adapter.h"
#include "schema_io.h"
#include "shapes.h"

namespace qwd::ort {

// kCache: the element type of past and present, kFloat or kFloat16 (one registration each).
template <ONNXTensorElementDataType kCache>
struct AttentionOp : schema::GroupQueryAttention<kCache> {
  int64_t num_heads, kv_num_heads, do_rotary, bf16_products;
  float scale, epsilon;

  explicit AttentionOp(const Ort::ConstKernelInfo& info)
      : num_heads(info.GetAttribute<int64_t>("num_heads")),
        kv_num_heads(info.GetAttribute<int64_t>("kv_num_heads")),
        do_rotary(attr_int(info, "do_rotary", 0)),
        bf16_products(attr_int(info, "bf16_products", 0)),
        scale(attr_float(info, "scale", 0.0f)),
        epsilon(attr_float(info, "epsilon", 1e-6f)) {}

  // The problem with every pointer set and the outputs allocated.
  AttentionProblem read(Ort::KernelContext& ctx) const {
    const auto query = ctx.GetInput(0), key = input(ctx, 1), value = input(ctx, 2), past_k = ctx.GetInput(3),
               past_v = ctx.GetInput(4), seqlens = ctx.GetInput(5), total = ctx.GetInput(6);
    const auto cos = do_rotary ? input(ctx, 7) : Ort::ConstValue{nullptr};
    const auto sin = do_rotary ? input(ctx, 8) : Ort::ConstValue{nullptr};
    if (do_rotary && (!cos || !sin))
      throw std::invalid_argument("qwdeploy.GroupQueryAttention: do_rotary needs cos_cache and sin_cache");
    const auto key_shape = optional_shape(key), value_shape = optional_shape(value);
    const auto cos_shape = optional_shape(cos), sin_shape = optional_shape(sin);
    const auto s = shapes::attention(shape(query), key ? &key_shape : nullptr, value ? &value_shape : nullptr,
                                     shape(past_k), shape(past_v), shape(seqlens), shape(total),
                                     total.GetTensorData<int32_t>()[0], cos ? &cos_shape : nullptr,
                                     sin ? &sin_shape : nullptr, num_heads, kv_num_heads);
    AttentionProblem p;
    p.batch = s.batch;
    p.seq = s.seq;
    p.num_heads = num_heads;
    p.kv_num_heads = kv_num_heads;
    p.head_dim = s.head_dim;
    p.past_len = s.past;
    p.total_len = s.total;
    p.present_len = s.present_len;
    p.max_positions = s.max_positions;
    p.scale = scale;
    p.bf16_products = bf16_products != 0;
    if (s.packed)
      packed_qkv(p, query.GetTensorData<float>());
    else
      separate_qkv(p, query.GetTensorData<float>(), key.GetTensorData<float>(), value.GetTensorData<float>());
    p.cache = kCache == kFloat16 ? CacheType::kFloat16 : CacheType::kFloat32;
    p.past_k = past_k.GetTensorRawData();
    p.past_v = past_v.GetTensorRawData();
    p.seqlens_k = seqlens.GetTensorData<int32_t>();
    p.cos = data_or_null<float>(cos);
    p.sin = data_or_null<float>(sin);
    const auto q_norm = input(ctx, 9), k_norm = input(ctx, 10);
    if (static_cast<bool>(q_norm) != static_cast<bool>(k_norm))
      throw std::invalid_argument("qwdeploy.GroupQueryAttention: q_norm_weight and k_norm_weight come together");
    for (const auto& norm : {q_norm, k_norm})
      if (norm && shape(norm) != std::vector<int64_t>{s.head_dim})
        throw std::invalid_argument("qwdeploy.GroupQueryAttention: a q/k norm weight must be [head_dim = " +
                                    std::to_string(s.head_dim) + "]");
    p.q_norm = data_or_null<float>(q_norm);
    p.k_norm = data_or_null<float>(k_norm);
    p.epsilon = epsilon;
    p.out = ctx.GetOutput(0, s.out).GetTensorMutableData<float>();
    p.present_k = ctx.GetOutput(1, s.present).GetTensorMutableRawData();
    p.present_v = ctx.GetOutput(2, s.present).GetTensorMutableRawData();
    return p;
  }
};

}  // namespace qwd::ort
