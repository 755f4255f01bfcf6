// Generated from kernels/schemas.py by kernels/schema_header.py; do not edit. After changing a schema run
//   python -m qwdeploy.kernels.schema_header
// The adapters' op structs derive from these, so ONNX Runtime sees exactly the schemas' names and types.
#pragma once

#include "adapter.h"

namespace qwd::ort::schema {

struct SwiGLU {
  static constexpr const char* kName = "SwiGLU";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // gate_up
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
  };
};

struct QuantSwiGLU {
  static constexpr const char* kName = "QuantSwiGLU";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // X
      {kUint8, false},  // B
      {kAnyType, false},  // scales
      {kUint8, true},  // zero_points
      {kFloat, true},  // skip
      {kFloat, true},  // norm_weight
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
      {kFloat, true},  // sum
  };
};

struct QuantLinear {
  static constexpr const char* kName = "QuantLinear";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // X
      {kUint8, false},  // B
      {kAnyType, false},  // scales
      {kUint8, true},  // zero_points
      {kFloat, true},  // bias
      {kFloat, true},  // skip
      {kFloat, true},  // norm_weight
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
      {kFloat, true},  // sum
  };
};

struct Linear {
  static constexpr const char* kName = "Linear";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // X
      {kFloat, false},  // W
      {kFloat, true},  // bias
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
  };
};

struct QuantGather {
  static constexpr const char* kName = "QuantGather";
  static constexpr Port kInputs[] = {
      {kUint8, false},  // data
      {kInt64, false},  // indices
      {kAnyType, false},  // scales
      {kUint8, true},  // zero_points
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
  };
};

struct MoE {
  static constexpr const char* kName = "MoE";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // X
      {kFloat, false},  // router_logits
      {kFloat, false},  // gate_up_weights
      {kFloat, false},  // down_weights
      {kFloat, true},  // shared_gate_up
      {kFloat, true},  // shared_down
      {kFloat, true},  // shared_gate
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
  };
};

struct QMoE {
  static constexpr const char* kName = "QMoE";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // X
      {kFloat, false},  // router_logits
      {kUint8, false},  // gate_up_weights
      {kFloat, false},  // gate_up_scales
      {kUint8, false},  // down_weights
      {kFloat, false},  // down_scales
      {kFloat, true},  // shared_gate_up
      {kFloat, true},  // shared_down
      {kFloat, true},  // shared_gate
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Y
  };
};

struct QKNormRotary {
  static constexpr const char* kName = "QKNormRotary";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // Q
      {kFloat, false},  // K
      {kFloat, false},  // q_norm_weight
      {kFloat, false},  // k_norm_weight
      {kInt64, false},  // position_ids
      {kFloat, false},  // cos_cache
      {kFloat, false},  // sin_cache
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // Q_out
      {kFloat, false},  // K_out
  };
};

struct QKNormRotaryPacked {
  static constexpr const char* kName = "QKNormRotaryPacked";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // QKV
      {kFloat, false},  // q_norm_weight
      {kFloat, false},  // k_norm_weight
      {kInt64, false},  // position_ids
      {kFloat, false},  // cos_cache
      {kFloat, false},  // sin_cache
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // QKV_out
  };
};

// Registered once with kT = each of kFloat and kFloat16.
template <ONNXTensorElementDataType kT>
struct GroupQueryAttention {
  static constexpr const char* kName = "GroupQueryAttention";
  static constexpr Port kInputs[] = {
      {kFloat, false},  // query
      {kFloat, true},  // key
      {kFloat, true},  // value
      {kT, false},  // past_key
      {kT, false},  // past_value
      {kInt32, false},  // seqlens_k
      {kInt32, false},  // total_sequence_length
      {kFloat, true},  // cos_cache
      {kFloat, true},  // sin_cache
      {kFloat, true},  // q_norm_weight
      {kFloat, true},  // k_norm_weight
  };
  static constexpr Port kOutputs[] = {
      {kFloat, false},  // output
      {kT, false},  // present_key
      {kT, false},  // present_value
  };
};

}  // namespace qwd::ort::schema
