"""llama.cpp (through llama-cpp-python) as a runtime the profiler measures GGUF files on."""
