"""Residual Add + SimplifiedLayerNormalization → SkipSimplifiedLayerNormalization (com.microsoft).

The fused op also returns the sum, which replaces the Add's output for the residual stream.
Runs after rms_norm.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import NodeProto

from ...graph import Graph, Reject
from ..context import OrtContext
from . import MS

ANCHOR = "SimplifiedLayerNormalization"


@dataclass(frozen=True)
class Found:
    add: NodeProto
    norm: NodeProto


def match(g: Graph, norm: NodeProto, ctx: OrtContext) -> Found:
    add = g.expect(norm.input[0], "Add")
    if any(g.is_const(i) for i in add.input):
        raise Reject("the Add adds a constant (a bias that broadcasts), not a residual stream")
    if add.input[0] == add.input[1]:
        raise Reject("the Add doubles one value; no residual to skip")
    return Found(add, norm)


def rewrite(g: Graph, f: Found, ctx: OrtContext) -> None:
    total = f.add.output[0]
    keep_sum = g.uses(total) > 1
    eps = next(a.f for a in f.norm.attribute if a.name == "epsilon")
    outputs = [f.norm.output[0], "", "", total if keep_sum else ""]
    name = f.norm.name.rsplit("/", 1)[0] + "/SkipSimplifiedLayerNormalization"
    node = g.make("SkipSimplifiedLayerNormalization", [f.add.input[0], f.add.input[1], f.norm.input[1]],
                  outputs, name, domain=MS, epsilon=eps)
    g.add_opset(MS, 1)
    g.replace([f.add, f.norm], [node])
