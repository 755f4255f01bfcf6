"""The CPU pipeline: the shared phases, with CPU's own attention, MLP and quantization.

ONNX Runtime's SwiGLU has no CPU kernel: without our ops SiLU becomes its QuickGelu(alpha=1) and the
MLP keeps two MatMuls. Quantizing also moves the embedding lookup onto an int4/int8 table, shared with a
tied LM head (-O keep=embed keeps it float). With our ops, quantized gate/up + SwiGLU fuse into
QuantSwiGLU and every other MatMulNBits becomes QuantLinear: both read the exported int4/int8 bytes in
place with int8 activations, where ONNX Runtime would keep a prepacked second copy of every weight, and
take their block scales in float16 (half_scales.py) and their codes in row tiles (row_tiles.py), a tied
table too, its lookup then QuantGather (tied_table.py), and each takes the RMSNorm in front of it
(fusions/norm_in_front.py); GroupQueryAttention runs as ours (fusions/attention.py), with Qwen3's q/k
norms inside it (fusions/qk_norm_attention.py), a tied float head
as Linear on the table (fusions/float_head.py), and a tied head of either kind on the hidden states as they
are, not flattened for a Gemm (fusions/flat_head.py). Our attention keeps an int4/int8 build's KV cache in
float16 (half_cache.py).
"""

from __future__ import annotations

from ..base import Plan
from ..ort import pipeline as shared
from ..ort.fusions import silu_quick_gelu
from ..ort.options import OrtOptions
from ..ort.quant import embedding
from ..passes import Fusion, GraphPass, Phase
from .fusions import attention as fused_attention
from .fusions import flat_head, float_head, norm_in_front, qk_norm_attention, quant_linear
from .half_cache import half_cache
from .half_scales import half_scales
from .row_tiles import row_tiles
from .tied_table import tied_table


def attention(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    name, passes = shared.attention(plan, custom_ops)
    ours = [Fusion(fused_attention), Fusion(qk_norm_attention), GraphPass("half_cache", half_cache)]
    return name, [*passes, *ours] if custom_ops and plan.options.attention else passes


def mlp(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    return shared.mlp(plan, custom_ops) if custom_ops else ("mlp", [Fusion(silu_quick_gelu)])


def quantize(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    name, passes = shared.quantize(plan, custom_ops)
    passes = [*passes, Fusion(embedding)] if passes else []
    return name, [*passes, Fusion(float_head)] if custom_ops else passes


def quantized_fusions(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    name, passes = shared.quantized_fusions(plan, custom_ops)
    fuse = plan.options.quant_config(plan.quant) and custom_ops and plan.options.quant_linear
    passes = [*passes, Fusion(quant_linear)] if fuse else passes
    layout = [GraphPass("half_scales", half_scales), GraphPass("row_tiles", row_tiles),
              GraphPass("tied_table", tied_table)]
    passes = [*passes, *layout, Fusion(norm_in_front)] if passes else passes
    return name, [*passes, Fusion(flat_head)] if custom_ops else passes


def cpu_pipeline(plan: Plan[OrtOptions], custom_ops: bool) -> list[Phase]:
    return shared.pipeline(plan, custom_ops, attention=attention, mlp=mlp, quantize=quantize,
                           quantized_fusions=quantized_fusions)
