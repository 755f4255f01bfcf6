"""The gated MLP activation every Qwen MLP and expert has: silu(gate) * up, found from its Sigmoid."""

from __future__ import annotations

from dataclasses import dataclass

from onnx import NodeProto

from ..graph import Graph, Reject


@dataclass(frozen=True)
class Gated:
    gate: str  # [..., I] pre-activation
    up: str  # [..., I]
    silu: NodeProto  # Mul(gate, Sigmoid(gate))
    product: NodeProto  # Mul(silu, up): its output is what the fused op produces


def gated(g: Graph, sigmoid: NodeProto) -> Gated:
    gate = sigmoid.input[0]
    silu = g.follow(sigmoid.output[0], "Mul")
    if gate not in silu.input:
        raise Reject("Sigmoid(a) is not multiplied by a itself (not SiLU)")
    product = g.follow(silu.output[0], "Mul")
    up = product.input[1] if product.input[0] == silu.output[0] else product.input[0]
    if up == gate:
        raise Reject("silu(a) * a is not a gated unit")
    return Gated(gate, up, silu, product)
