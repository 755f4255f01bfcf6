"""Constant-weight MatMul (+ bias Add) and the tied LM head's Gemm → MatMulNBits (com.microsoft).

Works on any graph (native or optimum's): it looks only for a 2-D constant right operand.
Which projections stay in float is the config's `keep`, which stay int8 in an int4 build its `mixed`; the
bias rides in MatMulNBits' own input.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto

from ...graph import Graph, Reject
from ..context import OrtContext
from ..fusions import MS
from .store import matrix_shape, quantized_inputs

# Narrower projections (MoE routers, the shared-expert gate) stay float: they are tiny, and a
# routing decision flipped by rounding costs more than their bytes.
MIN_ROWS = 32


def _candidate(g: Graph, node: NodeProto) -> tuple[list[np.ndarray], bool, NodeProto | None]:
    """(W as [N, K] row blocks as stored (Graph.row_blocks), whether that is the constant transposed, bias Add or
    None) for a MatMul by a constant, or a Gemm(x, E, transB=1)."""
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        if len(node.input) > 2 or "transB" not in attrs or attrs["transB"].i != 1 or "transA" in attrs and attrs[
                "transA"].i:
            raise Reject("Gemm is not x @ E^T without bias")
        weight = [g.const(node.input[1], stored=True)]  # [N, K]
    else:
        if not g.is_const(node.input[1]) or len(g.shape(node.input[1])) != 2:
            raise Reject("right operand is not a constant matrix")
        weight = g.row_blocks(node.input[1])  # [K, N] → [N, K]
    users = g.users(node.output[0])
    bias = users[0] if len(users) == 1 and users[0].op_type == "Add" and any(
        g.is_const(i) and g.shape(i) == matrix_shape(weight)[:1] for i in users[0].input) else None
    return weight, node.op_type == "MatMul", bias


def quantize_matmuls(g: Graph, ctx: OrtContext) -> int:
    config = ctx.quant
    count = 0
    for node in [n for n in g.node if n.op_type in ("MatMul", "Gemm") and n.domain == ""]:
        if config.keeps(node.name, ctx.num_layers):
            continue
        try:
            weight, transposed, bias_add = _candidate(g, node)
        except Reject:
            continue
        n, k = matrix_shape(weight)
        if n < MIN_ROWS:
            continue
        bits = config.node_bits(node.name, ctx.num_layers)
        inputs = [node.input[0], *quantized_inputs(g, ctx, node.input[1], weight, transposed, bits)]
        old, output = [node], node.output[0]
        if bias_add is not None:
            bias = next(i for i in bias_add.input if g.is_const(i))
            inputs += ["", bias]
            old, output = [node, bias_add], bias_add.output[0]
        name = node.name.rsplit("/", 1)[0] + "/MatMulNBits"
        fused = g.make("MatMulNBits", inputs, [output], name, domain=MS, K=k, N=n, bits=bits,
                       block_size=config.block_size, accuracy_level=config.accuracy_level)
        g.add_opset(MS, 1)
        g.replace(old, [fused])
        count += 1
    g.remove_dead()
    return count
