"""The `cuda` backend: ONNX Runtime's CUDA execution provider (onnxruntime-gpu)."""

from __future__ import annotations

from typing import Any

from ...toolkit.profiles import DeviceProfile
from ..ort.backend import OrtBackend
from ..ort.fusions import MS
from ..ort.options import options
from ..passes import Phase
from .pipeline import cuda_pipeline

PROVIDER = "CUDAExecutionProvider"


class CudaBackend(OrtBackend):
    name = "cuda"
    description = "ONNX Runtime, CUDA execution provider (fp16)"
    quants = ("fp16", "int4", "int8")
    providers = [PROVIDER, "CPUExecutionProvider"]
    provider_options = [{"cuda": {}}]
    qk_norm = "gqa"
    swiglu_domain = MS
    OPTIONS = options(accuracy_level=0, custom_ops="off", quant_swiglu=True)

    def availability(self) -> tuple[bool, str]:
        try:
            import onnxruntime
        except ImportError:
            return False, "onnxruntime-gpu is not installed"
        if PROVIDER not in onnxruntime.get_available_providers():
            return False, (f"onnxruntime {onnxruntime.__version__} has no {PROVIDER} "
                           "(install onnxruntime-gpu on a machine with an NVIDIA GPU); graphs still build here")
        return True, f"onnxruntime {onnxruntime.__version__} with {PROVIDER}"

    def portable_precision(self, quant: str) -> str:
        return "f16"

    def pipeline(self, profile: DeviceProfile | None, options: dict[str, Any]) -> list[Phase]:
        return cuda_pipeline(profile, options, self.custom_ops(options)[0])


BACKEND = CudaBackend()
