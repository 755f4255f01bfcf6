// QKNormRotary and QKNormRotaryPacked read into the core's one problem, shared by the CPU and CUDA
// adapters (pointers are wherever the provider keeps tensors).
#pragma once

#include <type_traits>

#include "../cpu/qk_norm_rotary.h"
#include "adapter.h"
#include "schema_io.h"
#include "shapes.h"

namespace qwd::ort {

// kPacked picks the op: inputs (QKV | Q, K), q_norm_weight, k_norm_weight, position_ids, cos, sin.
// Device kernels derive from this and add kProvider and Compute.
template <bool kPacked>
struct QKNormRotaryOp : std::conditional_t<kPacked, schema::QKNormRotaryPacked, schema::QKNormRotary> {
  static constexpr size_t kTables = kPacked ? 1 : 2;  // index of q_norm_weight
  int64_t num_heads, kv_num_heads;
  float epsilon;

  explicit QKNormRotaryOp(const Ort::ConstKernelInfo& info)
      : num_heads(info.GetAttribute<int64_t>("num_heads")),
        kv_num_heads(info.GetAttribute<int64_t>("kv_num_heads")),
        epsilon(attr_float(info, "epsilon", 1e-6f)) {}

  // The problem with every pointer set and the outputs allocated.
  QKNormRotaryProblem read(Ort::KernelContext& ctx) const {
    constexpr size_t n = std::size(QKNormRotaryOp::kInputs);
    Ort::ConstValue in[7];  // either op's inputs; a size from n would make every in[i].GetTensorData dependent
    static_assert(n <= std::size(in));
    shapes::Shape sh[std::size(in)];
    for (size_t i = 0; i < n; ++i) sh[i] = shape(in[i] = ctx.GetInput(i));
    const Ort::ConstValue* t_in = in + kTables;  // q_norm_weight, k_norm_weight, position_ids, cos, sin
    const shapes::Shape* t = sh + kTables;
    const int64_t H = num_heads, KV = kv_num_heads;
    const auto s = kPacked ? shapes::qk_norm_rotary_packed(sh[0], t[0], t[1], t[2], t[3], t[4], H, KV)
                           : shapes::qk_norm_rotary(sh[0], sh[1], t[0], t[1], t[2], t[3], t[4], H, KV);
    QKNormRotaryProblem p;
    p.batch = s.batch;
    p.seq = s.seq;
    p.num_heads = num_heads;
    p.kv_num_heads = kv_num_heads;
    p.head_dim = s.head_dim;
    p.max_positions = s.max_positions;
    p.epsilon = epsilon;
    p.q_weight = t_in[0].GetTensorData<float>();
    p.k_weight = t_in[1].GetTensorData<float>();
    p.position_ids = t_in[2].GetTensorData<int64_t>();
    p.cos = t_in[3].GetTensorData<float>();
    p.sin = t_in[4].GetTensorData<float>();
    if constexpr (kPacked)
      packed_rows(p, in[0].GetTensorData<float>(), ctx.GetOutput(0, sh[0]).GetTensorMutableData<float>());
    else
      dense_rows(p, in[0].GetTensorData<float>(), in[1].GetTensorData<float>(),
                 ctx.GetOutput(0, sh[0]).GetTensorMutableData<float>(),
                 ctx.GetOutput(1, sh[1]).GetTensorMutableData<float>());
    return p;
  }
};

}  // namespace qwd::ort
