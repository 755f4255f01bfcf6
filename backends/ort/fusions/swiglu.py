"""Gated MLP → packed gate/up MatMul + SwiGLU (our `qwdeploy` op, or ONNX Runtime's where it has a kernel).

Pattern: Mul(Mul(a, Sigmoid(a)), b), a = x @ W_gate, b = x @ W_up (constant weights, same x).
Rewrite: y = x @ [W_gate | W_up]; SwiGLU(y) with gate first, which both ops' packed form expects.
ctx.swiglu_domain picks the op: "qwdeploy" (kernels/schemas.py) or "com.microsoft".
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import NodeProto

from ....kernels.schemas import DOMAIN, DOMAIN_VERSION
from ...graph import Graph, Reject
from ..context import OrtContext
from ..gated import Gated, gated
from ..projections import Projection, packed, projection

ANCHOR = "Sigmoid"


@dataclass(frozen=True)
class Found:
    unit: Gated
    gate: Projection
    up: Projection


def match(g: Graph, sigmoid: NodeProto, ctx: OrtContext) -> Found:
    unit = gated(g, sigmoid)
    gate, up = projection(g, unit.gate), projection(g, unit.up)
    if gate.x != up.x:
        raise Reject("gate and up project different inputs")
    if g.uses(unit.gate) != 2 or g.uses(unit.up) != 1:
        raise Reject("gate or up projection has other uses")
    return Found(unit, gate, up)


def rewrite(g: Graph, f: Found, ctx: OrtContext) -> None:
    domain = ctx.swiglu_domain
    scope = f.unit.product.name.rsplit("/", 1)[0]
    nodes, gate_up = packed(g, [f.gate, f.up], f"{scope}/gate_up_proj")  # [..., 2 * I]
    g.add_opset(domain, DOMAIN_VERSION if domain == DOMAIN else 1)
    swiglu = g.make("SwiGLU", [gate_up], list(f.unit.product.output), f"{scope}/SwiGLU", domain=domain)
    g.replace([f.unit.product], [*nodes, swiglu])  # the separate MatMuls and the SiLU are left dead
