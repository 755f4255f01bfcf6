"""Separate q, k, v projections feeding GroupQueryAttention → one packed QKV MatMul (+ bias).

GroupQueryAttention takes the packed [batch, seq, (heads + 2 * kv_heads) * head_dim] tensor as its
query input with key and value left empty, so no Split is needed. Runs after group_query_attention.
"""

from __future__ import annotations

from onnx import NodeProto, helper

from ...graph import Graph, Reject
from ...passes import Context
from ..projections import Projection, packed, projection

ANCHOR = "com.microsoft:GroupQueryAttention"


def match(g: Graph, gqa: NodeProto, ctx: Context) -> tuple[NodeProto, list[Projection]]:
    if len(gqa.input) < 3 or not gqa.input[1] or not gqa.input[2]:
        raise Reject("query is already packed")
    parts = [projection(g, value) for value in gqa.input[:3]]
    if any(g.uses(value) != 1 for value in gqa.input[:3]):
        raise Reject("a projection output has other uses")
    if len({p.x for p in parts}) != 1:
        raise Reject("q, k and v project different inputs")
    return gqa, parts


def rewrite(g: Graph, found: tuple[NodeProto, list[Projection]], ctx: Context) -> None:
    gqa, parts = found
    scope = gqa.name.rsplit("/", 1)[0] + "/qkv_proj"
    nodes, qkv = packed(g, parts, scope)
    fused = g.make("GroupQueryAttention", [qkv, "", "", *gqa.input[3:]], list(gqa.output), gqa.name,
                   domain=gqa.domain, **{a.name: helper.get_attribute_value(a) for a in gqa.attribute})
    g.replace([*(n for p in parts for n in p.nodes), gqa], [*nodes, fused])

