"""The cuda backend's `-O` options: the shared ONNX Runtime ones, and the onnxruntime-gpu release its graphs
must load in (which decides two fusions)."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import choice, option
from ..ort.options import OrtOptions


@dataclass(frozen=True)
class Release:
    swiglu: bool  # com.microsoft SwiGLU
    gqa_qk_norm: bool  # GroupQueryAttention's q/k norm inputs (Qwen3)


# What each ONNX Runtime release has that the cuda graphs can use. 1.31.1 is the newest onnxruntime-gpu on
# PyPI and has neither (its graphs ran on an H200); 1.32's schemas have both, but it has no GPU wheel yet.
RELEASES = {"1.31": Release(swiglu=False, gqa_qk_norm=False), "1.32": Release(swiglu=True, gqa_qk_norm=True)}


@dataclass(frozen=True)
class CudaOptions(OrtOptions):
    ort_release: str = option(
        "1.31", choice(*RELEASES), "oldest onnxruntime-gpu release the graph must load in: 1.31 (the newest on PyPI: "
        "SiLU as QuickGelu, Qwen3's q/k norms as SimplifiedLayerNormalization) or 1.32 (its SwiGLU and "
        "GroupQueryAttention's q/k norm inputs: two nodes fewer per layer)")

    @property
    def release(self) -> Release:
        return RELEASES[self.ort_release]
