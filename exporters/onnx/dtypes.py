"""Weight and compute precision of a portable graph, chosen by `--quant`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from ...toolkit.checkpoint import CAST_DTYPES
from ...toolkit.errors import QwdeployError
from ...toolkit.profiles import DTYPE_ALIASES


@dataclass(frozen=True)
class Precision:
    name: str
    read_as: str  # Checkpoint.read dtype name
    weight: int  # TensorProto element type of the stored weights
    compute: int  # element type of activations and the KV cache

    @property
    def weight_numpy(self) -> np.dtype:
        return np.dtype(CAST_DTYPES[self.read_as])


# bf16: no ONNX Runtime CPU kernel multiplies bf16 matrices, so the weights stay bf16 on disk and
# each is Cast to fp32 where the graph uses it; a backend may later fuse or drop those Casts.
PRECISIONS = {
    p.name: p
    for p in (
        Precision("f32", "float32", TensorProto.FLOAT, TensorProto.FLOAT),
        Precision("f16", "float16", TensorProto.FLOAT16, TensorProto.FLOAT16),
        Precision("bf16", "bfloat16", TensorProto.BFLOAT16, TensorProto.FLOAT),
    )
}
BACKEND_QUANTS = ("int4", "int8", "q4", "q8")  # quantized ONNX weights come from a backend pass


def precision_for(quant: str | None) -> Precision:
    """The precision `--quant` names for the portable graph (default f32)."""
    name = DTYPE_ALIASES.get((quant or "f32").lower(), (quant or "f32").lower())
    if name in PRECISIONS:
        return PRECISIONS[name]
    if name in BACKEND_QUANTS:
        from ...backends import BACKENDS

        devices = [n for n in BACKENDS.names() if any(q.startswith("int") for q in BACKENDS.get(n).quants)]
        raise QwdeployError(
            f"--quant {quant}: integer ONNX weights are made for a device; add --target "
            f"({' or '.join(devices)}), or use one of {', '.join(PRECISIONS)} for the portable graph"
        )
    raise QwdeployError(f"--quant {quant}: unknown ONNX weight type; use one of {', '.join(PRECISIONS)}")
