"""The phases every ONNX Runtime device runs, one function each; a device's pipeline.py lists them and
replaces only the phases where it differs (backends/README.md)."""

from __future__ import annotations

from typing import Callable

from ..base import Plan
from ..passes import Fusion, GraphPass, Phase
from .fold import fold_weight_casts
from .last_logits import keep_last_logits
from .fusions import group_query_attention, moe, packed_qkv, quant_swiglu, rms_norm, skip_rms_norm, swiglu
from .options import OrtOptions
from .quant.matmul_nbits import quantize_matmuls

PhaseFn = Callable[[Plan[OrtOptions], bool], Phase]  # (plan, emit qwdeploy ops) → phase


def prepare(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    return "prepare", [GraphPass("fold_weight_casts", fold_weight_casts), GraphPass("logits_to_keep", keep_last_logits)]


def attention(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    return "attention", [Fusion(group_query_attention), Fusion(packed_qkv)]


def norms(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    return "norms", [Fusion(rms_norm), Fusion(skip_rms_norm)]


def mlp(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    """Packed gate/up + SwiGLU (ONNX Runtime's unless our ops are on, which also bring MoE)."""
    return "mlp", [*([Fusion(moe)] if custom_ops else []), Fusion(swiglu)]


def quantize(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    return "quantize", [GraphPass("matmul_nbits", quantize_matmuls)] if plan.options.quant_config(plan.quant) else []


def quantized_fusions(plan: Plan[OrtOptions], custom_ops: bool) -> Phase:
    fuse = plan.options.quant_config(plan.quant) and custom_ops and plan.options.quant_swiglu
    return "quantized fusions", [Fusion(quant_swiglu)] if fuse else []


PHASES: tuple[PhaseFn, ...] = (prepare, attention, norms, mlp, quantize, quantized_fusions)


def pipeline(plan: Plan[OrtOptions], custom_ops: bool, **replaced: PhaseFn) -> list[Phase]:
    """PHASES in order, with the phases named in `replaced` swapped for the device's own."""
    unknown = set(replaced) - {p.__name__ for p in PHASES}
    if unknown:
        raise ValueError(f"no shared phase named {sorted(unknown)}")
    return [replaced.get(phase.__name__, phase)(plan, custom_ops) for phase in PHASES]
