"""Profiler collectors: a GGUF file on llama.cpp, CPU only or with every layer offloaded to a GPU."""

from __future__ import annotations

from pathlib import Path

from .native import llama_cpp, llama_cpp_installed, note_workarounds
from .session import LlamaSession

ALL_LAYERS = 999


class LlamaCollector:
    kind = "gguf"

    def __init__(self, device: str, gpu_layers: int):
        self.device, self.gpu_layers = device, gpu_layers

    def unavailable_reason(self) -> str | None:
        if not llama_cpp_installed():
            return "llama-cpp-python is not installed (pip install 'qwdeploy[llama]')"
        if self.gpu_layers and not llama_cpp().llama_supports_gpu_offload():
            return "this llama-cpp-python was built without GPU offload (rebuild with CMAKE_ARGS=-DGGML_CUDA=on)"
        note_workarounds()  # asked in the parent, before any child loads the file
        return None

    def open(self, artifact: Path, threads: int | None, options: dict[str, str]) -> LlamaSession:
        return LlamaSession(artifact, self.gpu_layers, threads, options)


COLLECTOR = LlamaCollector("cpu", 0)
CUDA_COLLECTOR = LlamaCollector("cuda", ALL_LAYERS)
