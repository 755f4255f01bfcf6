"""The `cpu` backend: ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from ...kernels.targets import PORTABLE
from ..ort.backend import CPU_PROVIDER, OrtBackend
from ..ort.options import OrtOptions
from .pipeline import cpu_pipeline


class CpuBackend(OrtBackend):
    name = "cpu"
    description = "ONNX Runtime, CPU execution provider"
    quants = ("f32", "int4", "int8")
    portable = "f32"
    providers = [CPU_PROVIDER]
    provider_options: list[dict] = []
    quantizes_embedding = True  # the int4/int8 table serves the lookup and the tied LM head (cpu/pipeline.py)
    install = "pip install 'qwdeploy[onnx]'"
    qk_norm = "separate"  # ONNX Runtime's CPU GroupQueryAttention has no q/k norm inputs
    # accuracy_level 4: the int4/int8 kernels quantize activations to int8 (what makes them fast on CPU).
    # custom_ops auto: our fused ops wherever this machine can build the kernels (fewer launches, no prepacked
    # weight copies, faster int4 decode); the portable library runs on any CPU of this architecture.
    # scale_dtype f16: block scales rounded to float16, which our ops then read as float16 (half the scale bytes
    # per decode step; ONNX Runtime's MatMulNBits keeps them in float32 tensors).
    defaults = OrtOptions(accuracy_level=4, custom_ops="auto", scale_dtype="f16")
    kernel_target = PORTABLE
    pipeline_of = staticmethod(cpu_pipeline)


BACKEND = CpuBackend()
