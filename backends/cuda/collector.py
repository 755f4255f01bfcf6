"""Profiler collector: an ONNX folder on ONNX Runtime's CUDA execution provider.

Launches are ONNX Runtime's kernel events per node on the provider (each CUDA node launches at
least one kernel; the pip wheel has no CUPTI tracing to count the device launches themselves).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ...toolkit.runtimes.ort.session import OrtCollector
from .backend import PROVIDER



def _gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


class CudaOrtCollector(OrtCollector):
    def unavailable_reason(self) -> str | None:
        if not _gpu_present():
            return "no NVIDIA GPU found (no /dev/nvidia0, no nvidia-smi)"
        reason = super().unavailable_reason()
        return f"{reason}; install onnxruntime-gpu" if reason else None


COLLECTOR = CudaOrtCollector("cuda", PROVIDER)
