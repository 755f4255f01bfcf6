"""GGUF export: Qwen checkpoints to llama.cpp files, streamed and quantized."""
