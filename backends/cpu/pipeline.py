"""The CPU pipeline: named phases, concatenated in order.

SwiGLU and MoE (QMoE after quantization) are our own `qwdeploy` ops: only when custom ops are on;
otherwise SiLU becomes ONNX Runtime's QuickGelu(alpha=1), since its SwiGLU has no CPU kernel.
Quantized gate/up projections fuse with SwiGLU into our QuantSwiGLU (about as fast as MatMulNBits +
SwiGLU on CPU, one node fewer); -O quant_swiglu=off keeps the two. Quantizing also moves the
embedding lookup onto an int4/int8 table, shared with a tied LM head (-O keep=embed keeps it float).
"""

from __future__ import annotations

from typing import Any

from ...toolkit.profiles import DeviceProfile
from ..ort.fold import fold_weight_casts
from ..ort.fusions import group_query_attention, moe, packed_qkv, quant_swiglu, rms_norm, skip_rms_norm, swiglu
from ..ort.quant import embedding
from ..ort.quant.matmul_nbits import quantize_matmuls
from ..passes import Fusion, GraphPass, Phase
from .fusions import silu_quick_gelu


def cpu_pipeline(profile: DeviceProfile | None, options: dict[str, Any], custom_ops: bool) -> list[Phase]:
    quantized = options["quant"] in ("int4", "int8")
    return [
        ("prepare", [GraphPass("fold_weight_casts", fold_weight_casts)]),
        ("attention", [Fusion(group_query_attention), Fusion(packed_qkv)]),
        ("norms", [Fusion(rms_norm), Fusion(skip_rms_norm)]),
        ("mlp", [Fusion(moe), Fusion(swiglu)] if custom_ops else [Fusion(silu_quick_gelu)]),
        ("quantize", [GraphPass("matmul_nbits", quantize_matmuls), Fusion(embedding)] if quantized else []),
        ("quantized fusions", [Fusion(quant_swiglu)] if quantized and custom_ops and options["quant_swiglu"] else []),
    ]
