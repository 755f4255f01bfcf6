"""ONNX Runtime on CPU: contrib-op fusions, MatMulNBits int4/int8 weights."""
