"""transformers as the reference runtime the profiler measures Hugging Face checkpoints on."""
