"""ONNX export: a portable decoder graph with KV cache, weights streamed into external data."""
