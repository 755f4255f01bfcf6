"""CUDA-only fusions. None yet: CUDA's choices (ONNX Runtime's SwiGLU, q/k norm inside GroupQueryAttention)
are options of the shared fusions in backends/ort/fusions."""
