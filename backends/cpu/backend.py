"""The `cpu` backend: ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from typing import Any

from ...toolkit.profiles import DeviceProfile
from ..ort.backend import OrtBackend
from ..ort.options import options
from ..passes import Phase
from .pipeline import cpu_pipeline


class CpuBackend(OrtBackend):
    name = "cpu"
    description = "ONNX Runtime, CPU execution provider"
    quants = ("fp32", "int4", "int8")
    providers = ["CPUExecutionProvider"]
    provider_options: list[dict] = []
    qk_norm = "separate"
    swiglu_domain = None
    # accuracy_level 4: the int4/int8 kernels quantize activations to int8 (what makes them fast on CPU).
    OPTIONS = options(accuracy_level=4, custom_ops="off", quant_swiglu=True)

    def availability(self) -> tuple[bool, str]:
        try:
            import onnxruntime
        except ImportError:
            return False, "onnxruntime is not installed (pip install 'qwdeploy[onnx]')"
        return True, f"onnxruntime {onnxruntime.__version__}"

    def portable_precision(self, quant: str) -> str:
        return "f32"

    def pipeline(self, profile: DeviceProfile | None, options: dict[str, Any]) -> list[Phase]:
        return cpu_pipeline(profile, options, self.custom_ops(options)[0])


BACKEND = CpuBackend()
