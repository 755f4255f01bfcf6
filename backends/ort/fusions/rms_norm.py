"""RMSNorm → SimplifiedLayerNormalization.

Pattern (native and optimum spellings; Casts optional):
    xf = Cast(x); r = Sqrt(Add(ReduceMean(Pow(xf, 2), [-1]), eps))
    y  = Mul(Cast(Div(xf, r) | Mul(xf, Div(1, r)) | Mul(xf, Reciprocal(r))), weight)
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import NodeProto

from ...graph import Graph, Reject
from ..context import OrtContext

ANCHOR = "Mul"


@dataclass(frozen=True)
class Found:
    x: str
    weight: str
    eps: float
    nodes: list[NodeProto]


def _other(node: NodeProto, known: str) -> str:
    return node.input[1] if node.input[0] == known else node.input[0]


def _normalized(g: Graph, value: str) -> tuple[str, str, list[NodeProto]]:
    """(xf, r, nodes) for value = xf / r in any of its spellings."""
    node = g.producer.get(value)
    if node is not None and node.op_type == "Div":
        return node.input[0], node.input[1], [node]
    node = g.expect(value, "Mul", single_use=True)
    for xf, inv in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        rec = g.producer.get(inv)
        if rec is not None and rec.op_type == "Reciprocal":
            return xf, rec.input[0], [node, rec]
        if rec is not None and rec.op_type == "Div" and g.is_const(rec.input[0]) and g.scalar(rec.input[0]) == 1.0:
            return xf, rec.input[1], [node, rec]
    raise Reject(f"'{value}' is not x / sqrt(...)")


def match(g: Graph, mul: NodeProto, ctx: OrtContext) -> Found:
    weight = next((i for i in mul.input if g.is_const(i)), None)
    if weight is None or g.const(weight).ndim != 1:
        raise Reject("no 1-D constant weight")
    cast = g.producer.get(_other(mul, weight))
    value = cast.input[0] if cast is not None and cast.op_type == "Cast" else _other(mul, weight)
    xf, r, nodes = _normalized(g, value)
    sqrt = g.expect(r, "Sqrt", single_use=True)
    add = g.expect(sqrt.input[0], "Add", single_use=True)
    eps_name = next((i for i in add.input if g.is_const(i)), None)
    if eps_name is None:
        raise Reject("epsilon is not a constant")
    mean = g.expect(_other(add, eps_name), "ReduceMean", single_use=True)
    axes = [a.ints for a in mean.attribute if a.name == "axes"]
    axes = list(axes[0]) if axes else (g.const(mean.input[1]).tolist() if len(mean.input) > 1 else None)
    if axes != [-1]:
        raise Reject(f"ReduceMean over axes {axes}, not the last axis")
    power = g.expect(mean.input[0], "Pow", single_use=True)
    if power.input[0] != xf or not g.is_const(power.input[1]) or g.scalar(power.input[1]) != 2.0:
        raise Reject("mean is not of xf ** 2 over the normalized value")
    used = [mul, *([cast] if value != _other(mul, weight) else []), *nodes, sqrt, add, mean, power]
    return Found(g.skip(xf), weight, g.scalar(eps_name), used)


def rewrite(g: Graph, f: Found, ctx: OrtContext) -> None:
    anchor = f.nodes[0]
    node = g.make("SimplifiedLayerNormalization", [f.x, f.weight], list(anchor.output),
                  anchor.name.rsplit("/", 1)[0] + "/SimplifiedLayerNormalization", axis=-1, epsilon=f.eps,
                  stash_type=1)
    g.replace(f.nodes, [node])
