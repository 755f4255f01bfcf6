"""Reshape → QuantLinear/Linear → Reshape around a tied LM head → the product on the hidden states as they are.

A tied head is a Gemm on the embedding table, and Gemm takes 2-D operands: the exporter flattens the
[batch, seq, hidden] states to [batch * seq, hidden] and restores [batch, seq, vocab] after, through
Shape, Slice and Concat of the states' shape. QuantLinear and Linear take [..., K] and return [..., N], so
once the Gemm is one of them those five nodes only cost launches in every decode step. Runs after
tied_table and float_head made the products.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import NodeProto

from ....kernels.schemas import DOMAIN
from ...graph import Graph, Reject, attributes
from ...ort.context import OrtContext

ANCHOR = "Reshape"  # the one restoring the logits' shape
PRODUCTS = ("QuantLinear", "Linear")
LEADING = 2  # the exporter's states are [batch, seq, hidden]: the restored shape keeps two dimensions


@dataclass(frozen=True)
class Found:
    product: NodeProto
    restore: NodeProto
    hidden: str  # [batch, seq, K]


def _const(g: Graph, value: str) -> list[int] | None:
    return g.const(value).reshape(-1).tolist() if g.is_const(value) else None


def _n_k(g: Graph, product: NodeProto) -> tuple[int, int]:
    if product.op_type == "Linear":
        return g.shape(product.input[1])  # W [N, K]
    attrs = attributes(product)
    return attrs["N"], attrs["K"]


def match(g: Graph, restore: NodeProto, ctx: OrtContext) -> Found:
    product = g.producer.get(restore.input[0])
    if product is None or product.domain != DOMAIN or product.op_type not in PRODUCTS:
        raise Reject("does not reshape a QuantLinear's or Linear's output")
    if len(product.output) > 1 or g.uses(product.output[0]) != 1:
        raise Reject(f"{product.name} has other outputs or uses")
    n, k = _n_k(g, product)
    flatten = g.expect(product.input[0], "Reshape", single_use=True)
    if _const(g, flatten.input[1]) != [-1, k]:
        raise Reject("the product's X is not the states flattened to [-1, K]")
    concat = g.expect(restore.input[1], "Concat")
    leading = g.expect(concat.input[0], "Slice")
    shape = g.expect(leading.input[0], "Shape")
    if (len(concat.input) != 2 or shape.input[0] != flatten.input[0] or _const(g, concat.input[1]) != [n]
            or len(leading.input) > 3 or [_const(g, i) for i in leading.input[1:]] != [[0], [LEADING]]):
        raise Reject("the restored shape is not the states' [batch, seq] and N")
    return Found(product, restore, flatten.input[0])


def rewrite(g: Graph, f: Found, ctx: OrtContext) -> None:
    attrs = attributes(f.product)
    node = g.make(f.product.op_type, [f.hidden, *f.product.input[1:]], list(f.restore.output), f.product.name,
                  domain=DOMAIN, **attrs)
    g.replace([f.product, f.restore], [node])
