// The thin layer between ONNX Runtime's classic custom-op API and our runtime-free cores: one Op
// template for every kernel, I/O tables from schema_io.h (rendered from kernels/schemas.py), errors
// turned into OrtStatus.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <vector>

#include "../cpu/parallel.h"

namespace qwd::ort {

struct Port {
  ONNXTensorElementDataType type;
  bool optional;
};

inline constexpr auto kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
inline constexpr auto kFloat16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
// A port of several element types; the adapter checks which it got.
inline constexpr auto kAnyType = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
inline constexpr auto kUint8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
inline constexpr auto kInt32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
inline constexpr auto kInt64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;

// Runs fn and converts any exception into a status ONNX Runtime reports with the node's name.
template <class Fn>
OrtStatusPtr guard(Fn&& fn) noexcept {
  try {
    fn();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
  }
}

template <class Kernel>
struct Op : Ort::CustomOpBase<Op<Kernel>, Kernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guard([&] { *kernel = new Kernel(Ort::ConstKernelInfo(info)); });
  }
  const char* GetName() const { return Kernel::kName; }
  const char* GetExecutionProviderType() const { return Kernel::kProvider; }
  size_t GetInputTypeCount() const { return std::size(Kernel::kInputs); }
  ONNXTensorElementDataType GetInputType(size_t i) const { return Kernel::kInputs[i].type; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return Kernel::kInputs[i].optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return std::size(Kernel::kOutputs); }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return Kernel::kOutputs[i].type; }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t i) const {
    return Kernel::kOutputs[i].optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
};

// Kernels derive from this and from their op's struct in schema_io.h (kName, kInputs, kOutputs), and
// define kProvider and `void Compute(Ort::KernelContext&)`.
template <class Derived>
struct Kernel {
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return guard([&] {
      Ort::KernelContext ctx(context);
      static_cast<Derived*>(this)->Compute(ctx);
    });
  }
};

// An optional input left out ("" or trailing) reads as an empty value.
inline Ort::ConstValue input(const Ort::KernelContext& ctx, size_t i) {
  return i < ctx.GetInputCount() ? ctx.GetInput(i) : Ort::ConstValue{nullptr};
}

inline std::vector<int64_t> shape(const Ort::ConstValue& v) { return v.GetTensorTypeAndShapeInfo().GetShape(); }
inline std::vector<int64_t> optional_shape(const Ort::ConstValue& v) { return v ? shape(v) : std::vector<int64_t>{}; }

template <class T>
const T* data_or_null(const Ort::ConstValue& v) {
  return v ? v.GetTensorData<T>() : nullptr;
}

inline int64_t attr_int(const Ort::ConstKernelInfo& info, const char* name, int64_t fallback) {
  try {
    return info.GetAttribute<int64_t>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

inline float attr_float(const Ort::ConstKernelInfo& info, const char* name, float fallback) {
  try {
    return info.GetAttribute<float>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

// ONNX Runtime's intra-op thread pool behind the cores' Parallel interface.
class PoolParallel : public Parallel {
 public:
  explicit PoolParallel(const Ort::KernelContext& ctx) : ctx_(ctx) {}
  void run(int64_t tasks, const std::function<void(int64_t)>& fn) const override {
    if (tasks <= 1) return Parallel::run(tasks, fn);
    // One batch per task, handed out as threads come free: with ONNX Runtime's default (one contiguous
    // batch per thread) a thread slowed by anything else on the core leaves the other one waiting at the
    // end of every op (decode 76.0 -> 88.2 tok/s on a shared 2-core Zen4 VM, interleaved).
    ctx_.ParallelFor([](void* f, size_t i) { (*static_cast<const std::function<void(int64_t)>*>(f))(i); },
                     static_cast<size_t>(tasks), static_cast<size_t>(tasks),
                     const_cast<std::function<void(int64_t)>*>(&fn));
  }

 private:
  const Ort::KernelContext& ctx_;
};

std::vector<OrtCustomOp*> cpu_ops();
std::vector<OrtCustomOp*> cuda_ops();  // empty when built without CUDA

}  // namespace qwd::ort
