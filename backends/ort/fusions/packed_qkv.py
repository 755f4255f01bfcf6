"""Separate q, k, v projections feeding GroupQueryAttention → one packed QKV MatMul (+ bias).

GroupQueryAttention takes the packed [batch, seq, (heads + 2 * kv_heads) * head_dim] tensor as its
query input with key and value left empty, so no Split is needed. When q and k reach it through our
QKNormRotary (Qwen3 with custom ops), that node becomes QKNormRotaryPacked between the packed MatMul
and GroupQueryAttention: it reads and writes the same packed layout. Runs after group_query_attention.
"""

from __future__ import annotations

from onnx import NodeProto

from ....kernels.schemas import DOMAIN
from ...graph import Graph, Reject, attributes
from ..context import OrtContext
from ..projections import Projection, packed, projection

ANCHOR = "com.microsoft:GroupQueryAttention"


def _qk_norm(g: Graph, gqa: NodeProto) -> NodeProto | None:
    """The QKNormRotary node producing exactly GQA's query and key, if there is one."""
    node = g.producer.get(gqa.input[0])
    if node is None or (node.domain, node.op_type) != (DOMAIN, "QKNormRotary"):
        return None
    if list(node.output) != list(gqa.input[:2]) or any(g.uses(value) != 1 for value in node.output):
        raise Reject(f"{node.name} does not feed only GroupQueryAttention's query and key")
    return node


def match(g: Graph, gqa: NodeProto, ctx: OrtContext) -> tuple[NodeProto, NodeProto | None, list[Projection]]:
    if len(gqa.input) < 3 or not gqa.input[1] or not gqa.input[2]:
        raise Reject("query is already packed")
    norm = _qk_norm(g, gqa)
    values = [*(norm.input[:2] if norm else gqa.input[:2]), gqa.input[2]]  # q, k, v projection outputs
    parts = [projection(g, value) for value in values]
    if any(g.uses(value) != 1 for value in values):
        raise Reject("a projection output has other uses")
    if len({p.x for p in parts}) != 1:
        raise Reject("q, k and v project different inputs")
    return gqa, norm, parts


def rewrite(g: Graph, found: tuple[NodeProto, NodeProto | None, list[Projection]], ctx: OrtContext) -> None:
    gqa, norm, parts = found
    scope = gqa.name.rsplit("/", 1)[0]
    nodes, qkv = packed(g, parts, scope + "/qkv_proj")  # qkv: [batch, seq, (heads + 2 * kv_heads) * head_dim]
    old = [n for p in parts for n in p.nodes]
    if norm is not None:
        packed_norm = g.make("QKNormRotaryPacked", [qkv, *norm.input[2:]], 1, f"{scope}/QKNormRotaryPacked",
                             domain=DOMAIN, **attributes(norm))
        old, nodes, qkv = [*old, norm], [*nodes, packed_norm], packed_norm.output[0]
    fused = g.make("GroupQueryAttention", [qkv, "", "", *gqa.input[3:]], list(gqa.output), gqa.name,
                   domain=gqa.domain, **attributes(gqa))
    g.replace([*old, gqa], [*nodes, fused])
