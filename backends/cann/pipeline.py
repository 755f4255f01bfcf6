"""The CANN pipeline: fold the weight casts, then make the decoder static. ATC fuses on its own, and
ONNX Runtime's contrib ops (the CPU and CUDA fusions' targets) do not exist on the NPU."""

from __future__ import annotations

from ..base import Plan
from ..passes import GraphPass, Phase
from ..ort.fold import fold_weight_casts
from .options import CannOptions
from .static_kv import make_static


def context_length(plan: Plan[CannOptions]) -> int:
    return min(plan.options.context, plan.spec.max_position_embeddings)


def cann_pipeline(plan: Plan[CannOptions]) -> list[Phase]:
    context = context_length(plan)
    return [("prepare", [GraphPass("fold_weight_casts", fold_weight_casts)]),
            ("static", [GraphPass("static_kv", lambda g, ctx: make_static(g, ctx, context))])]
