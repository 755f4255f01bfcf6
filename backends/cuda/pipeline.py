"""The CUDA pipeline: the shared phases as they are.

The portable graph is already fp16 (the exporter's f16 precision keeps norms and softmax in fp32);
SwiGLU is ONNX Runtime's own (it has a CUDA kernel) and Qwen3's q/k norms go into GroupQueryAttention;
quantized weights keep fp16 scales, the activations' type. Our ops stay out: their kernels take float32.
"""

from __future__ import annotations

from ..base import Plan
from ..ort import pipeline as shared
from ..ort.options import OrtOptions
from ..passes import Phase


def cuda_pipeline(plan: Plan[OrtOptions], custom_ops: bool) -> list[Phase]:
    return shared.pipeline(plan, custom_ops)
