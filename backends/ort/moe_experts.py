"""One expert branch of the exporter's sparse MoE block, and the gated MLP it runs, read as constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Graph, Reject
from .gated import gated


@dataclass(frozen=True)
class Mlp:
    x: str  # [n, H] input
    gate: np.ndarray  # [H, I]
    up: np.ndarray  # [H, I]
    down_weight: np.ndarray  # [I, H]

    def gate_up(self) -> np.ndarray:
        return np.concatenate([self.gate.T, self.up.T])  # [2I, H], gate rows first

    def down(self) -> np.ndarray:
        return np.ascontiguousarray(self.down_weight.T)  # [H, I]


def _weight(g: Graph, matmul_output: str) -> tuple[str, np.ndarray]:
    matmul = g.expect(matmul_output, "MatMul")
    if not g.is_const(matmul.input[1]) or len(g.shape(matmul.input[1])) != 2:
        raise Reject(f"{matmul.name} does not multiply by a constant matrix")
    return matmul.input[0], g.const(matmul.input[1])


def mlp(g: Graph, value: str) -> Mlp:
    """value = down(silu(x @ W_gate) * (x @ W_up)), unfused or as the swiglu pass leaves it."""
    product, down = _weight(g, value)
    node = g.producer.get(product)
    if node is not None and node.op_type == "SwiGLU":
        x, gate_up = _weight(g, node.input[0])  # [H, 2I]
        gate, up = np.split(gate_up, 2, axis=1)
        return Mlp(x, gate, up, down)
    if node is None or node.op_type != "Mul":
        raise Reject(f"'{product}' is not a gated unit")
    silu = next((g.producer[i] for i in node.input if g.producer.get(i) is not None
                 and g.producer[i].op_type == "Mul"), None)
    sigmoid = None if silu is None else next(
        (g.producer[i] for i in silu.input if g.producer.get(i) is not None and g.producer[i].op_type == "Sigmoid"),
        None)
    if sigmoid is None:
        raise Reject(f"'{product}' is not silu(gate) * up")
    unit = gated(g, sigmoid)
    (x, gate), (x_up, up) = _weight(g, unit.gate), _weight(g, unit.up)
    if x != x_up:
        raise Reject("gate and up project different inputs")
    return Mlp(x, gate, up, down)


def expert_of(g: Graph, pairs: str, out: str, tokens: str, ids: str, weights: str) -> tuple[int, Mlp]:
    """(expert id, its MLP) for pairs = Transpose(NonZero(Equal(ids, e))), out = mlp(tokens[pairs[:, 0]]) * w."""
    equal = g.expect(g.expect(g.expect(pairs, "Transpose").input[0], "NonZero").input[0], "Equal")
    if equal.input[0] != ids or not g.is_const(equal.input[1]):
        raise Reject(f"{equal.name} does not compare the top-k ids with a constant expert id")
    scaled = g.expect(out, "Mul")
    unsqueeze = next((g.producer[i] for i in scaled.input if g.producer.get(i) is not None
                      and g.producer[i].op_type == "Unsqueeze"), None)
    if unsqueeze is None:
        raise Reject(f"{scaled.name} does not scale by an unsqueezed routing weight")
    picked = g.expect(unsqueeze.input[0], "GatherND")
    if list(picked.input) != [weights, pairs]:
        raise Reject(f"{picked.name} does not pick this expert's routing weights")
    expert = mlp(g, next(i for i in scaled.input if i != unsqueeze.output[0]))
    rows = g.expect(expert.x, "Gather")
    if rows.input[0] != tokens or g.expect(rows.input[1], "Gather").input[0] != pairs:
        raise Reject(f"expert input '{expert.x}' is not the routed tokens' rows")
    return int(g.scalar(equal.input[1])), expert
