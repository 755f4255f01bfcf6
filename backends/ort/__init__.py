"""What the CPU and CUDA backends share: both run ONNX Runtime, so most passes and the artifact are common."""
