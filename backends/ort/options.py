"""Options the ONNX Runtime backends accept (`-O KEY=VALUE`), one row each."""

from __future__ import annotations

from ...toolkit.errors import QwdeployError
from ..base import Option
from .quant.config import KEEP_CHOICES, QuantConfig


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _choice(*allowed: str):
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text
    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


INTEGER = ("int4", "int8")  # the quant types the block options shape


def options(accuracy_level: int, custom_ops: str, quant_swiglu: bool) -> dict[str, Option]:
    return {
        "custom_ops": Option(_choice("off", "on", "auto"), custom_ops,
                             "emit qwdeploy-domain ops: on, off, auto (on when the kernel library is built)"),
        "quant_swiglu": Option(_bool, quant_swiglu,
                               "int4/int8 with custom ops: fuse the quantized gate/up MatMulNBits + SwiGLU into "
                               "qwdeploy QuantSwiGLU (one node instead of two; off keeps MatMulNBits + SwiGLU)",
                               INTEGER),
        "block_size": Option(int, 32, "int4/int8 block size along K (power of two, 16-256)", INTEGER),
        "symmetric": Option(_bool, True, "no zero points (true) or a zero point per block (false)", INTEGER),
        "scale_dtype": Option(_choice("f32", "f16"), "f32", "precision of the block scales", INTEGER),
        "accuracy_level": Option(int, accuracy_level, "MatMulNBits accuracy_level (4: int8 activations on CPU)",
                                 INTEGER),
        "method": Option(_choice("rtn", "search"), "search", "scale choice: round-to-nearest or error search",
                         INTEGER),
        "keep": Option(_names, (), f"weights kept in float, comma-separated: {', '.join(KEEP_CHOICES)}", INTEGER),
        "explain": Option(_bool, False, "list every fusion candidate that was rejected, and why"),
    }


def quant_config(quant: str, opts: dict) -> QuantConfig | None:
    if quant not in INTEGER:
        return None
    try:
        return QuantConfig(bits=4 if quant == "int4" else 8, block_size=opts["block_size"],
                           symmetric=opts["symmetric"], scale_dtype=opts["scale_dtype"],
                           accuracy_level=opts["accuracy_level"], method=opts["method"],
                           keep=tuple(opts["keep"])).validate()
    except ValueError as exc:
        raise QwdeployError(f"--quant {quant}: {exc}") from None
