"""The `cuda` backend: ONNX Runtime's CUDA execution provider (onnxruntime-gpu)."""

from __future__ import annotations

from ..ort.backend import CPU_PROVIDER, OrtBackend
from ..ort.fusions import MS
from ..ort.options import OrtOptions
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
    defaults = OrtOptions()
    pipeline_of = staticmethod(cuda_pipeline)


BACKEND = CudaBackend()
