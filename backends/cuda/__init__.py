"""ONNX Runtime on CUDA: fp16 compute, contrib-op fusions, MatMulNBits with fp16 scales."""
