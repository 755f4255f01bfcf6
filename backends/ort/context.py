"""What the ONNX Runtime passes read besides the graph: the model's facts and this build's choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...kernels.schemas import DOMAIN
from ..passes import Context
from .quant.config import QuantConfig

# How Qwen3's q/k norms fuse into attention (fusions/group_query_attention.py says what each means).
QKNorm = Literal["gqa", "qwdeploy", "separate"]


@dataclass
class OrtContext(Context):
    quant: QuantConfig | None = None  # None: a float build
    swiglu_domain: str = DOMAIN  # whose SwiGLU the mlp fusion emits: ours or ONNX Runtime's
    qk_norm: QKNorm = "gqa"
    attention_bf16: bool = False  # our attention's prompt products on bf16 operands (options.py)
    half_cache: bool = False  # our attention's KV cache in float16 (options.py kv_dtype)
    # Made by the first rewrite that needs them and shared by every later one:
    rotary: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)  # (table, dtype) → (cos, sin)
    lengths: tuple[str, str] | None = None  # (seqlens_k, total_sequence_length)
    quantized: dict[tuple[str, bool, int], list[str]] = field(default_factory=dict)  # (weight, transposed, bits) → inputs
