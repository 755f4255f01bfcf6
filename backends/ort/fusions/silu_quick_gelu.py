"""a * Sigmoid(a) → QuickGelu(a, alpha=1) (com.microsoft): SiLU in one kernel, on CPU and CUDA.

The fallback for the gated MLP where neither our SwiGLU op nor ONNX Runtime's runs (its SwiGLU has no
CPU kernel and arrived after the newest onnxruntime-gpu): the MLP keeps its two MatMuls and the Mul by `up`.
"""

from __future__ import annotations

from onnx import NodeProto

from ...graph import Graph, Reject
from ..context import OrtContext
from . import MS

ANCHOR = "Sigmoid"


def match(g: Graph, sigmoid: NodeProto, ctx: OrtContext) -> tuple[NodeProto, NodeProto]:
    silu = g.follow(sigmoid.output[0], "Mul")
    if sigmoid.input[0] not in silu.input:
        raise Reject("Sigmoid(a) is not multiplied by a (a gate, not SiLU)")
    return sigmoid, silu


def rewrite(g: Graph, found: tuple[NodeProto, NodeProto], ctx: OrtContext) -> None:
    sigmoid, silu = found
    name = silu.name.rsplit("/", 1)[0] + "/QuickGelu"
    g.add_opset(MS, 1)
    g.replace([sigmoid, silu], [g.make("QuickGelu", [sigmoid.input[0]], list(silu.output), name, domain=MS,
                                       alpha=1.0)])
