"""The `cuda` backend: ONNX Runtime's CUDA execution provider (onnxruntime-gpu)."""

from __future__ import annotations

from ..base import Plan
from ..ort.backend import CPU_PROVIDER, OrtBackend
from ..ort.context import OrtContext
from ..ort.fusions import MS
from .options import CudaOptions
from .pipeline import cuda_pipeline

PROVIDER = "CUDAExecutionProvider"


class CudaBackend(OrtBackend):
    name = "cuda"
    description = "ONNX Runtime, CUDA execution provider (fp16)"
    quants = ("f16", "int4", "int8")
    portable = "f16"
    providers = [PROVIDER, CPU_PROVIDER]
    provider_options = [{"cuda": {}}]
    install = "install onnxruntime-gpu on a machine with an NVIDIA GPU"
    swiglu_domain = MS
    qk_norm = "gqa"
    refuses_custom_ops = "qwdeploy's kernels take float32 and the cuda backend's graphs are fp16"
    defaults = CudaOptions()
    pipeline_of = staticmethod(cuda_pipeline)

    def context(self, plan: Plan[CudaOptions], emit: bool) -> OrtContext:
        ctx = super().context(plan, emit)
        if not plan.options.release.gqa_qk_norm:
            ctx.qk_norm = "separate"
        return ctx


BACKEND = CudaBackend()
