"""ONNX Runtime measurement shared by the CPU and CUDA profiler collectors (one provider each)."""
