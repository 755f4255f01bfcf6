"""What `-O KEY=VALUE` may set on an ONNX Runtime backend: typed fields, each one CLI option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...toolkit.errors import QwdeployError
from ..base import choice, option, parse_bool
from .quant.config import KEEP_CHOICES, QuantConfig

CustomOps = Literal["on", "off", "auto"]
BITS = {"int4": 4, "int8": 8}  # the integer quant types, and the weight bits each stores
INTEGER = tuple(BITS)


def _names(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


@dataclass(frozen=True)
class OrtOptions:
    custom_ops: CustomOps = option(
        "off", choice("off", "on", "auto"),
        "emit qwdeploy-domain ops: on (builds the kernels for the target when needed), off, "
        "auto (on when the kernels are built or this machine can build them, for a target that runs here)")
    quant_swiglu: bool = option(
        True, parse_bool, "int4/int8 with custom ops: fuse the quantized gate/up MatMulNBits + SwiGLU into qwdeploy "
        "QuantSwiGLU (one node instead of two; off keeps MatMulNBits + SwiGLU)", INTEGER)
    quant_linear: bool = option(
        True, parse_bool, "CPU int4/int8 with custom ops at accuracy_level 4: run every other MatMulNBits as qwdeploy "
        "QuantLinear (weights read in place, no prepacked copy)", INTEGER)
    attention: bool = option(
        True, parse_bool, "CPU with custom ops: run GroupQueryAttention as qwdeploy GroupQueryAttention (same "
        "cache contract; blocks of keys through an online softmax instead of the whole score matrix)")
    attention_bf16: bool = option(
        False, parse_bool, "int4/int8 with our attention: a prompt's score and value products on bf16 operands "
        "with float32 sums where the CPU has AVX512-BF16 (attention 1.8x faster, outputs within ~1% of float32)",
        INTEGER)
    kv_dtype: str = option(
        "f32", choice("f32", "f16"), "int4/int8 with our attention: the KV cache's element type (f16: half its memory "
        "and of the bytes each decode step reads from it; attention still computes in float32)", INTEGER)
    block_size: int = option(32, int, "int4/int8 block size along K (power of two, 16-256)", INTEGER)
    symmetric: bool = option(True, parse_bool, "no zero points (true) or a zero point per block (false)", INTEGER)
    scale_dtype: str = option("f32", choice("f32", "f16"), "precision of the block scales", INTEGER)
    accuracy_level: int = option(0, int, "MatMulNBits accuracy_level (4: int8 activations on CPU)", INTEGER)
    method: str = option("search", choice("rtn", "search"), "scale choice: round-to-nearest or error search",
                         INTEGER)
    keep: tuple[str, ...] = option((), _names, f"weights kept in float, comma-separated: {', '.join(KEEP_CHOICES)}",
                                   INTEGER)
    mixed: bool = option(
        False, parse_bool, "int4: keep the projections rounding hurts most in int8 - every one of the first decoder "
        "layer and the attention projections of the first sixth of the layers (0.5B: 3% more weight bytes, "
        "half the KL)", ("int4",))
    explain: bool = option(False, parse_bool, "list every fusion candidate that was rejected, and why")

    def quant_config(self, quant: str) -> QuantConfig | None:
        """The weight quantization `quant` asks for with these block options; None for a float build."""
        if quant not in BITS:
            return None
        try:
            return QuantConfig(bits=BITS[quant], block_size=self.block_size, symmetric=self.symmetric,
                               scale_dtype=self.scale_dtype, accuracy_level=self.accuracy_level,
                               method=self.method, keep=self.keep, mixed=self.mixed).validate()
        except ValueError as exc:
            raise QwdeployError(f"--quant {quant}: {exc}") from None
