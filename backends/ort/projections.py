"""Reading and packing the constant-weight projections (MatMul, optionally + Add bias) fusions merge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, helper

from ..graph import Graph, Reject


@dataclass(frozen=True)
class Projection:
    x: str  # [..., K]
    weight: str  # [K, N] constant
    bias: str | None  # [N] constant
    nodes: list[NodeProto]


def projection(g: Graph, value: str) -> Projection:
    """value = MatMul(x, W) or Add(MatMul(x, W), b), W and b constants."""
    node = g.producer.get(value)
    bias = None
    if node is not None and node.op_type == "Add":
        bias = next((i for i in node.input if g.is_const(i)), None)
        if bias is None:
            raise Reject(f"'{value}' adds no constant bias")
        matmul = g.expect(next(i for i in node.input if i != bias), "MatMul", single_use=True)
        nodes = [node, matmul]
    else:
        matmul = g.expect(value, "MatMul")
        nodes = [matmul]
    if not g.is_const(matmul.input[1]) or len(g.shape(matmul.input[1])) != 2:
        raise Reject(f"{matmul.name} does not multiply by a constant 2-D weight")
    return Projection(matmul.input[0], matmul.input[1], bias, nodes)


def packed(g: Graph, parts: list[Projection], name: str) -> tuple[list[NodeProto], str]:
    """One MatMul (+ Add) over the concatenated weights of projections that share their input."""
    if len({p.x for p in parts}) != 1:
        raise Reject("projections read different inputs")
    weight = g.add_concat(f"{name}.weight", [p.weight for p in parts], axis=1)  # [K, sum N]
    matmul = g.make("MatMul", [parts[0].x, weight], 1, f"{name}/MatMul")
    if all(p.bias is None for p in parts):
        return [matmul], matmul.output[0]
    dtype = helper.tensor_dtype_to_np_dtype(g.elem_type(parts[0].weight))
    biases = [g.const(p.bias) if p.bias else np.zeros(g.shape(p.weight)[1], dtype) for p in parts]
    add = g.make("Add", [matmul.output[0], g.add_const(f"{name}.bias", np.concatenate(biases))], 1, f"{name}/Add")
    return [matmul, add], add.output[0]
