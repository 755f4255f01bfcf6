"""The CUDA pipeline: the CPU pipeline's shape with CUDA's choices.

The portable graph is already fp16 (the exporter's f16 precision keeps norms and softmax in fp32);
SwiGLU is ONNX Runtime's own (it has a CUDA kernel) unless our ops are on, which also bring MoE/QMoE
(kernels/cuda/moe.cu) and QuantSwiGLU (on by default here, -O quant_swiglu=off); quantized weights keep
fp16 scales, the activations' type.
"""

from __future__ import annotations

from typing import Any

from ...toolkit.profiles import DeviceProfile
from ..ort.fold import fold_weight_casts
from ..ort.fusions import group_query_attention, moe, packed_qkv, quant_swiglu, rms_norm, skip_rms_norm, swiglu
from ..ort.quant.matmul_nbits import quantize_matmuls
from ..passes import Fusion, GraphPass, Phase


def cuda_pipeline(profile: DeviceProfile | None, options: dict[str, Any], custom_ops: bool) -> list[Phase]:
    quantized = options["quant"] in ("int4", "int8")
    return [
        ("prepare", [GraphPass("fold_weight_casts", fold_weight_casts)]),
        ("attention", [Fusion(group_query_attention), Fusion(packed_qkv)]),
        ("norms", [Fusion(rms_norm), Fusion(skip_rms_norm)]),
        ("mlp", [*([Fusion(moe)] if custom_ops else []), Fusion(swiglu)]),
        ("quantize", [GraphPass("matmul_nbits", quantize_matmuls)] if quantized else []),
        ("quantized fusions", [Fusion(quant_swiglu)] if quantized and custom_ops and options["quant_swiglu"] else []),
    ]
