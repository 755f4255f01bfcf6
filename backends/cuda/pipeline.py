"""The CUDA pipeline: the shared phases, with an MLP that depends on the onnxruntime-gpu release.

The portable graph is already fp16 (the exporter's f16 precision keeps norms and softmax in fp32).
From ONNX Runtime 1.32 the MLP becomes its SwiGLU and Qwen3's q/k norms go into GroupQueryAttention;
before it (the newest onnxruntime-gpu is 1.31) SiLU becomes QuickGelu and the q/k norms stay separate
(backend.py). Quantized weights keep fp16 scales, the activations' type. Our ops stay out: their kernels
take float32.
"""

from __future__ import annotations

from ..base import Plan
from ..ort import pipeline as shared
from ..ort.fusions import silu_quick_gelu
from ..passes import Fusion, Phase
from .options import CudaOptions


def mlp(plan: Plan[CudaOptions], custom_ops: bool) -> Phase:
    return shared.mlp(plan, custom_ops) if plan.options.release.swiglu else ("mlp", [Fusion(silu_quick_gelu)])


def cuda_pipeline(plan: Plan[CudaOptions], custom_ops: bool) -> list[Phase]:
    return shared.pipeline(plan, custom_ops, mlp=mlp)
